/* Dialect facts for SQL built at run time: identifier quoting and row-lock clauses. */
#include "internal.h"

#include <string.h>

/* Length of the UTF-8 sequence starting at s (n bytes available), or 0 if it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0u) != 0x80u)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int txm_quote_ident(const txm_conn *c, char *buf, size_t size, const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    char q;
    size_t n, i, o = 0;
    if (buf && size)
        buf[0] = '\0';
    if (!c)
        return txm__err(TXM_EINVALID, "txm_quote_ident: connection is NULL");
    if (!buf)
        return txm__err(TXM_EINVALID, "txm_quote_ident: buf is NULL");
    if (!name)
        return txm__err(TXM_EINVALID, "txm_quote_ident: name is NULL");
    n = strlen(name);
    if (n == 0)
        return txm__err(TXM_EINVALID, "txm_quote_ident: the identifier is empty");
    if (n > 63)
        return txm__err(TXM_EINVALID, "txm_quote_ident: the identifier is %zu bytes long (at most 63: PostgreSQL's "
                                      "limit, MySQL's is 64)", n);
    for (i = 0; i < n;) {
        size_t l;
        if (s[i] < 0x20 || s[i] == 0x7f)
            return txm__err(TXM_EINVALID, "txm_quote_ident: the identifier contains control character 0x%02x at "
                                          "byte %zu", s[i], i);
        l = utf8_len(s + i, n - i);
        if (!l)
            return txm__err(TXM_EINVALID, "txm_quote_ident: the identifier is not valid UTF-8 (byte %zu)", i);
        i += l;
    }
    q = (c->drv->dialect & TXM_DIALECT_IDENT_BACKTICK) ? '`' : '"';
    for (i = 0; i < n; i++)
        o += (name[i] == q) ? 2 : 1;
    if (o + 3 > size)
        return txm__err(TXM_EINVALID, "txm_quote_ident: buffer of %zu bytes is too small (%zu needed)", size,
                        o + 3);
    o = 0;
    buf[o++] = q;
    for (i = 0; i < n; i++) {
        if (name[i] == q)
            buf[o++] = q;
        buf[o++] = name[i];
    }
    buf[o++] = q;
    buf[o] = '\0';
    return 0;
}

const char *txm_sql_row_lock(const txm_conn *c, unsigned mode)
{
    if (!c || !(c->drv->dialect & TXM_DIALECT_ROW_LOCKS))
        return "";
    if (!(mode & TXM_ROW_LOCK_SHARE))
        return " FOR UPDATE";
    return (c->drv->dialect & TXM_DIALECT_SHARE_MODE) ? " LOCK IN SHARE MODE" : " FOR SHARE";
}
