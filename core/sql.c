/*
 * SQL scanning: the portable `?` placeholder rewriter (txm__sql_placeholders) and the
 * transaction-control detector (txm__sql_tx_control). Contracts in core/internal.h; the lexing
 * rules per dialect are documented in docs/placeholders.md.
 *
 * Both run on every statement, so the scanner is a single pass over the bytes with a lookup table
 * that skips ordinary bytes, and the rewriter makes exactly one allocation.
 *
 * Lexical states (a `?` counts only in the "code" state):
 *   '...'        string; '' escapes a quote; backslash escapes with TXM_DIALECT_BACKSLASH, and in
 *                PostgreSQL E'...' strings (E or e not preceded by an identifier character,
 *                including a continuation segment after whitespace holding a newline)
 *   "..."        quoted identifier ("" escapes); a string with backslash escapes under
 *                TXM_DIALECT_BACKSLASH (MySQL without ANSI_QUOTES)
 *   `...`        TXM_DIALECT_BACKTICKS: identifier, `` escapes
 *   [...]        TXM_DIALECT_BRACKETS: identifier up to the first ']' (SQLite has no escape)
 *   -- ...\n     comment; under TXM_DIALECT_HASH_COMMENTS (MySQL) only when the second '-' is
 *                followed by whitespace, a control character or the end, as MySQL requires
 *   # ...\n      TXM_DIALECT_HASH_COMMENTS
 *   / * ... * /  comment; nested under TXM_DIALECT_DOLLAR_QUOTES (PostgreSQL). Under
 *                TXM_DIALECT_HASH_COMMENTS, MySQL/MariaDB executable comments ("/ *!", "/ *M!")
 *                are code to some servers and a comment to others (version gate, "M!" on MySQL):
 *                their content is scanned as code, but a placeholder inside one is refused, and
 *                so are placeholders anywhere in a statement where one of them holds a "* /"
 *                inside a literal or comment (the two readings would then disagree on where the
 *                comment ends, hence on what is a literal after it).
 *   $tag$...$tag$  TXM_DIALECT_DOLLAR_QUOTES; tag = "" or [A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*;
 *                a '$' inside an identifier (a$b$) or followed by a digit ($1) is not a quote;
 *                after a number, a parameter or another quote it is (PostgreSQL lexes longest
 *                match first, so "$1$a$" is $1 then a quote).
 */
#include "internal.h"

#include <stdbool.h>
#include <string.h>

#define NONE SIZE_MAX

/* Byte classes. */
enum {
    C_IDENT = 0x1,   /* identifier character: [A-Za-z0-9_$] and bytes >= 0x80 */
    C_TAG0 = 0x2,    /* first character of a dollar-quote tag: [A-Za-z_] and bytes >= 0x80 */
    C_TAG = 0x4,     /* later tag characters: C_TAG0 plus digits */
    C_SPECIAL = 0x8, /* may start a lexical state or a placeholder */
    C_SPACE = 0x10   /* SQL whitespace */
};

/* The class of byte c, as a constant expression (the table below is built at compile time, so
 * it needs no initialisation and is safe to read from any thread). */
#define ALPHA_(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define DIGIT_(c) ((c) >= '0' && (c) <= '9')
#define CLASS_(c)                                                                                        \
    ((ALPHA_(c) || DIGIT_(c) || (c) == '_' || (c) == '$' || (c) >= 0x80 ? C_IDENT : 0) |                 \
     (ALPHA_(c) || (c) == '_' || (c) >= 0x80 ? C_TAG0 | C_TAG : 0) | (DIGIT_(c) ? C_TAG : 0) |          \
     ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r' || (c) == '\f' || (c) == '\v' ? C_SPACE : 0) | \
     ((c) == '?' || (c) == '\'' || (c) == '"' || (c) == '`' || (c) == '[' || (c) == '-' || (c) == '#' ||    \
              (c) == '/' || (c) == '*' || (c) == '$'                                                     \
          ? C_SPECIAL                                                                                    \
          : 0))
#define CLASS4_(c) CLASS_(c), CLASS_((c) + 1), CLASS_((c) + 2), CLASS_((c) + 3)
#define CLASS16_(c) CLASS4_(c), CLASS4_((c) + 4), CLASS4_((c) + 8), CLASS4_((c) + 12)
#define CLASS64_(c) CLASS16_(c), CLASS16_((c) + 16), CLASS16_((c) + 32), CLASS16_((c) + 48)
static const unsigned char cls[256] = {CLASS64_(0), CLASS64_(64), CLASS64_(128), CLASS64_(192)};

static inline unsigned char cl(unsigned char c)
{
    return cls[c];
}

static bool is_ident(unsigned char c) { return cl(c) & C_IDENT; }

/* ---- skipping one construct; each returns the index after it, or NONE if unterminated ---- */

/* Quoted text opened by s[i] == q: q doubled escapes q; with `bs`, a backslash escapes any byte. */
static size_t skip_quoted(const char *s, size_t n, size_t i, char q, bool bs)
{
    for (i++; i < n; i++) {
        const char *p;
        if (!bs) {
            p = memchr(s + i, q, n - i);
            if (!p)
                return NONE;
            i = (size_t)(p - s);
        }
        if (s[i] == q) {
            if (i + 1 < n && s[i + 1] == q) {
                i++;
                continue;
            }
            return i + 1;
        }
        if (bs && s[i] == '\\' && ++i >= n)
            return NONE;
    }
    return NONE;
}

/* Whether the quote at s[i] opens a PostgreSQL E'...' string. */
static bool is_estring(const char *s, size_t i)
{
    return i >= 1 && (s[i - 1] == 'E' || s[i - 1] == 'e') && (i == 1 || !is_ident((unsigned char)s[i - 2]));
}

/* An E'...' string, including PostgreSQL's continuation segments ('a'<newline>'b' is one string,
 * and the continuation keeps the backslash escapes). */
static size_t skip_estring(const char *s, size_t n, size_t i)
{
    for (;;) {
        size_t j;
        bool newline = false;
        i = skip_quoted(s, n, i, '\'', true);
        if (i == NONE)
            return NONE;
        for (j = i; j < n && (cl((unsigned char)s[j]) & C_SPACE); j++)
            newline |= s[j] == '\n' || s[j] == '\r';
        if (!newline || j >= n || s[j] != '\'')
            return i;
        i = j;
    }
}

/* -- or # comment: up to and including the newline (or the end: a line comment may end the text). */
static size_t skip_line(const char *s, size_t n, size_t i)
{
    const char *p = memchr(s + i, '\n', n - i);
    return p ? (size_t)(p - s) + 1 : n;
}

/* Block comment opened at s[i] (a '/' followed by '*'), nested when `nest`. */
static size_t skip_block(const char *s, size_t n, size_t i, bool nest)
{
    size_t depth = 1;
    i += 2;
    while (i + 1 < n) {
        if (s[i] == '*' && s[i + 1] == '/') {
            i += 2;
            if (--depth == 0)
                return i;
        } else if (nest && s[i] == '/' && s[i + 1] == '*') {
            i += 2;
            depth++;
        } else {
            i++;
        }
    }
    return NONE;
}

/* Whether the '$' at s[i] continues an identifier, as PostgreSQL's longest-match lexer would see
 * it: "a$b$" is one identifier, but after a number or a parameter ("1", "$1") or right after a
 * construct ending at `from` (a closing "$a$") a '$' starts a new token. */
static bool dollar_in_word(const char *s, size_t from, size_t i)
{
    size_t b = i;
    while (b > from && is_ident((unsigned char)s[b - 1]))
        b--;
    /* Skip a leading parameter or number; whatever identifier character remains absorbs '$'. */
    while (b < i && (s[b] == '$' || (s[b] >= '0' && s[b] <= '9')))
        b++;
    return b < i;
}

/* Length of the dollar-quote tag opening at s[i] == '$' ("$$" or "$tag$"), or 0 if none.
 * `from`: where the current run of ordinary bytes began (see dollar_in_word). */
static size_t dollar_tag(const char *s, size_t n, size_t from, size_t i)
{
    size_t j = i + 1;
    if (dollar_in_word(s, from, i))
        return 0;
    if (j < n && s[j] == '$')
        return 2;
    if (j >= n || !(cl((unsigned char)s[j]) & C_TAG0))
        return 0;
    for (j++; j < n && (cl((unsigned char)s[j]) & C_TAG); j++)
        ;
    return j < n && s[j] == '$' ? j - i + 1 : 0;
}

/* Dollar-quoted string opened by the tag s[i, i+tlen): ends at the next occurrence of the tag. */
static size_t skip_dollar(const char *s, size_t n, size_t i, size_t tlen)
{
    size_t j = i + tlen;
    while (j < n) {
        const char *p = memchr(s + j, '$', n - j);
        if (!p)
            return NONE;
        j = (size_t)(p - s);
        if (n - j >= tlen && memcmp(s + j, s + i, tlen) == 0)
            return j + tlen;
        j++;
    }
    return NONE;
}

/* Whether "--" at s[i] starts a comment. MySQL requires whitespace or a control byte after it. */
static bool dash_comment(const char *s, size_t n, size_t i, bool mysql)
{
    unsigned char c;
    if (i + 1 >= n || s[i + 1] != '-')
        return false;
    if (!mysql || i + 2 >= n)
        return true;
    c = (unsigned char)s[i + 2];
    return c <= 0x20 || c == 0x7f;
}

/* Length of a MySQL/MariaDB executable-comment opener at s[i] ("/ *!" or "/ *M!"), or 0. */
static size_t exec_comment(const char *s, size_t n, size_t i)
{
    if (i + 2 < n && s[i + 1] == '*' && s[i + 2] == '!')
        return 3;
    if (i + 3 < n && s[i + 1] == '*' && s[i + 2] == 'M' && s[i + 3] == '!')
        return 4;
    return 0;
}

/* Writes the decimal form of v at d; returns the number of digits. */
static size_t put_uint(char *d, size_t v)
{
    char tmp[24];
    size_t k = 0, i;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < k; i++)
        d[i] = tmp[k - 1 - i];
    return k;
}

/*
 * The scanner. Counts placeholders into *count; when dst is non-NULL, writes the rewrite there
 * (room: rewrite_max). Each `?` becomes `$k`, with a space inserted before it when the previous
 * byte is an identifier character and after it when the next one is (or is '$'): PostgreSQL would
 * otherwise read "a$1" as an identifier, or "$1a" as "trailing junk after parameter".
 */
static int scan(const char *s, size_t n, unsigned dialect, char *dst, size_t *count)
{
    const bool pg = (dialect & TXM_DIALECT_DOLLAR_QUOTES) != 0;
    const bool bs = (dialect & TXM_DIALECT_BACKSLASH) != 0;
    const bool mysql = (dialect & TXM_DIALECT_HASH_COMMENTS) != 0;
    size_t i = 0, run = 0, k = 0, exec_open = NONE, exec_first_close = NONE, ambiguous = NONE, from = 0, m = 0;
    char *d = dst;
    char stops[16]; /* the bytes that can start something in this dialect */

    stops[m++] = '?';
    stops[m++] = '\'';
    stops[m++] = '"';
    stops[m++] = '-';
    stops[m++] = '/';
    if (dialect & TXM_DIALECT_BACKTICKS)
        stops[m++] = '`';
    if (dialect & TXM_DIALECT_BRACKETS)
        stops[m++] = '[';
    if (mysql) {
        stops[m++] = '#';
        stops[m++] = '*'; /* end of an executable comment */
    }
    if (pg)
        stops[m++] = '$';
    stops[m] = '\0';

    while (i < n) {
        size_t end, tlen;
        const char *what;
        unsigned char c;
        /* Ordinary bytes: a table lookup for short runs; past 16 bytes, strcspn (vectorised in
         * glibc) with this dialect's stop bytes. s[n] is the terminating NUL, so strcspn stops
         * there at the latest. */
        if (!(cl((unsigned char)s[i]) & C_SPECIAL)) {
            size_t j = i + 1, lim = n - i > 16 ? i + 16 : n;
            while (j < lim && !(cl((unsigned char)s[j]) & C_SPECIAL))
                j++;
            if (j == i + 16)
                j += strcspn(s + j, stops);
            i = j;
            if (i >= n)
                break;
        }
        c = (unsigned char)s[i];
        switch (c) {
        case '?':
            if (exec_open != NONE)
                return txm__err(TXM_EINVALID,
                                "placeholder at byte offset %zu of the SQL text is inside the MySQL executable "
                                "comment starting at byte offset %zu: a server that skips the comment (version "
                                "gate, or not MariaDB for /*M!) would not see a literal there, so a parameter "
                                "value could end the comment and become SQL; placeholders are refused there",
                                i, exec_open);
            k++;
            if (d) {
                memcpy(d, s + run, i - run);
                d += i - run;
                if (i > 0 && is_ident((unsigned char)s[i - 1]))
                    *d++ = ' ';
                *d++ = '$';
                d += put_uint(d, k);
                if (i + 1 < n && is_ident((unsigned char)s[i + 1]))
                    *d++ = ' ';
                run = i + 1;
            }
            from = ++i;
            continue;
        case '\'':
            what = "string literal";
            end = pg && is_estring(s, i) ? skip_estring(s, n, i) : skip_quoted(s, n, i, '\'', bs);
            break;
        case '"':
            what = bs ? "double-quoted string" : "quoted identifier";
            end = skip_quoted(s, n, i, '"', bs);
            break;
        case '`':
            if (!(dialect & TXM_DIALECT_BACKTICKS)) {
                i++;
                continue;
            }
            what = "backtick-quoted identifier";
            end = skip_quoted(s, n, i, '`', false);
            break;
        case '[': {
            const char *p;
            if (!(dialect & TXM_DIALECT_BRACKETS)) {
                i++;
                continue;
            }
            what = "bracket-quoted identifier";
            p = memchr(s + i + 1, ']', n - i - 1);
            end = p ? (size_t)(p - s) + 1 : NONE;
            break;
        }
        case '-':
            if (!dash_comment(s, n, i, mysql)) {
                i++;
                continue;
            }
            what = "comment";
            end = skip_line(s, n, i);
            break;
        case '#':
            if (!mysql) {
                i++;
                continue;
            }
            what = "comment";
            end = skip_line(s, n, i);
            break;
        case '/':
            if (i + 1 >= n || s[i + 1] != '*') {
                i++;
                continue;
            }
            if (mysql && exec_open == NONE && (tlen = exec_comment(s, n, i)) != 0) {
                const char *close = NULL;
                for (size_t j = i + tlen; j + 1 < n; j++)
                    if (s[j] == '*' && s[j + 1] == '/') {
                        close = s + j;
                        break;
                    }
                exec_open = i;
                exec_first_close = close ? (size_t)(close - s) : NONE;
                from = i += tlen;
                continue;
            }
            what = "block comment";
            end = skip_block(s, n, i, pg);
            break;
        case '*':
            if (exec_open != NONE && i + 1 < n && s[i + 1] == '/') {
                /* A server that skips the comment ends it at its first "*" "/"; if that was inside a
                 * literal or a comment here, the two readings of everything after it differ. */
                if (i != exec_first_close && ambiguous == NONE)
                    ambiguous = exec_open;
                exec_open = NONE;
                from = i += 2;
            } else {
                i++;
            }
            continue;
        case '$':
            if (!pg || (tlen = dollar_tag(s, n, from, i)) == 0) {
                i++;
                continue;
            }
            what = "dollar-quoted string";
            end = skip_dollar(s, n, i, tlen);
            break;
        default:
            i++;
            continue;
        }
        if (end == NONE)
            return txm__err(TXM_EINVALID, "unterminated %s starting at byte offset %zu of the SQL text", what, i);
        from = i = end;
    }
    if (exec_open != NONE)
        return txm__err(TXM_EINVALID, "unterminated executable comment starting at byte offset %zu of the SQL text",
                        exec_open);
    if (ambiguous != NONE && k > 0)
        return txm__err(TXM_EINVALID,
                        "the MySQL executable comment starting at byte offset %zu of the SQL text holds a '*/' "
                        "inside a literal or comment: a server that skips the comment ends it there and reads the "
                        "rest differently, so the statement's placeholders are refused",
                        ambiguous);
    if (d) {
        memcpy(d, s + run, n - run);
        d[n - run] = '\0';
    }
    *count = k;
    return 0;
}

/* Bytes needed for the rewrite of n bytes holding q '?' bytes, NUL included, or 0 on overflow.
 * Placeholder k grows by at most digits(k) + 2 bytes: the '?' becomes a space, '$', the digits
 * and a space. */
static size_t rewrite_max(size_t n, size_t q)
{
    size_t total = n + 1, p, digits;
    if (total < n)
        return 0;
    for (p = 1, digits = 1; p <= q; digits++) {
        size_t last = p > SIZE_MAX / 10 ? SIZE_MAX : p * 10 - 1;
        size_t cnt = (q < last ? q : last) - p + 1;
        if (cnt > (SIZE_MAX - total) / (digits + 2))
            return 0;
        total += cnt * (digits + 2);
        if (last == SIZE_MAX)
            break;
        p *= 10;
    }
    return total;
}

int txm__sql_placeholders(const char *sql, txm_placeholder_style style, unsigned dialect, char **out, size_t *count)
{
    size_t n, q = 0, size, k = 0;
    const char *p;
    char *buf;
    int rc;

    if (out)
        *out = NULL;
    if (count)
        *count = 0;
    if (!out || !count)
        return txm__err(TXM_EINVALID, "txm__sql_placeholders: out and count must not be NULL");
    if (!sql)
        return txm__err(TXM_EINVALID, "SQL text is NULL");
    n = strlen(sql);
    if (style == TXM_PH_QMARK) {
        if ((rc = scan(sql, n, dialect, NULL, &k)) != 0)
            return rc;
        *count = k;
        return 0;
    }
    if (style != TXM_PH_DOLLAR)
        return txm__err(TXM_EINVALID, "unknown placeholder style %d", (int)style);

    /* Size the output from the number of '?' bytes (an upper bound of the placeholders): one
     * allocation, one scanning pass. */
    for (p = sql; (p = memchr(p, '?', n - (size_t)(p - sql))) != NULL; p++)
        q++;
    if (q == 0) {
        /* Nothing to rewrite: validate and count only, no copy (the caller uses sql as is). */
        if ((rc = scan(sql, n, dialect, NULL, &k)) != 0)
            return rc;
        *count = k;
        return 0;
    }
    size = rewrite_max(n, q);
    if (!size)
        return txm__err(TXM_ENOMEM, "SQL text too long to rewrite placeholders (%zu bytes)", n);
    buf = txm__malloc(size);
    if (!buf)
        return txm__err(TXM_ENOMEM, "out of memory rewriting placeholders (%zu bytes)", size);
    if ((rc = scan(sql, n, dialect, buf, &k)) != 0 || k == 0) {
        txm__free(buf); /* an error, or every '?' was inside a literal: sql is used as is */
        return rc;
    }
    *out = buf;
    *count = k;
    return 0;
}

/* ---- transaction control detection ---- */

/* Skips whitespace and comments (and '(' and ';' when `punct`) from s[i]; returns the new index.
 * An unterminated comment skips to the end. A MySQL executable comment's opener (and version
 * number) is skipped: its content is code. */
static size_t skip_noise(const char *s, size_t n, size_t i, unsigned dialect, bool punct)
{
    const bool mysql = (dialect & TXM_DIALECT_HASH_COMMENTS) != 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t t;
        if (cl(c) & C_SPACE || (punct && (c == '(' || c == ';'))) {
            i++;
        } else if (c == '-' && dash_comment(s, n, i, mysql)) {
            i = skip_line(s, n, i);
        } else if (c == '#' && mysql) {
            i = skip_line(s, n, i);
        } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
            if (mysql && (t = exec_comment(s, n, i)) != 0) {
                for (i += t; i < n && s[i] >= '0' && s[i] <= '9'; i++)
                    ;
            } else {
                t = skip_block(s, n, i, (dialect & TXM_DIALECT_DOLLAR_QUOTES) != 0);
                i = t == NONE ? n : t;
            }
        } else {
            break;
        }
    }
    return i;
}

/* Whether s[i..) starts with keyword kw (upper case) followed by a word boundary. */
static bool keyword_at(const char *s, size_t n, size_t i, const char *kw)
{
    size_t j;
    for (j = 0; kw[j]; j++) {
        unsigned char c;
        if (i + j >= n)
            return false;
        c = (unsigned char)s[i + j];
        if ((c >= 'a' && c <= 'z' ? (unsigned char)(c - 32) : c) != (unsigned char)kw[j])
            return false;
    }
    return i + j >= n || !is_ident((unsigned char)s[i + j]);
}

const char *txm__sql_tx_control(const char *sql, unsigned dialect)
{
    /* A keyword, and the keyword that must follow it for the statement to be transaction control
     * (START SLAVE and PREPARE name AS ... are not; START TRANSACTION and PREPARE TRANSACTION are). */
    static const struct {
        const char *kw;
        const char *next;
    } keywords[] = {{"BEGIN", NULL},   {"COMMIT", NULL}, {"END", NULL}, {"ROLLBACK", NULL},
                    {"SAVEPOINT", NULL}, {"RELEASE", NULL}, {"ABORT", NULL}, {"XA", NULL},
                    {"START", "TRANSACTION"}, {"PREPARE", "TRANSACTION"}};
    size_t n, i, k;
    if (!sql)
        return NULL;
    /* Only the start of the text matters. Its length is needed only to skip leading noise (the
     * comment skippers are bounded by n); keyword_at stops at the NUL by itself. */
    n = NONE;
    if (strchr(" \t\n\r\f\v(;-/#", sql[0]) && sql[0] != '\0')
        n = strlen(sql);
    i = skip_noise(sql, n, 0, dialect, true);
    for (k = 0; k < sizeof keywords / sizeof keywords[0]; k++) {
        const char *kw = keywords[k].kw;
        if (!keyword_at(sql, n, i, kw))
            continue;
        if (!keywords[k].next)
            return kw;
        if (n == NONE)
            n = strlen(sql);
        i = skip_noise(sql, n, i + strlen(kw), dialect, false);
        return keyword_at(sql, n, i, keywords[k].next) ? kw : NULL;
    }
    return NULL;
}
