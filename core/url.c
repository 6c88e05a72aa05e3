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
 * Redaction. `redacted` is the URL as given with secrets replaced by "***":
 *  - the password of the user information;
 *  - the value of every query parameter whose (decoded, case-insensitive) name contains "pass",
 *    "pwd", "secret" or "token", or is "key"/"hexkey" (SQLCipher).
 * A password holding an unencoded '/', '?' or '@' makes the URL ambiguous: parsed by the RFC
 * rules its tail would become host, port or path, and would appear in error messages. So when an
 * '@' follows the authority, everything from the first ':' after "//" up to the last '@' is
 * masked. Opaque URLs get the same treatment (from the first ':' after the scheme, or from the
 * start of the opaque part, up to the last '@'), which also covers a URL whose scheme was left
 * out ("user:secret@host"). Redaction errs on the side of hiding: an '@' in a query value may
 * mask more than the password. Error messages quote only `redacted`, never the input.
 *
 * Memory: one txm__malloc block holds the txm_url, its parameter array and every string.
 */
#include "internal.h"

#include <limits.h>
#include <stdbool.h>
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

/* Writes the redacted URL into dst (room: see redacted_max) and returns its length. */
static size_t write_redacted(const char *s, const url_split *u, char *dst)
{
    size_t i = 0, k = 0, vb = NONE, ve = NONE;
    while (i < u->n) {
        if (u->mask.b < u->mask.e && i >= u->mask.b && i < u->mask.e) {
            memcpy(dst + k, "***", 3);
            k += 3;
            i = u->mask.e;
            continue;
        }
        if (vb != NONE && i >= vb && i < ve) {
            memcpy(dst + k, "***", 3);
            k += 3;
            i = ve;
            continue;
        }
        dst[k++] = s[i];
        if ((s[i] == '?' || s[i] == '&') && i > u->scheme_end) {
            size_t kb = i + 1, ke = kb;
            while (ke < u->n && s[ke] != '=' && s[ke] != '&')
                ke++;
            if (ke < u->n && s[ke] == '=' && is_secret_key(s + kb, ke - kb)) {
                vb = ke + 1;
                ve = vb;
                while (ve < u->n && s[ve] != '&')
                    ve++;
            }
        }
        i++;
    }
    dst[k] = '\0';
    return k;
}

/* Upper bound of strlen(redacted) + 1: each "***" replaces at least one byte, and there is at
 * most one per '?' or '&' plus two for the password mask. */
static size_t redacted_max(const char *s, size_t n)
{
    size_t marks = 0, i;
    for (i = 0; i < n; i++)
        marks += s[i] == '?' || s[i] == '&';
    return n + 2 * (marks + 2) + 1;
}

/* ---- decoding into the block ---- */
typedef struct builder {
    const char *s;
    const char *redacted;
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
    size_t n, slen, i, np_max = 0, chars, red_max, size;
    url_split u;
    txm_url *url;
    txm_url_param *params;
    builder b;
    char *area, *scheme;
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

    /* full + redacted + decoded parts. The decoded parts come from disjoint spans of s, so they
     * take at most n bytes plus one NUL each (scheme, user, password, host, path, 2 per param). */
    red_max = redacted_max(s, n);
    chars = (n + 1) + red_max + (n + 5 + 2 * np_max);
    size = sizeof(txm_url) + np_max * sizeof(txm_url_param) + chars;
    url = txm__malloc(size);
    if (!url)
        return txm__err(TXM_ENOMEM, "out of memory parsing a URL (%zu bytes)", size);
    memset(url, 0, sizeof *url);
    params = (txm_url_param *)(url + 1);
    area = (char *)(params + np_max);

    memcpy(area, s, n + 1);
    url->full = area;
    area += n + 1;
    write_redacted(s, &u, area);
    url->redacted = area;
    area += red_max;

    scheme = area;
    for (i = 0; i < slen; i++)
        scheme[i] = (char)to_lower((unsigned char)s[i]);
    scheme[slen] = '\0';
    url->scheme = scheme;
    area += slen + 1;

    b.s = s;
    b.redacted = url->redacted;
    b.p = area;
    url->hierarchical = u.hier;
    url->params = params;
    if (u.bracket_err != NONE) {
        rc = txm__err(TXM_EINVALID, "invalid URL '%s': malformed bracketed host at byte offset %zu "
                                    "(expected [ADDRESS] or [ADDRESS]:PORT)", url->redacted, u.bracket_err);
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
    txm__free(url);
    return rc;
}

void txm__url_free(txm_url *u)
{
    txm__free(u);
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
