/*
 * URL parsing: txm__url_parse, txm__url_free, txm__url_scheme (core/internal.h) and the public
 * txm_url_param_get (include/txm/driver.h).
 *
 * Accepted forms
 *   scheme://[user[:password]@]host[:port][/path][?k=v&k2=v2]   hierarchical
 *   scheme://[user@][::1]:5432/db                                bracketed IPv6 host
 *   scheme://user@/db?socket=/run/mysqld.sock                    empty host (unix socket)
 *   scheme://h1:5432,h2:5433/db                                  libpq host list: kept whole in
 *                                                                `host`, port 0
 *   scheme:opaque[?k=v&...]      sqlite:/tmp/x.db?busy_timeout=100, sqlite::memory:, sqlite:rel.db
 *
 * Rules
 *  - The scheme is a letter followed by letters, digits, '+', '-', '.'; it is stored lower-case.
 *  - user, password, host, path, parameter names and values are percent-decoded; '+' is kept as
 *    is (as libpq does). "%00" and malformed escapes are TXM_EINVALID. Raw control characters
 *    (0x00-0x1f, 0x7f) anywhere in the URL are TXM_EINVALID (a trailing newline read from a file
 *    would otherwise become part of a path or password).
 *  - The port is empty (port 0) or a decimal number in 1..65535.
 *  - Query parameters are split on '&'; "k" alone has value ""; empty segments are skipped; an
 *    empty name is TXM_EINVALID. Duplicates are kept; txm_url_param_get returns the last one.
 *  - There are no fragments: '#' is an ordinary character (it is common in passwords).
 *
 * Redaction. `redacted` is the URL as given with every secret replaced by "***":
 *  - the password of the user information;
 *  - the value of every key=value pair whose (decoded, case-insensitive) key contains "pass",
 *    "pwd", "secret" or "token", or is "key"/"hexkey" (SQLCipher). This covers query parameters
 *    (?password=..., ?pass%77ord=...) and libpq conninfo written after the scheme
 *    (postgresql:host=h password=x, password = 'a b'): a key counts after the scheme's ':', a
 *    space, a tab, '?', '&', ';', ',', ':' or '/'. libpq's secret keywords (dispchar "*" in
 *    PQconndefaults: password, sslpassword) and Connector/C's (password, passwd) all match.
 * A password holding an unencoded '/', '?' or '@' makes the URL ambiguous: parsed by the RFC
 * rules its tail would become host, port or path, and would appear in error messages. So when an
 * '@' follows the authority, everything from the first ':' after "//" up to the last '@' is
 * masked. Opaque URLs get the same treatment (from the first ':' after the scheme, or from the
 * start of the opaque part, up to the last '@'), which also covers a URL whose scheme was left
 * out ("user:secret@host"). Redaction errs on the side of hiding: an '@' in a query value may
 * mask more than the password. Error messages quote only `redacted`, never the input.
 *
 * Secrets and scrubbing. Redaction hides a secret where the URL writes it, but a library may
 * echo the URL or a piece of it in its own words (libpq quotes a bad URI whole). So the parser
 * also records every secret in every spelling a library might print: as written, percent-decoded,
 * with '+' read as a space, a quoted conninfo value with and without its quotes and backslash
 * escapes, a value cut at a space or at '&'. txm__scrub replaces each occurrence of any of them
 * (longest first) by "***" in any text, and every piece of 4 bytes or more of one that is not a
 * guess (servers echo pieces: MariaDB quotes only the rejected element of a ',' list; the
 * ambiguous span above and its pieces are masked only whole); the core passes every error
 * message, detail and log line through it (core/error.c, core/conn.c). Every occurrence is
 * masked, however short the secret: a one-character password turns each of its characters in a
 * message into "***", an ugly message being better than a leaked password. Text that was cut short
 * (a bounded buffer) also has a trailing partial spelling (a prefix of a secret) masked.
 *
 * Memory: one txm__malloc block holds the txm_url, its parameter array and every string; a
 * second one holds the secret list (wiped before it is freed).
 */
#include "internal.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NONE SIZE_MAX

/* ---- locale-independent character classes ---- */
static bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static unsigned char to_lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }
static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = to_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Length of the scheme of s (up to, excluding, the ':'), or 0 if s does not start with one. */
static size_t scheme_len(const char *s)
{
    size_t i = 1;
    if (!is_alpha((unsigned char)s[0]))
        return 0;
    while (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
        i++;
    return s[i] == ':' ? i : 0;
}

/* The error for a string without a valid scheme. The URL is not quoted: without a scheme we do
 * not know where a password would be. */
static int err_scheme(const char *s)
{
    if (s[0] == '\0')
        return txm__err(TXM_EINVALID, "invalid URL: empty string");
    if (s[0] == ':')
        return txm__err(TXM_EINVALID, "invalid URL: empty scheme before ':'");
    return txm__err(TXM_EINVALID, "invalid URL: missing or malformed scheme (expected SCHEME:..., e.g. "
                                  "sqlite:PATH or postgresql://HOST/DB; a scheme starts with a letter)");
}

int txm__url_scheme(const char *s, char *buf, size_t size)
{
    size_t len, i;
    if (buf && size)
        buf[0] = '\0';
    if (!s)
        return txm__err(TXM_EINVALID, "invalid URL: NULL");
    len = scheme_len(s);
    if (!len)
        return err_scheme(s);
    if (!buf || len >= size)
        return txm__err(TXM_EINVALID, "invalid URL: scheme longer than %zu bytes", size ? size - 1 : 0);
    for (i = 0; i < len; i++)
        buf[i] = (char)to_lower((unsigned char)s[i]);
    buf[len] = '\0';
    return 0;
}

/* ---- structure (no decoding) ---- */
typedef struct span {
    size_t b, e; /* [b, e) */
} span;

typedef struct url_split {
    size_t n;
    size_t scheme_end; /* index of the ':' after the scheme */
    bool hier;
    span user, pass;   /* pass is empty when there is no ':' in the user information */
    span host;         /* without brackets */
    span port;         /* empty when absent */
    bool port_colon;   /* the port text (not the host) held a ':' (unbracketed IPv6) */
    bool host_list;    /* a ',' in host:port: libpq multi-host list kept whole */
    size_t bracket_err; /* offset of a malformed '[' ... ']' host, or NONE */
    span path;
    size_t query;      /* index after '?', or NONE */
    span mask;         /* redaction of the password (b == e: nothing) */
} url_split;

static size_t find_chr(const char *s, size_t b, size_t e, char c)
{
    const char *p = b < e ? memchr(s + b, c, e - b) : NULL;
    return p ? (size_t)(p - s) : NONE;
}
static size_t rfind_chr(const char *s, size_t b, size_t e, char c)
{
    while (e > b)
        if (s[--e] == c)
            return e;
    return NONE;
}

static void split(const char *s, size_t n, size_t scheme_end, url_split *u)
{
    size_t a, auth_end, q, at, last_at, colon;
    memset(u, 0, sizeof *u);
    u->n = n;
    u->scheme_end = scheme_end;
    u->bracket_err = NONE;
    a = scheme_end + 1;
    u->hier = s[a] == '/' && s[a + 1] == '/';
    if (!u->hier) {
        q = find_chr(s, a, n, '?');
        u->path.b = a;
        u->path.e = q == NONE ? n : q;
        u->query = q == NONE ? NONE : q + 1;
        last_at = rfind_chr(s, a, n, '@');
        if (last_at != NONE) {
            colon = find_chr(s, a, last_at, ':');
            u->mask.b = colon == NONE ? a : colon + 1;
            u->mask.e = last_at;
        }
        return;
    }

    a += 2;
    auth_end = a;
    while (auth_end < n && s[auth_end] != '/' && s[auth_end] != '?')
        auth_end++;
    at = rfind_chr(s, a, auth_end, '@');
    last_at = rfind_chr(s, a, n, '@');
    if (at != NONE) {
        colon = find_chr(s, a, at, ':');
        u->user.b = a;
        u->user.e = colon == NONE ? at : colon;
        if (colon != NONE) {
            u->pass.b = colon + 1;
            u->pass.e = at;
        }
    }
    if (last_at != NONE && last_at == at) {
        u->mask = u->pass; /* unambiguous: exactly the password */
    } else if (last_at != NONE) {
        /* An '@' beyond the authority: maybe a password with '/', '?' or '@' in it. */
        colon = find_chr(s, a, last_at, ':');
        if (colon != NONE) {
            u->mask.b = colon + 1;
            u->mask.e = last_at;
        }
    }

    /* host[:port] */
    {
        size_t hb = at == NONE ? a : at + 1, he = auth_end;
        if (hb < he && s[hb] == '[') {
            size_t rb = find_chr(s, hb, he, ']');
            if (rb == NONE || (rb + 1 < he && s[rb + 1] != ':')) {
                u->bracket_err = hb;
            } else {
                u->host.b = hb + 1;
                u->host.e = rb;
                if (rb + 1 < he) {
                    u->port.b = rb + 2;
                    u->port.e = he;
                }
            }
        } else if (find_chr(s, hb, he, ',') != NONE) {
            u->host_list = true;
            u->host.b = hb;
            u->host.e = he;
        } else {
            size_t pc = find_chr(s, hb, he, ':');
            u->host.b = hb;
            u->host.e = pc == NONE ? he : pc;
            if (pc != NONE) {
                u->port.b = pc + 1;
                u->port.e = he;
                u->port_colon = find_chr(s, pc + 1, he, ':') != NONE;
            }
        }
    }

    q = find_chr(s, auth_end, n, '?');
    if (auth_end < n && s[auth_end] == '/') {
        u->path.b = auth_end + 1;
        u->path.e = q == NONE ? n : q;
    } else {
        u->path.b = u->path.e = auth_end;
    }
    u->query = q == NONE ? NONE : q + 1;
}

/* ---- redaction ---- */

/* Whether a query parameter named s[0..len) (raw, possibly percent-encoded) holds a secret. */
static bool is_secret_key(const char *s, size_t len)
{
    static const char *const parts[] = {"pass", "pwd", "secret", "token"};
    char key[64];
    size_t i, k = 0, j;
    for (i = 0; i < len && k < sizeof key - 1; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = hex_val((unsigned char)s[i + 1])) >= 0 &&
            (lo = hex_val((unsigned char)s[i + 2])) >= 0) {
            key[k++] = (char)to_lower((unsigned char)(hi * 16 + lo));
            i += 2;
        } else {
            key[k++] = (char)to_lower((unsigned char)s[i]);
        }
    }
    if (i < len)
        return true; /* absurdly long name: hide its value rather than guess */
    key[k] = '\0';
    if (strcmp(key, "key") == 0 || strcmp(key, "hexkey") == 0)
        return true;
    for (j = 0; j < sizeof parts / sizeof parts[0]; j++)
        if (strstr(key, parts[j]))
            return true;
    return false;
}

/* ---- secrets: every spelling of every secret ---- */

typedef struct secret {
    const char *p;
    size_t len;
    bool pieces; /* runs of PIECE_MIN bytes of it are masked too (not for guessed spans) */
} secret;

/* What txm__url_parse returns: the public txm_url first, so a txm_url * points here. */
typedef struct url_priv {
    txm_url pub;
    secret *secrets; /* longest first, no duplicates, none empty */
    size_t nsecrets;
    size_t secret_bytes; /* size of the block `secrets` points to */
} url_priv;

/* Spellings collected while parsing: bytes back to back in buf, entries as (offset, length). */
typedef struct secret_list {
    char *buf;
    size_t len, cap;
    size_t (*ent)[3]; /* offset, length, SP_WHOLE */
    size_t n, ncap;
    bool oom;
    bool over; /* more than SECRETS_MAX_BYTES / SECRETS_MAX_COUNT */
} secret_list;

/* Scrubbing costs up to (text length x recorded bytes): a URL whose secrets need more is refused
 * (no real URL comes near; a hostile one must not make every message take seconds). */
#define SECRETS_MAX_BYTES 32768u
#define SECRETS_MAX_COUNT 1024u

/* Transformations of a spelling; SP_WHOLE: mask it only whole (a guessed, maybe too wide span). */
enum { SP_DECODE = 1, SP_PLUS = 2, SP_UNESCAPE = 4, SP_WHOLE = 8 };

static bool sl_reserve(secret_list *l, size_t bytes)
{
    if (l->oom || l->over)
        return false;
    if (bytes > SECRETS_MAX_BYTES - l->len || l->n >= SECRETS_MAX_COUNT)
        return !(l->over = true);
    if (l->n == l->ncap) {
        size_t nc = l->ncap ? 2 * l->ncap : 16;
        void *ne = txm__realloc(l->ent, nc * sizeof *l->ent);
        if (!ne)
            return !(l->oom = true);
        l->ent = ne;
        l->ncap = nc;
    }
    if (l->cap - l->len < bytes) {
        size_t nc = l->cap ? l->cap : 64;
        char *nb;
        while (nc - l->len < bytes)
            nc *= 2;
        nb = txm__realloc(l->buf, nc);
        if (!nb)
            return !(l->oom = true);
        l->buf = nb;
        l->cap = nc;
    }
    return true;
}

/* Adds src[0..len) transformed by `how` (SP_*; never longer than the source). Malformed
 * percent-escapes stay as written: a library that cannot decode them prints them raw. */
static void sl_add(secret_list *l, const char *src, size_t len, unsigned how)
{
    char *d;
    size_t i, k = 0;
    int hi, lo;
    if (len == 0 || !sl_reserve(l, len))
        return;
    d = l->buf + l->len;
    for (i = 0; i < len; i++) {
        char c = src[i];
        if ((how & SP_UNESCAPE) && c == '\\' && i + 1 < len)
            c = src[++i];
        else if ((how & SP_DECODE) && c == '%' && i + 2 < len && (hi = hex_val((unsigned char)src[i + 1])) >= 0 &&
                 (lo = hex_val((unsigned char)src[i + 2])) >= 0 && (hi | lo))
            c = (char)(hi * 16 + lo), i += 2;
        else if ((how & SP_PLUS) && c == '+')
            c = ' ';
        d[k++] = c;
    }
    if (k == 0)
        return;
    l->ent[l->n][0] = l->len;
    l->ent[l->n][1] = k;
    l->ent[l->n][2] = how & SP_WHOLE;
    l->n++;
    l->len += k;
}

/* Every spelling of the secret written as s[b..e). how: SP_UNESCAPE for a quoted conninfo value,
 * SP_WHOLE for a guessed span. */
static void sl_add_span(secret_list *l, const char *s, size_t b, size_t e, unsigned how)
{
    unsigned w = how & SP_WHOLE;
    if (b >= e)
        return;
    sl_add(l, s + b, e - b, w);
    sl_add(l, s + b, e - b, w | SP_DECODE);
    if (find_chr(s, b, e, '+') != NONE) {
        sl_add(l, s + b, e - b, w | SP_PLUS);
        sl_add(l, s + b, e - b, w | SP_DECODE | SP_PLUS);
    }
    if ((how & SP_UNESCAPE) && find_chr(s, b, e, '\\') != NONE) {
        sl_add(l, s + b, e - b, w | SP_UNESCAPE);
        sl_add(l, s + b, e - b, w | SP_UNESCAPE | SP_DECODE);
    }
}

static void mark(unsigned char *mask, size_t b, size_t e)
{
    if (b < e)
        memset(mask + b, 1, e - b);
}

static bool is_key_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.' || c == '%';
}
static bool is_key_boundary(char c)
{
    return c == ' ' || c == '\t' || c == '?' || c == '&' || c == ';' || c == ',' || c == ':' || c == '/';
}
static bool is_space(char c) { return c == ' ' || c == '\t'; }

/* Finds every secret key=value pair in s[a..n): records its value's spellings and marks the
 * value in `mask`. After '?' or '&' a value runs to the next '&' (query syntax); elsewhere
 * (libpq conninfo) spaces may surround '=', the value is 'quoted' (with \' and \\ escapes) or
 * runs to the next space or '&' (and, when '&' comes first, also to the next space). */
/* The first index >= from whose byte is in `set` (n if none). *cache remembers the last answer,
 * which stays right for every later `from` up to it: the scan stays linear in n. */
static size_t next_of(const char *s, size_t from, size_t n, const char *set, size_t *cache)
{
    if (*cache != NONE && *cache >= from)
        return *cache;
    while (from < n && !strchr(set, s[from]))
        from++;
    return *cache = from;
}

static void scan_key_values(const char *s, size_t a, size_t n, secret_list *l, unsigned char *mask)
{
    size_t i, j, k, vb, q, e_sp, e_amp, e_min, amp_cache = NONE, sp_cache = NONE;
    for (i = a; i < n; i++) {
        bool query;
        if ((i > a && !is_key_boundary(s[i - 1])) || !is_key_char((unsigned char)s[i]))
            continue;
        query = i > a && (s[i - 1] == '?' || s[i - 1] == '&');
        for (j = i; j < n && is_key_char((unsigned char)s[j]);)
            j++;
        for (k = j; !query && k < n && is_space(s[k]);)
            k++;
        if (k >= n || s[k] != '=' || !is_secret_key(s + i, j - i)) {
            /* "password%3Dx": libpq decodes the name and quotes "password=x" as a bad parameter */
            for (q = is_secret_key(s + i, j - i) ? i : j; q + 3 <= j; q++)
                if (s[q] == '%' && s[q + 1] == '3' && (s[q + 2] == 'D' || s[q + 2] == 'd')) {
                    sl_add_span(l, s, q + 3, j, 0);
                    mark(mask, q + 3, j);
                    break;
                }
            i = j - 1;
            continue;
        }
        for (vb = k + 1; !query && vb < n && is_space(s[vb]);)
            vb++;
        if (!query && vb < n && s[vb] == '\'') {
            for (q = vb + 1; q < n && s[q] != '\''; q++)
                if (s[q] == '\\' && q + 1 < n)
                    q++;
            sl_add_span(l, s, vb + 1, q, SP_UNESCAPE);
            sl_add_span(l, s, vb, q < n ? q + 1 : n, 0);
            mark(mask, vb, q < n ? q + 1 : n);
            i = q;
            continue;
        }
        e_amp = next_of(s, vb, n, "&", &amp_cache);
        e_sp = next_of(s, vb, n, " \t", &sp_cache);
        e_min = e_sp < e_amp ? e_sp : e_amp;
        if (query) {
            sl_add_span(l, s, vb, e_amp, 0);
        } else {
            /* conninfo ends the value at a space; a Connector/C-like reader at '&' */
            sl_add_span(l, s, vb, e_min, 0);
            if (e_sp > e_min)
                sl_add_span(l, s, vb, e_sp, 0);
        }
        mark(mask, vb, query ? e_amp : e_min);
        /* go on scanning inside the value: it may hold another key (never less hiding) */
    }
}

static int cmp_secret(const void *x, const void *y)
{
    const secret *a = x, *b = y;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return memcmp(a->p, b->p, a->len);
}

/* Turns the collected spellings into one block: the array (sorted longest first, without
 * duplicates) followed by the bytes. */
static int sl_finish(secret_list *l, url_priv *u)
{
    size_t i, k = 0, bytes;
    char *area;
    secret *arr;
    if (l->oom)
        return TXM_ENOMEM;
    if (l->n == 0)
        return 0;
    bytes = l->n * sizeof(secret) + l->len;
    arr = txm__malloc(bytes);
    if (!arr)
        return TXM_ENOMEM;
    area = (char *)(arr + l->n);
    memcpy(area, l->buf, l->len);
    for (i = 0; i < l->n; i++) {
        arr[i].p = area + l->ent[i][0];
        arr[i].len = l->ent[i][1];
        arr[i].pieces = l->ent[i][2] == 0;
    }
    qsort(arr, l->n, sizeof *arr, cmp_secret);
    for (i = 0; i < l->n; i++) {
        if (k == 0 || cmp_secret(&arr[k - 1], &arr[i]) != 0)
            arr[k++] = arr[i];
        else
            arr[k - 1].pieces |= arr[i].pieces; /* a real secret that a guess also found */
    }
    u->secrets = arr;
    u->nsecrets = k;
    u->secret_bytes = bytes;
    return 0;
}

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static void sl_free(secret_list *l)
{
    if (l->buf)
        wipe(l->buf, l->cap);
    txm__free(l->buf);
    txm__free(l->ent);
}

/* Collects every secret of s (split into u) and marks the bytes `redacted` hides. */
static void collect(const char *s, const url_split *u, secret_list *l, unsigned char *mask)
{
    size_t i, b;
    bool ambiguous = u->mask.b != u->pass.b || u->mask.e != u->pass.e;
    sl_add_span(l, s, u->pass.b, u->pass.e, 0);
    /* The ambiguous span is a guess that may reach into the host or query: masked only whole. */
    sl_add_span(l, s, u->mask.b, u->mask.e, ambiguous ? SP_WHOLE : 0);
    /* An ambiguous password (an unencoded '/', '?', '@', ... in it) is split by libraries at its
     * delimiters, and they quote the pieces ("missing = in URI query parameter: rd@host"): each
     * piece of 3 bytes or more is a secret too. (The span is a guess that may reach into the host
     * or query; masking its 1-2 byte pieces everywhere would garble every message.) */
    if (ambiguous)
        for (i = b = u->mask.b; i <= u->mask.e; i++)
            if (i == u->mask.e || strchr("/?@#:&=[],;", s[i])) {
                if (i - b >= 3)
                    sl_add_span(l, s, b, i, SP_WHOLE);
                b = i + 1;
            }
    mark(mask, u->pass.b, u->pass.e);
    mark(mask, u->mask.b, u->mask.e);
    scan_key_values(s, u->scheme_end + 1, u->n, l, mask);
}

/* Servers echo pieces of a value: MariaDB quotes only the element of a ',' list that it rejects,
 * messages cut long values. So a run of PIECE_MIN or more bytes of a secret is masked too, wherever
 * it stands; a shorter secret only where it stands whole. */
#define PIECE_MIN 4

/* Length of the longest secret, or piece of one, at t[0..n); 0 if none. */
static size_t match_at(const url_priv *p, const char *t, size_t n)
{
    size_t i, j, k, best = 0;
    for (i = 0; i < p->nsecrets; i++) {
        const secret *x = &p->secrets[i];
        if (x->len <= best)
            break; /* longest first: nothing longer follows */
        if (x->len <= n && memcmp(x->p, t, x->len) == 0)
            return x->len;
        for (j = 0; x->pieces && x->len > PIECE_MIN && j + PIECE_MIN <= x->len; j++) {
            if (x->p[j] != t[0])
                continue;
            for (k = 1; k < n && j + k < x->len && x->p[j + k] == t[k];)
                k++;
            if (k >= PIECE_MIN && k > best)
                best = k;
        }
    }
    return best;
}

/* Length of the longest tail of t[0..n) that is a proper prefix of a secret, or 0. */
static size_t partial_tail(const url_priv *p, const char *t, size_t n)
{
    size_t i, best = 0, k;
    for (i = 0; i < p->nsecrets; i++) {
        const secret *x = &p->secrets[i];
        for (k = (x->len - 1 < n ? x->len - 1 : n); k > best; k--)
            if (memcmp(t + n - k, x->p, k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

size_t txm__scrub(const txm_url *url, char *dst, size_t size, const char *src, bool cut)
{
    const url_priv *p = (const url_priv *)(const void *)url;
    size_t o = 0, i = 0, n, m, plain = 0, tail;
    bool truncated = false;
    if (size == 0)
        return 0;
    if (!src)
        src = "";
    if (!p || p->nsecrets == 0) {
        txm__strlcpy(dst, src, size);
        return strlen(dst);
    }
    n = strlen(src);
    while (i < n) {
        if ((m = match_at(p, src + i, n - i)) > 0) {
            if (o + 3 >= size) {
                truncated = true;
                break;
            }
            memcpy(dst + o, "***", 3);
            o += 3;
            i += m;
            plain = o;
            continue;
        }
        if (o + 1 >= size) {
            truncated = true;
            break;
        }
        dst[o++] = src[i++];
    }
    if (truncated && ((unsigned char)src[i] & 0xC0) == 0x80) {
        /* Do not cut a UTF-8 sequence in half. */
        while (o > plain && ((unsigned char)dst[o - 1] & 0xC0) == 0x80)
            o--;
        if (o > plain && (unsigned char)dst[o - 1] >= 0xC0)
            o--;
    }
    /* Text cut short may end in the first bytes of a secret: hide them too. */
    if ((truncated || cut) && (tail = partial_tail(p, dst + plain, o - plain)) > 0) {
        o -= tail;
        if (o + 3 >= size)
            o = size > 4 ? size - 4 : 0;
        if (o + 3 < size) {
            memcpy(dst + o, "***", 3);
            o += 3;
        }
    }
    dst[o] = '\0';
    return o;
}

size_t txm__url_secret_count(const txm_url *url)
{
    return url ? ((const url_priv *)(const void *)url)->nsecrets : 0;
}

/* Writes s[0..n) into dst with every marked run replaced by "***"; returns the length. dst NULL:
 * only measures. */
static size_t write_redacted(const char *s, size_t n, const unsigned char *mask, char *dst)
{
    size_t i = 0, k = 0;
    while (i < n) {
        if (mask[i]) {
            while (i < n && mask[i])
                i++;
            if (dst)
                memcpy(dst + k, "***", 3);
            k += 3;
            continue;
        }
        if (dst)
            dst[k] = s[i];
        k++;
        i++;
    }
    if (dst)
        dst[k] = '\0';
    return k;
}

/* ---- decoding into the block ---- */
typedef struct builder {
    const char *s;
    const char *redacted; /* what messages quote: `redacted` scrubbed of every secret spelling */
    char quoted[TXM_ERR_MSG_MAX];
    char *p; /* next free byte of the string area */
} builder;

/* Percent-decodes s[sp) into the block; *out points at the NUL-terminated result. */
static int decode(builder *b, span sp, const char *what, const char **out)
{
    char *d = b->p;
    size_t i;
    for (i = sp.b; i < sp.e; i++) {
        unsigned char c = (unsigned char)b->s[i];
        if (c == '%') {
            int hi = i + 2 < sp.e ? hex_val((unsigned char)b->s[i + 1]) : -1;
            int lo = i + 2 < sp.e ? hex_val((unsigned char)b->s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return txm__err(TXM_EINVALID,
                                "invalid URL '%s': bad percent-escape in the %s at byte offset %zu "
                                "(expected %% and two hex digits; write a literal %% as %%25)",
                                b->redacted, what, i);
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return txm__err(TXM_EINVALID, "invalid URL '%s': %%00 (NUL byte) in the %s at byte offset %zu",
                                b->redacted, what, i);
            i += 2;
        }
        *d++ = (char)c;
    }
    *d++ = '\0';
    *out = b->p;
    b->p = d;
    return 0;
}

static int parse_port(builder *b, const url_split *u, int *port)
{
    unsigned long v = 0;
    size_t i;
    *port = 0;
    if (u->port.b == u->port.e)
        return 0;
    for (i = u->port.b; i < u->port.e; i++) {
        unsigned char c = (unsigned char)b->s[i];
        if (!is_digit(c) || (v = v * 10 + (unsigned long)(c - '0')) > 65535)
            break;
    }
    /* The URL is not quoted: text in the port position may be a password whose '@' is missing. */
    if (i < u->port.e || v == 0)
        return txm__err(TXM_EINVALID, "invalid URL: the port at byte offset %zu must be a number in 1..65535%s",
                        u->port.b, u->port_colon ? " (write an IPv6 address in brackets: [::1]:5432)" : "");
    *port = (int)v;
    return 0;
}

static int parse_params(builder *b, const url_split *u, txm_url_param *params, size_t *np)
{
    size_t i = u->query;
    *np = 0;
    if (i == NONE)
        return 0;
    while (i <= u->n) {
        size_t e = find_chr(b->s, i, u->n, '&'), eq;
        span k, v;
        int rc;
        if (e == NONE)
            e = u->n;
        if (e > i) {
            eq = find_chr(b->s, i, e, '=');
            k.b = i;
            k.e = eq == NONE ? e : eq;
            v.b = eq == NONE ? e : eq + 1;
            v.e = e;
            if (k.b == k.e)
                return txm__err(TXM_EINVALID, "invalid URL '%s': query parameter at byte offset %zu has an empty name",
                                b->redacted, i);
            if ((rc = decode(b, k, "query parameter name", &params[*np].key)) ||
                (rc = decode(b, v, "query parameter value", &params[*np].value)))
                return rc;
            (*np)++;
        }
        i = e + 1;
    }
    return 0;
}

int txm__url_parse(txm_url **out, const char *s)
{
    size_t n, slen, i, np_max = 0, chars, red_len, size;
    url_split u;
    url_priv *priv;
    txm_url *url;
    txm_url_param *params;
    builder b;
    char *area, *scheme;
    unsigned char *mask;
    secret_list sl;
    int rc;

    if (!out)
        return txm__err(TXM_EINVALID, "txm__url_parse: out is NULL");
    *out = NULL;
    if (!s)
        return txm__err(TXM_EINVALID, "invalid URL: NULL");
    slen = scheme_len(s);
    if (!slen)
        return err_scheme(s);
    n = strlen(s);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return txm__err(TXM_EINVALID, "invalid URL: control character 0x%02x at byte offset %zu", (unsigned)c, i);
    }
    if (n > (SIZE_MAX - 4096) / 16)
        return txm__err(TXM_EINVALID, "invalid URL: %zu bytes is too long", n);

    split(s, n, slen, &u);
    if (u.query != NONE)
        for (np_max = 1, i = u.query; i < n; i++)
            np_max += s[i] == '&';

    /* The secrets and the bytes `redacted` hides, before anything can quote the URL. */
    memset(&sl, 0, sizeof sl);
    mask = txm__calloc(n + 1, 1);
    if (mask)
        collect(s, &u, &sl, mask);
    if (!mask || sl.oom) {
        txm__free(mask);
        sl_free(&sl);
        return txm__err(TXM_ENOMEM, "out of memory parsing a URL (%zu bytes)", n);
    }
    if (sl.over) {
        txm__free(mask);
        sl_free(&sl);
        return txm__err(TXM_EINVALID, "invalid URL: its passwords and secret parameters take more than %u bytes "
                                      "(or %u spellings) in all; txm refuses to scrub messages of so many",
                        SECRETS_MAX_BYTES, SECRETS_MAX_COUNT);
    }
    red_len = write_redacted(s, n, mask, NULL);

    /* full + redacted + decoded parts. The decoded parts come from disjoint spans of s, so they
     * take at most n bytes plus one NUL each (scheme, user, password, host, path, 2 per param). */
    chars = (n + 1) + (red_len + 1) + (n + 5 + 2 * np_max);
    size = sizeof(url_priv) + np_max * sizeof(txm_url_param) + chars;
    priv = txm__malloc(size);
    if (!priv || (memset(priv, 0, sizeof *priv), sl_finish(&sl, priv)) != 0) {
        txm__free(priv);
        txm__free(mask);
        sl_free(&sl);
        return txm__err(TXM_ENOMEM, "out of memory parsing a URL (%zu bytes)", size);
    }
    sl_free(&sl);
    url = &priv->pub;
    params = (txm_url_param *)(priv + 1);
    area = (char *)(params + np_max);

    memcpy(area, s, n + 1);
    url->full = area;
    area += n + 1;
    write_redacted(s, n, mask, area);
    txm__free(mask);
    url->redacted = area;
    area += red_len + 1;

    scheme = area;
    for (i = 0; i < slen; i++)
        scheme[i] = (char)to_lower((unsigned char)s[i]);
    scheme[slen] = '\0';
    url->scheme = scheme;
    area += slen + 1;

    b.s = s;
    /* `redacted` hides each secret where the URL writes it as one; the scrub also hides it where
     * it reappears (a user name equal to the password, a piece of an ambiguous password). Only
     * the quoted URL is scrubbed, so the message itself stays readable however short a secret. */
    txm__scrub(url, b.quoted, sizeof b.quoted, url->redacted, false);
    b.redacted = b.quoted;
    b.p = area;
    url->hierarchical = u.hier;
    url->params = params;
    if (u.bracket_err != NONE) {
        rc = txm__err(TXM_EINVALID, "invalid URL '%s': malformed bracketed host at byte offset %zu "
                                    "(expected [ADDRESS] or [ADDRESS]:PORT)", b.redacted, u.bracket_err);
        goto fail;
    }
    /* The port first: later messages quote `redacted`, which is safe once the text in the port
     * position is known to be a number. */
    if ((rc = parse_port(&b, &u, &url->port)) || (rc = decode(&b, u.user, "user name", &url->user)) ||
        (rc = decode(&b, u.pass, "password", &url->password)) || (rc = decode(&b, u.host, "host", &url->host)) ||
        (rc = decode(&b, u.path, "path", &url->path)) || (rc = parse_params(&b, &u, params, &url->nparams)))
        goto fail;
    *out = url;
    return 0;

fail:
    txm__url_free(url);
    return rc;
}

void txm__url_free(txm_url *u)
{
    url_priv *p = (url_priv *)(void *)u;
    if (!p)
        return;
    if (p->secrets) {
        wipe(p->secrets, p->secret_bytes);
        txm__free(p->secrets);
    }
    txm__free(p);
}

const char *txm_url_param_get(const txm_url *u, const char *key)
{
    size_t i;
    if (!u || !key)
        return NULL;
    for (i = u->nparams; i-- > 0;)
        if (strcmp(u->params[i].key, key) == 0)
            return u->params[i].value;
    return NULL;
}

/* ---- txm's own parameters: read by the core, removed before any driver sees the URL ---------- */

#define CORE_RETRIES_KEY "txm_autocommit_retries"

/* Copies full[0..n) into buf without every parameter named `key` of the query that starts at
 * `query` (the index after the '?'); the '?' goes too when nothing is left. Returns how many
 * were removed. */
static size_t strip_param(const char *full, size_t n, size_t query, const char *key, char *buf)
{
    size_t klen = strlen(key), i, e, o = query, removed = 0;
    memcpy(buf, full, query);
    for (i = query; i <= n; i = e + 1) {
        e = find_chr(full, i, n, '&');
        if (e == NONE)
            e = n;
        if (e - i >= klen && memcmp(full + i, key, klen) == 0 && (i + klen == e || full[i + klen] == '=')) {
            removed++;
        } else if (e > i) {
            if (o > query)
                buf[o++] = '&';
            memcpy(buf + o, full + i, e - i);
            o += e - i;
        }
    }
    if (o == query)
        o--; /* nothing kept: drop the '?' */
    buf[o] = '\0';
    return removed;
}

static int parse_retries(const txm_url *u, const char *v, int *out)
{
    unsigned long r = 0;
    size_t i;
    for (i = 0; v[i]; i++) {
        if (!is_digit((unsigned char)v[i]) || (r = r * 10 + (unsigned long)(v[i] - '0')) > TXM_AUTOCOMMIT_RETRIES_MAX)
            break;
    }
    if (i == 0 || v[i])
        return txm__err(TXM_EINVALID,
                        "txm_open: URL '%s': " CORE_RETRIES_KEY "='%s' must be a whole number from 0 to %u", u->redacted,
                        v, (unsigned)TXM_AUTOCOMMIT_RETRIES_MAX);
    *out = (int)r;
    return 0;
}

int txm__url_parse_core(txm_url **out, const char *s, int *autocommit_retries)
{
    txm_url *u = NULL, *inner = NULL;
    const char *v = NULL;
    size_t i, count = 0, n, removed;
    url_split sp;
    char *buf;
    int rc;

    *out = NULL;
    *autocommit_retries = -1;
    if ((rc = txm__url_parse(&u, s)) != 0)
        return rc;
    for (i = 0; i < u->nparams; i++) {
        if (strcmp(u->params[i].key, CORE_RETRIES_KEY) == 0) {
            count++;
            v = u->params[i].value;
        }
    }
    if (count == 0) {
        *out = u;
        return 0;
    }
    if (count > 1 || (rc = parse_retries(u, v, autocommit_retries)) != 0) {
        if (count > 1)
            rc = txm__err(TXM_EINVALID, "txm_open: URL '%s' gives " CORE_RETRIES_KEY " %zu times", u->redacted, count);
        txm__url_free(u);
        return rc;
    }
    n = strlen(s);
    split(s, n, scheme_len(s), &sp);
    buf = txm__malloc(n + 1);
    if (!buf) {
        txm__url_free(u);
        return txm__err(TXM_ENOMEM, "txm_open: out of memory");
    }
    removed = sp.query == NONE ? 0 : strip_param(s, n, sp.query, CORE_RETRIES_KEY, buf);
    rc = removed == count ? txm__url_parse(&inner, buf) : 0;
    txm__free(buf);
    if (removed != count) {
        /* A percent-encoded key the text scan cannot see would reach the driver: refuse. */
        rc = txm__err(TXM_EINVALID, "txm_open: URL '%s': write " CORE_RETRIES_KEY " plainly (not percent-encoded)",
                      u->redacted);
    }
    txm__url_free(u);
    if (rc)
        return rc;
    *out = inner;
    return 0;
}
