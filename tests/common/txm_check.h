/* Assertion helpers shared by the per-driver Criterion suites (tests/pg, tests/mysql, tests/sqlite). */
#ifndef TXM_CHECK_H
#define TXM_CHECK_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "txm.h"

/* Skips the test, with the reason printed, when the environment variable `var` is unset or empty. */
#define NEED_URL(var, script)                                                                      \
    do {                                                                                           \
        const char *need_url_ = getenv(var);                                                       \
        if (!need_url_ || !*need_url_) {                                                           \
            fprintf(stderr, "[SKIP] %s is not set (%s start DIR prints one)\n", var, script);      \
            cr_skip_test("%s is not set: start a server with %s start DIR and export the URL it "  \
                         "prints", var, script);                                                   \
        }                                                                                          \
    } while (0)

/* The call must succeed; the failure message names the call, the code and txm's message. */
#define OK(expr)                                                                                   \
    do {                                                                                           \
        int ok_rc_ = (expr);                                                                       \
        cr_assert(ok_rc_ == 0, "%s failed: %s: %s", #expr, txm_err_name(ok_rc_),                  \
                  txm_error_last()->message);                                                      \
    } while (0)

/* The call must return exactly `want`. */
#define RC(want, expr)                                                                             \
    do {                                                                                           \
        int rc_rc_ = (expr);                                                                       \
        int rc_want_ = (want);                                                                     \
        cr_assert(rc_rc_ == rc_want_, "%s: expected %s, got %s (%s)", #expr, txm_err_name(rc_want_), \
                  txm_err_name(rc_rc_), rc_rc_ ? txm_error_last()->message : "no error");          \
    } while (0)

static inline txm_conn *check_open(const char *url, const txm_open_options *o)
{
    txm_conn *c = NULL;
    int rc = txm_open(&c, url, o);
    cr_assert(rc == 0, "txm_open: %s: %s", txm_err_name(rc), txm_error_last()->message);
    return c;
}

/* Runs a statement that must succeed. */
static inline void x(txm_conn *c, const char *sql) { OK(txm_exec(c, sql, NULL, 0, NULL)); }

/* The first column of the first row of a query that must succeed. */
static inline int64_t q1(txm_conn *c, const char *sql)
{
    int64_t v = 0;
    OK(txm_query_i64(c, &v, sql, NULL, 0));
    return v;
}

#endif
