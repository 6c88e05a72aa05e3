/*
 * libFuzzer target for the MySQL driver's parameter interpolation (drivers/mysql.c, reached without
 * a server through txm__mysql_interpolate, the function run() uses). Invariant: a parameter value
 * never changes the statement. The SQL with the fuzzed values interpolated and the same SQL with
 * neutral values of the same shape (NULL; 1 or -1; 1e0 or -1e0; 'x'; X'') must lex to the same
 * tokens outside literals (same kinds, same text), hence the same statement count, under both
 * readings of MySQL executable comments: as code (a server that runs them) and as comments (a
 * server older than the version gate, or MySQL for a M! comment, skipping to the end of the
 * comment with one level of nested comment, as MariaDB's consume_comment does). The lexer below is
 * written from MariaDB's rules independently of the driver's scanner: strings with backslash
 * escapes unless NO_BACKSLASH_ESCAPES, doubled quotes, multibyte characters of the connection
 * charset (gbk: a 0x5c trail byte is not a backslash), X'hex' and B'bits' literals (anything else
 * in them is a lexing error), -- needing a blank or control byte, # comments.
 *
 * Input: byte 0 bit 0 NO_BACKSLASH_ESCAPES, bit 1 gbk instead of utf8mb4; then the SQL text up to
 * the first 0x00 byte; then parameters, each a type byte (mod 5: NULL INT REAL TEXT BLOB), a length
 * byte and that many bytes (INT/REAL take their value from them). A broken invariant prints the
 * input and aborts. Seeds: tests/fuzz/corpus/myparam (the payloads among them).
 */
#include <mysql.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
TXM_INTERNAL int txm__mysql_interpolate(MYSQL *db, const txm_op *op, char **out, size_t *len, int *alone,
                                        size_t *spans);

#define MAXP 16
#define MAXTOK 4096

static const uint8_t *cur_data;
static size_t cur_size;

static void fail(const char *what, const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;
    fprintf(stderr, "fuzz_myparam: invariant broken: %s\ninput (%zu bytes): \"", what, cur_size);
    for (i = 0; i < cur_size; i++) {
        unsigned c = cur_data[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc((int)c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\ninterpolated: %.*s\nneutral:      %.*s\n", (int)alen, a, (int)blen, b);
    abort();
}

/* ---- an independent MySQL/MariaDB lexer ---- */
enum { T_WORD = 1, T_NUM, T_STR, T_HEX, T_OP, T_SEMI, T_ERR };

typedef struct tok {
    int kind;
    size_t at, len;
} tok;

typedef struct lexer {
    const unsigned char *s;
    size_t n;
    int bs;       /* backslash escapes in strings */
    int gbk;      /* multibyte charset with 0x40..0xfe trail bytes */
    int exec_code; /* reading A: executable comments are code */
    tok t[MAXTOK];
    size_t nt;
} lexer;

static size_t mb(const lexer *L, size_t i)
{
    if (L->gbk && i + 1 < L->n && L->s[i] >= 0x81 && L->s[i] <= 0xfe &&
        ((L->s[i + 1] >= 0x40 && L->s[i + 1] <= 0x7e) || (L->s[i + 1] >= 0x80 && L->s[i + 1] <= 0xfe)))
        return 2;
    return 1;
}

static int ident(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           c >= 0x80;
}

static int digit(unsigned char c) { return c >= '0' && c <= '9'; }

static void emit(lexer *L, int kind, size_t at, size_t len)
{
    if (L->nt < MAXTOK) {
        L->t[L->nt].kind = kind;
        L->t[L->nt].at = at;
        L->t[L->nt].len = len;
        L->nt++;
    }
}

/* MariaDB's consume_comment: to the first star-slash, with `nest` levels of nested comments. */
static size_t consume_comment(const lexer *L, size_t i, int nest, int *closed)
{
    *closed = 0;
    while (i < L->n) {
        unsigned char c = L->s[i++];
        if (nest > 0 && c == '/' && i < L->n && L->s[i] == '*') {
            int inner;
            i = consume_comment(L, i + 1, nest - 1, &inner);
            continue;
        }
        if (c == '*' && i < L->n && L->s[i] == '/') {
            *closed = 1;
            return i + 1;
        }
    }
    return i;
}

static void lex(lexer *L)
{
    size_t i = 0, n = L->n;
    int in_exec = 0;
    const unsigned char *s = L->s;
    L->nt = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t j;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            i++;
        } else if (c == '#' || (c == '-' && i + 1 < n && s[i + 1] == '-' &&
                                (i + 2 >= n || s[i + 2] <= 0x20 || s[i + 2] == 0x7f))) {
            while (i < n && s[i] != '\n')
                i++;
        } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
            int closed;
            size_t ex = (i + 2 < n && s[i + 2] == '!') ? 3 : (i + 3 < n && s[i + 2] == 'M' && s[i + 3] == '!') ? 4 : 0;
            if (ex && !in_exec && L->exec_code) {
                in_exec = 1;
                i += ex;
                for (j = 0; j < 6 && i < n && digit(s[i]); j++)
                    i++;
                continue;
            }
            {
                size_t start = i;
                i = consume_comment(L, i + 2, ex ? 1 : 0, &closed);
                if (!closed) { /* a syntax error at the comment (verified on MariaDB 10.11) */
                    emit(L, T_ERR, start, 0);
                    return;
                }
            }
        } else if (c == '*' && in_exec && i + 1 < n && s[i + 1] == '/') {
            in_exec = 0;
            i += 2;
        } else if (c == '\'' || c == '"' || c == '`') {
            int closed = 0;
            for (j = i + 1; j < n;) {
                if (L->bs && c != '`' && s[j] == '\\') {
                    j += 2; /* MariaDB's get_text skips one byte after a backslash */
                    continue;
                }
                if (s[j] == c) {
                    if (j + 1 < n && s[j + 1] == c) {
                        j += 2;
                        continue;
                    }
                    closed = 1;
                    j++;
                    break;
                }
                j += mb(L, j);
            }
            if (!closed) {
                emit(L, T_ERR, i, 0);
                return;
            }
            emit(L, c == '`' ? T_WORD : T_STR, i, j - i);
            i = j;
        } else if ((c == 'x' || c == 'X' || c == 'b' || c == 'B') && i + 1 < n && s[i + 1] == '\'') {
            int hex = c == 'x' || c == 'X';
            for (j = i + 2; j < n && (hex ? (digit(s[j]) || ((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'f'))
                                          : (s[j] == '0' || s[j] == '1'));
                 j++)
                ;
            if (j >= n || s[j] != '\'') {
                emit(L, T_ERR, i, 0); /* the server's lexer aborts here */
                return;
            }
            emit(L, T_HEX, i, j + 1 - i);
            i = j + 1;
        } else if (digit(c) || (c == '.' && i + 1 < n && digit(s[i + 1]))) {
            /* a number, unless ident characters follow (MySQL identifiers may start with digits) */
            j = i;
            while (j < n && digit(s[j]))
                j++;
            if (j < n && s[j] == '.')
                for (j++; j < n && digit(s[j]); j++)
                    ;
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-'))
                    k++;
                if (k < n && digit(s[k])) {
                    for (j = k; j < n && digit(s[j]); j++)
                        ;
                }
            }
            if (j < n && ident(s[j]) && s[i] != '.') {
                while (j < n && ident(s[j]))
                    j += mb(L, j);
                emit(L, T_WORD, i, j - i);
            } else {
                emit(L, T_NUM, i, j - i);
            }
            i = j;
        } else if (ident(c)) {
            for (j = i; j < n && ident(s[j]);)
                j += mb(L, j);
            emit(L, T_WORD, i, j - i);
            i = j;
        } else if (c == ';') {
            emit(L, T_SEMI, i, 1);
            i++;
        } else {
            emit(L, T_OP, i, 1);
            i++;
        }
    }
    if (in_exec)
        emit(L, T_ERR, n, 0);
}

/* Each interpolated literal is lexed as it is alone (same token kinds), by tokens lying wholly
 * inside it (none crosses its edges, none of it is swallowed by a comment). */
static const char *check_spans(const lexer *L, const size_t *spans, size_t np)
{
    static lexer alone;
    size_t k = 0, err_at = (size_t)-1;
    if (L->nt && L->t[L->nt - 1].kind == T_ERR)
        err_at = L->t[L->nt - 1].at; /* the server's lexer stops there: nothing after it runs */
    for (size_t p = 0; p < np; p++) {
        size_t s = spans[2 * p], e = spans[2 * p + 1], m = 0;
        if (s >= err_at)
            break;
        alone = *L;
        alone.s = L->s + s;
        alone.n = e - s;
        alone.exec_code = 1;
        lex(&alone);
        while (k < L->nt && L->t[k].at + L->t[k].len <= s && !(L->t[k].len == 0 && L->t[k].at >= s))
            k++;
        for (; k < L->nt && L->t[k].at < e; k++, m++) {
            if (L->t[k].at < s || L->t[k].at + L->t[k].len > e)
                return "a token crosses the edge of an interpolated literal";
            if (m >= alone.nt || alone.t[m].kind != L->t[k].kind)
                return "an interpolated literal is not lexed as it is alone";
        }
        if (m != alone.nt)
            return "an interpolated literal is not lexed as it is alone (part of it is not a token)";
    }
    return NULL;
}

/* The same statement around the literals: the tokens outside them are the same (kind and text). */
static const char *compare(const lexer *a, const size_t *sa, const lexer *b, const size_t *sb, size_t np)
{
    size_t i = 0, j = 0;
    for (;;) {
        /* skip the tokens inside a literal */
        for (size_t p = 0; p < np; p++) {
            while (i < a->nt && a->t[i].at >= sa[2 * p] && a->t[i].at < sa[2 * p + 1] && a->t[i].len)
                i++;
            while (j < b->nt && b->t[j].at >= sb[2 * p] && b->t[j].at < sb[2 * p + 1] && b->t[j].len)
                j++;
        }
        if (i == a->nt || j == b->nt)
            return i == a->nt && j == b->nt ? NULL : "a different number of tokens outside the literals";
        if (a->t[i].kind != b->t[j].kind)
            return "a different token kind outside the literals";
        if (a->t[i].kind != T_ERR && (a->t[i].len != b->t[j].len ||
                                      memcmp(a->s + a->t[i].at, b->s + b->t[j].at, a->t[i].len) != 0))
            return "a different token outside the literals";
        i++;
        j++;
    }
}

/* ---- the target ---- */
static MYSQL *handle(int gbk, int nb)
{
    static MYSQL *db[2];
    static const MARIADB_CHARSET_INFO *cs[2];
    if (!db[gbk]) {
        db[gbk] = mysql_init(NULL);
        cs[gbk] = mariadb_get_charset_by_name(gbk ? "gbk" : "utf8mb4");
        if (!db[gbk] || !cs[gbk]) {
            fprintf(stderr, "fuzz_myparam: cannot set up a MYSQL handle\n");
            abort();
        }
        db[gbk]->charset = cs[gbk];
    }
    if (nb)
        db[gbk]->server_status |= SERVER_STATUS_NO_BACKSLASH_ESCAPES;
    else
        db[gbk]->server_status &= ~(unsigned)SERVER_STATUS_NO_BACKSLASH_ESCAPES;
    return db[gbk];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lexer la, lb;
    txm_value actual[MAXP], neutral[MAXP];
    size_t spans_a[2 * MAXP], spans_b[2 * MAXP];
    txm_op op;
    size_t np = 0, i, sql_len;
    const uint8_t *zero;
    char *sql, *out_a = NULL, *out_b = NULL;
    size_t len_a = 0, len_b = 0;
    int alone_a, alone_b, rc, nb, gbk;
    MYSQL *db;

    if (size < 1)
        return 0;
    cur_data = data;
    cur_size = size;
    nb = data[0] & 1;
    gbk = (data[0] >> 1) & 1;
    data++;
    size--;
    zero = memchr(data, 0, size);
    sql_len = zero ? (size_t)(zero - data) : size;
    sql = malloc(sql_len + 1);
    if (!sql)
        return 0;
    memcpy(sql, data, sql_len);
    sql[sql_len] = '\0';
    i = zero ? sql_len + 1 : size;
    while (i + 2 <= size && np < MAXP) {
        unsigned type = data[i] % 5, len = data[i + 1];
        const uint8_t *v = data + i + 2;
        uint64_t bits = 0;
        if (len > size - i - 2)
            len = (unsigned)(size - i - 2);
        for (unsigned k = 0; k < len && k < 8; k++)
            bits = bits << 8 | v[k];
        switch (type) {
        case 0:
            actual[np] = txm_null();
            neutral[np] = txm_null();
            break;
        case 1:
            actual[np] = txm_int((int64_t)bits);
            neutral[np] = txm_int((int64_t)bits < 0 ? -1 : 1);
            break;
        case 2: {
            double d;
            memcpy(&d, &bits, sizeof d);
            actual[np] = txm_real(d);
            neutral[np] = txm_real(signbit(d) ? -1.0 : 1.0);
            break;
        }
        case 3:
            actual[np] = txm_textn((const char *)v, len);
            neutral[np] = txm_text("x");
            break;
        default:
            actual[np] = txm_blob(v, len);
            neutral[np] = txm_blob("", 0);
            break;
        }
        np++;
        i += 2 + len;
    }

    db = handle(gbk, nb);
    memset(&op, 0, sizeof op);
    op.kind = TXM_OP_STATEMENT;
    op.sql = sql;
    op.sql_len = sql_len;
    op.params = actual;
    op.nparams = np;
    rc = txm__mysql_interpolate(db, &op, &out_a, &len_a, &alone_a, spans_a);
    if (rc != 0) {
        if (rc != TXM_EINVALID && rc != TXM_EDATA)
            fail("unexpected error code", txm_error_last()->message, strlen(txm_error_last()->message), "", 0);
        free(sql);
        return 0;
    }
    op.params = neutral;
    rc = txm__mysql_interpolate(db, &op, &out_b, &len_b, &alone_b, spans_b);
    if (rc != 0) {
        /* only the value may be refused (a non-finite REAL), never the neutral form of an accepted one */
        fail("the neutral values were refused where the fuzzed ones were not", out_a, len_a,
             txm_error_last()->message, strlen(txm_error_last()->message));
    }
    if (alone_a != alone_b)
        fail("a value changed whether the statement is a stored-program definition", out_a, len_a, out_b, len_b);
    for (int reading = 0; reading < 2; reading++) {
        const char *why;
        la.s = (const unsigned char *)out_a;
        la.n = len_a;
        lb.s = (const unsigned char *)out_b;
        lb.n = len_b;
        la.bs = lb.bs = !nb;
        la.gbk = lb.gbk = gbk;
        la.exec_code = lb.exec_code = reading == 0;
        lex(&la);
        lex(&lb);
        if ((why = check_spans(&la, spans_a, np)) == NULL && (why = check_spans(&lb, spans_b, np)) == NULL)
            why = compare(&la, spans_a, &lb, spans_b, np);
        if (why != NULL)
            fail(reading == 0 ? why : "executable comments read as comments: a value changed the statement", out_a,
                 len_a, out_b, len_b);
    }
    txm__free(out_a);
    txm__free(out_b);
    free(sql);
    return 0;
}
