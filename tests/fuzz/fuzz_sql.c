/*
 * libFuzzer target for the SQL scanner (core/sql.c). For every combination of the five dialect
 * flags it runs txm__sql_placeholders in both styles and txm__sql_tx_control, and checks:
 *  - QMARK and DOLLAR agree: same return code, same count; QMARK never allocates (*out NULL);
 *  - a failure is TXM_EINVALID whose message names a byte offset, and leaves *out NULL, count 0;
 *  - DOLLAR returns a copy exactly when count > 0 (no copy: the input is used as is);
 *  - the DOLLAR output is the input with exactly `count` placeholders replaced, in order, by
 *    $1..$count, a space inserted before/after exactly when the neighbouring input byte is an
 *    identifier character, and every other byte unchanged;
 *  - scanning the output again finds no placeholder and no error (the rewrite does not change
 *    where literals and comments are), and txm__sql_tx_control says the same for input and output;
 *  - txm__sql_tx_control returns NULL or one of its static keywords.
 * A broken invariant prints the input and aborts (a crash for libFuzzer, a failure for the replay
 * driver, replay.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *cur_data;
static size_t cur_size;

static void fail(const char *what, unsigned dialect)
{
    size_t i;
    fprintf(stderr, "fuzz_sql: invariant broken (dialect 0x%x): %s\ninput (%zu bytes): \"", dialect, what, cur_size);
    for (i = 0; i < cur_size; i++) {
        unsigned c = cur_data[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc((int)c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
    abort();
}

static int is_ident(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           c >= 0x80;
}

/* Walks input and output together (see the header comment). */
static void check_rewrite(const char *in, const char *out, size_t count, unsigned dialect)
{
    size_t i = 0, j = 0, k = 0, n = strlen(in);
    while (i < n) {
        if (in[i] != '?' || out[j] == '?') {
            if (out[j] != in[i])
                fail("DOLLAR output differs from the input outside placeholders", dialect);
            i++;
            j++;
            continue;
        }
        /* A placeholder. */
        {
            size_t v = 0, digits = 0;
            int before = i > 0 && is_ident((unsigned char)in[i - 1]);
            int after = i + 1 < n && is_ident((unsigned char)in[i + 1]);
            k++;
            if (before) {
                if (out[j] != ' ')
                    fail("missing space before a placeholder that follows an identifier character", dialect);
                j++;
            }
            if (out[j] != '$')
                fail("placeholder not rewritten to $k", dialect);
            j++;
            while (out[j] >= '0' && out[j] <= '9') {
                v = v * 10 + (size_t)(out[j] - '0');
                digits++;
                j++;
            }
            if (digits == 0 || v != k)
                fail("placeholders are not numbered 1..n in order", dialect);
            if (after) {
                if (out[j] != ' ')
                    fail("missing space after a placeholder followed by an identifier character", dialect);
                j++;
            }
            i++;
        }
    }
    if (out[j] != '\0')
        fail("DOLLAR output has trailing bytes", dialect);
    if (k != count)
        fail("DOLLAR output holds a different number of placeholders than counted", dialect);
}

static void check_keyword(const char *kw, unsigned dialect)
{
    static const char *const ok[] = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "ABORT", "START",
                                       "XA", "PREPARE"};
    size_t i;
    if (!kw)
        return;
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(kw, ok[i]) == 0)
            return;
    fail("txm__sql_tx_control returned an unknown keyword", dialect);
}

static void check_failure(int rc, const char *out, size_t count, unsigned dialect)
{
    if (rc != TXM_EINVALID)
        fail("unexpected error code (only TXM_EINVALID is possible here)", dialect);
    if (out != NULL || count != 0)
        fail("a failure must leave *out NULL and the count 0", dialect);
    if (!strstr(txm_error_last()->message, "byte offset"))
        fail("the error message does not name the byte offset", dialect);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *sql = malloc(size + 1);
    unsigned d;
    if (!sql)
        return 0;
    memcpy(sql, data, size);
    sql[size] = '\0';
    cur_data = data;
    cur_size = size;

    for (d = 0; d < 32; d++) {
        char *q_out = (char *)1, *d_out = (char *)1, *again = (char *)1;
        size_t q_count = 99, d_count = 99, again_count = 99;
        int q_rc = txm__sql_placeholders(sql, TXM_PH_QMARK, d, &q_out, &q_count);
        int d_rc;
        const char *kw_in = txm__sql_tx_control(sql, d);
        check_keyword(kw_in, d);
        if (q_rc == 0 && q_out != NULL)
            fail("QMARK must not produce a copy", d);
        if (q_rc != 0)
            check_failure(q_rc, q_out, q_count, d);

        d_rc = txm__sql_placeholders(sql, TXM_PH_DOLLAR, d, &d_out, &d_count);
        if (d_rc != q_rc)
            fail("QMARK and DOLLAR disagree on success", d);
        if (d_rc != 0) {
            check_failure(d_rc, d_out, d_count, d);
            continue;
        }
        if (d_count != q_count)
            fail("QMARK and DOLLAR count differently", d);
        if ((d_out == NULL) != (d_count == 0))
            fail("DOLLAR must return a copy exactly when it rewrote placeholders", d);
        if (!d_out)
            continue; /* nothing rewritten: the caller uses the input as is */
        check_rewrite(sql, d_out, d_count, d);

        if (txm__sql_placeholders(d_out, TXM_PH_QMARK, d, &again, &again_count) != 0)
            fail("the DOLLAR output does not scan", d);
        if (again_count != 0)
            fail("the DOLLAR output still holds placeholders", d);
        {
            const char *kw_out = txm__sql_tx_control(d_out, d);
            if (kw_in != kw_out)
                fail("txm__sql_tx_control differs between input and output", d);
        }
        txm__free(d_out);
    }
    free(sql);
    return 0;
}
