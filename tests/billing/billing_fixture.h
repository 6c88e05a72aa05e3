/* Shared fixture of the billing tests: every test executable runs once per engine
 * (TXM_BILLING_ENGINE = sqlite | postgresql | mysql, set by meson.build). SQLite uses a file in a
 * fresh temporary directory (several connections, real locking); PostgreSQL and MariaDB read
 * TXM_TEST_PG_URL / TXM_TEST_MYSQL_URL and skip, saying why, without them. Tests use only the
 * public API (txm.h, txm/billing.h), as a user would. */
#ifndef BILLING_FIXTURE_H
#define BILLING_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <txm.h>
#include <txm/billing.h>

#include "txm_tmpdir.h"

static char bf_dir[128];
static char bf_url_buf[512];

static inline const char *bf_engine(void)
{
    const char *e = getenv("TXM_BILLING_ENGINE");
    return e && *e ? e : "sqlite";
}

/* The URL of this run's database; skips the test (with the reason) when the server is not set. */
static inline const char *bf_url(void)
{
    const char *e = bf_engine();
    if (strcmp(e, "sqlite") == 0) {
        /* Built once, by the test's main thread (bf_open comes first in every test); worker
         * threads created after that only read it. */
        if (!bf_url_buf[0]) {
            if (!bf_dir[0])
                txm_tmpdir_make(bf_dir, sizeof bf_dir, "billing");
            snprintf(bf_url_buf, sizeof bf_url_buf, "sqlite:%s/billing.db?busy_timeout=30000&journal=wal",
                     bf_dir);
        }
        return bf_url_buf;
    }
    {
        const char *var = strcmp(e, "postgresql") == 0 ? "TXM_TEST_PG_URL" : "TXM_TEST_MYSQL_URL";
        const char *u = getenv(var);
        if (!u || !*u)
            cr_skip_test("%s is not set (scripts/test.sh starts a throwaway server and sets it)", var);
        return u;
    }
}

static inline txm_conn *bf_open(void)
{
    txm_conn *c = NULL;
    int rc = txm_open(&c, bf_url(), NULL);
    cr_assert_eq(rc, 0, "txm_open(%s): %s", bf_engine(), txm_error_last()->message);
    return c;
}

/* A billing object for c with a fresh schema (dropped and created). */
static inline txm_billing *bf_billing(txm_conn *c, const txm_billing_options *opts)
{
    txm_billing *b = NULL;
    int rc = txm_billing_new(&b, c, opts);
    cr_assert_eq(rc, 0, "txm_billing_new: %s", txm_error_last()->message);
    rc = txm_billing_schema_drop(b, c);
    cr_assert_eq(rc, 0, "txm_billing_schema_drop: %s", txm_error_last()->message);
    rc = txm_billing_schema_create(b, c);
    cr_assert_eq(rc, 0, "txm_billing_schema_create: %s", txm_error_last()->message);
    return b;
}

/* Call in the suite's .fini: removes the SQLite temporary directory. */
static inline void bf_cleanup(void)
{
    if (bf_dir[0])
        txm_tmpdir_remove(bf_dir);
    bf_dir[0] = '\0';
    bf_url_buf[0] = '\0';
}

#define BF_OK(call)                                                                                          \
    do {                                                                                                     \
        int bf_rc_ = (call);                                                                                 \
        cr_assert_eq(bf_rc_, 0, "%s -> %s: %s", #call, txm_err_name(bf_rc_), txm_error_last()->message);   \
    } while (0)

#endif
