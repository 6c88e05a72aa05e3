/*
 * libFuzzer target for the URL parser (core/url.c). Checks:
 *  - success or TXM_EINVALID; a failure leaves *out NULL and its message starts "invalid URL";
 *  - on success every string is non-NULL, `full` is the input, the scheme is the lower-cased
 *    prefix, the port is in 0..65535, every parameter is found by txm_url_param_get, and
 *    parsing is deterministic;
 *  - a password of 3 bytes or more never appears in `redacted` between ':' and '@';
 *  - with a known secret S and the fuzz input as tail T: for "mysql://u:" S T and "mysql:u:" S T
 *    when T holds an '@' (so S is a password by some reading), and for "sqlite:x?password=" S T,
 *    no 3-byte piece of S appears in `redacted` on success nor in the error message on failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *url)
{
    fprintf(stderr, "fuzz_url: invariant broken: %s\ninput: \"", what);
    for (; *url; url++) {
        unsigned c = (unsigned char)*url;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc((int)c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
    abort();
}

static const char SECRET[] = "Zq9Xv";

static void check_secret(const char *prefix, const char *tail)
{
    size_t plen = strlen(prefix), tlen = strlen(tail), k;
    char *url = malloc(plen + sizeof SECRET + tlen);
    txm_url *u = NULL;
    const char *text;
    if (!url)
        return;
    memcpy(url, prefix, plen);
    memcpy(url + plen, SECRET, sizeof SECRET - 1);
    memcpy(url + plen + sizeof SECRET - 1, tail, tlen + 1);
    text = txm__url_parse(&u, url) == 0 ? u->redacted : txm_error_last()->message;
    for (k = 0; k + 3 < sizeof SECRET; k++) {
        char piece[4];
        memcpy(piece, SECRET + k, 3);
        piece[3] = '\0';
        if (strstr(text, piece))
            fail(u ? "redacted shows part of the password" : "an error message shows part of the password", url);
    }
    txm__url_free(u);
    free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    txm_url *u = (txm_url *)1, *v = NULL;
    size_t i, n;
    int rc;
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    n = strlen(s);

    if (!strstr(s, "Zq9") && !strstr(s, "q9X") && !strstr(s, "9Xv")) {
        if (strchr(s, '@')) {
            check_secret("mysql://u:", s);
            check_secret("mysql:u:", s);
        }
        check_secret("sqlite:x?password=", s);
    }

    rc = txm__url_parse(&u, s);
    if (rc != 0) {
        if (rc != TXM_EINVALID)
            fail("unexpected error code", s);
        if (u != NULL)
            fail("*out not NULL after a failure", s);
        if (strncmp(txm_error_last()->message, "invalid URL", 11) != 0)
            fail("error message does not start with 'invalid URL'", s);
        free(s);
        return 0;
    }
    if (!u->full || !u->redacted || !u->scheme || !u->user || !u->password || !u->host || !u->path || !u->params)
        fail("a field is NULL", s);
    if (strcmp(u->full, s) != 0)
        fail("full differs from the input", s);
    for (i = 0; u->scheme[i]; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (u->scheme[i] != c)
            fail("scheme is not the lower-cased prefix", s);
    }
    if (s[i] != ':')
        fail("scheme is not followed by ':'", s);
    if (u->port < 0 || u->port > 65535)
        fail("port out of range", s);
    if (u->hierarchical != 0 && u->hierarchical != 1)
        fail("hierarchical is not 0/1", s);
    if (strlen(u->user) > n || strlen(u->password) > n || strlen(u->host) > n || strlen(u->path) > n)
        fail("a decoded field is longer than the input", s);
    for (i = 0; i < u->nparams; i++) {
        if (!u->params[i].key || !u->params[i].value || u->params[i].key[0] == '\0')
            fail("bad parameter", s);
        if (!txm_url_param_get(u, u->params[i].key))
            fail("txm_url_param_get misses a parameter", s);
    }
    /* A password made only of '*' reads like the mask itself: "***" in `redacted` then reveals
     * nothing (found by the CI fuzz run: user:***@...). */
    if (strlen(u->password) >= 3 && strspn(u->password, "*") != strlen(u->password)) {
        size_t plen = strlen(u->password);
        char *pat = malloc(plen + 3);
        if (pat) {
            pat[0] = ':';
            memcpy(pat + 1, u->password, plen);
            pat[plen + 1] = '@';
            pat[plen + 2] = '\0';
            if (strstr(u->redacted, pat))
                fail("redacted contains :password@", s);
            free(pat);
        }
    }
    if (txm__url_parse(&v, s) != 0 || strcmp(v->redacted, u->redacted) != 0 || strcmp(v->host, u->host) != 0 ||
        v->nparams != u->nparams)
        fail("parsing is not deterministic", s);
    txm__url_free(v);
    txm__url_free(u);
    free(s);
    return 0;
}
