/*
 * Allocation sweep (issue 7): for every scenario below, fail the Nth allocation txm makes, for
 * every N from 1 until the scenario makes fewer than N allocations, and check after each N:
 *  - no crash; no leak (txm's live-allocation count returns to its baseline; in the ASan tree
 *    LeakSanitizer also checks the whole heap after every N);
 *  - every failing call returns TXM_ENOMEM whose message says "out of memory" (or
 *    TXM_ETX_ABORTED whose cause is that TXM_ENOMEM, or TXM_EHOOK whose cause it is when an
 *    on-commit hook's own transaction failed), or succeeds when the failed allocation was
 *    optional (none is today: every site reports TXM_ENOMEM);
 *  - the connection is in the documented state (docs/errors.md, "Out of memory"): after the
 *    application rolls back the levels it holds, txm_depth is 0 and a fresh transaction commits;
 *    nothing reported as failed was committed and everything reported as committed was;
 *  - every registered hook payload is freed exactly once, a hook that could not be registered
 *    is never run and its payload never freed; on-commit hooks ran only for committed work.
 * The engine comes from TXM_SWEEP_DRIVER (sqlite, postgresql, mysql); server engines need
 * TXM_TEST_PG_URL / TXM_TEST_MYSQL_URL and skip with a reason without it. Only txm's own
 * allocations are failed (libpq's, Connector/C's and SQLite's mallocs are not injected).
 * Each scenario prints "alloc sweep ENGINE SCENARIO: N allocation sites failed, 0 crashes, 0 leaks".
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "txm/fault.h"

#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_LSAN 1
#endif
#endif
#ifdef SWEEP_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define MAX_N 20000 /* a scenario with more allocation sites than this is a test bug */

static char url[1200];
static char engine[16];
static char tmpdb[256];
static txm_conn *c;
static int failures; /* contract violations found in the current N (reported with cr_assert) */

/* ---- setup -------------------------------------------------------------------------------- */

static void pick_url(void)
{
    const char *d = getenv("TXM_SWEEP_DRIVER");
    const char *u = NULL;
    if (!d || !*d)
        d = "sqlite";
    snprintf(engine, sizeof engine, "%s", d);
    tmpdb[0] = '\0';
    if (strcmp(d, "sqlite") == 0) {
        int fd;
        snprintf(tmpdb, sizeof tmpdb, "%s/txm-alloc-sweep-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        fd = mkstemp(tmpdb);
        cr_assert(fd >= 0, "mkstemp failed");
        close(fd);
        snprintf(url, sizeof url, "sqlite:%s", tmpdb);
        return;
    }
    if (strcmp(d, "postgresql") == 0)
        u = getenv("TXM_TEST_PG_URL");
    else if (strcmp(d, "mysql") == 0)
        u = getenv("TXM_TEST_MYSQL_URL");
    else
        cr_assert_fail("TXM_SWEEP_DRIVER=%s: expected sqlite, postgresql or mysql", d);
    if (!u || !*u) {
        fprintf(stderr, "[SKIP] alloc sweep %s: %s is not set (start a server with scripts/%s-server.sh)\n", d,
                strcmp(d, "postgresql") == 0 ? "TXM_TEST_PG_URL" : "TXM_TEST_MYSQL_URL",
                strcmp(d, "postgresql") == 0 ? "pg" : "mariadb");
        cr_skip_test("%s server URL not set", d);
    }
    snprintf(url, sizeof url, "%s", u);
}

static void ok_exec(const char *sql)
{
    int rc = txm_exec(c, sql, NULL, 0, NULL);
    cr_assert(rc == 0, "%s: %s: %s", sql, txm_err_name(rc), txm_error_last()->message);
}

static void setup(void)
{
    const char *blob;
    char sql[256];
    int rc;
    pick_url();
    rc = txm_open(&c, url, NULL);
    cr_assert(rc == 0, "txm_open(%s): %s", engine, txm_error_last()->message);
    blob = strcmp(engine, "postgresql") == 0 ? "BYTEA" : "BLOB";
    ok_exec("DROP TABLE IF EXISTS sw_child");
    ok_exec("DROP TABLE IF EXISTS sw_parent");
    ok_exec("DROP TABLE IF EXISTS sw_uniq");
    ok_exec("DROP TABLE IF EXISTS sw_item");
    snprintf(sql, sizeof sql, "CREATE TABLE sw_item (id INTEGER PRIMARY KEY, name VARCHAR(100), b %s)", blob);
    ok_exec(sql);
    ok_exec("CREATE TABLE sw_uniq (id INTEGER PRIMARY KEY, code VARCHAR(50) NOT NULL, "
            "CONSTRAINT uq_sw_code UNIQUE (code))");
    ok_exec("CREATE TABLE sw_parent (id INTEGER PRIMARY KEY)");
    ok_exec("CREATE TABLE sw_child (id INTEGER PRIMARY KEY, parent_id INTEGER, "
            "CONSTRAINT fk_sw_child FOREIGN KEY (parent_id) REFERENCES sw_parent (id))");
    txm_close(c); /* each sweep step opens its own */
    c = NULL;
}

static void teardown(void)
{
    txm__alloc_fail_after(0, false);
    txm_close(c);
    c = NULL;
    if (tmpdb[0]) {
        char side[300];
        unlink(tmpdb);
        snprintf(side, sizeof side, "%s-journal", tmpdb);
        unlink(side);
    }
}

TestSuite(sweep, .init = setup, .fini = teardown, .timeout = 1200);

/* ---- checks ------------------------------------------------------------------------------- */

static void violation(unsigned long n, const char *fmt, ...) TXM_PRINTF(2, 3);
static void violation(unsigned long n, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "alloc sweep %s, N=%lu: ", engine, n);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
}

static bool says_out_of_memory(const txm_error *e) { return strstr(e->message, "out of memory") != NULL; }

/* A call made while the Nth allocation fails: 0, or ENOMEM with a clear message, or the
 * ETX_ABORTED that follows an ENOMEM in the same level. Returns rc. */
static unsigned long cur_n;
static bool saw_nomem; /* a call in the current N reported the failure */
static int expect_ok_or_nomem(const char *what, int rc)
{
    const txm_error *e = txm_error_last();
    if (rc == 0)
        return 0;
    if (rc == TXM_ENOMEM) {
        saw_nomem = true;
        if (e->code != TXM_ENOMEM || !says_out_of_memory(e))
            violation(cur_n, "%s: TXM_ENOMEM without a clear message: %s: \"%s\"", what, txm_err_name(e->code),
                      e->message);
        return rc;
    }
    if (rc == TXM_ETX_ABORTED && e->cause && e->cause->code == TXM_ENOMEM)
        return rc;
    violation(cur_n, "%s: unexpected %s: %s", what, txm_err_name(rc), e->message);
    return rc;
}

/* ---- hook payloads: count runs and frees ------------------------------------------------- */

typedef struct hk {
    int runs;
    int frees;
    bool registered;
} hk;

static int hk_run(txm_conn *conn, void *p)
{
    (void)conn;
    ((hk *)p)->runs++;
    return 0;
}

static void hk_free(void *p) { ((hk *)p)->frees++; }

static int reg_commit(hk *h)
{
    int rc = expect_ok_or_nomem("txm_on_commit", txm_on_commit(c, hk_run, h, hk_free));
    h->registered = rc == 0;
    return rc;
}

static int reg_rollback(hk *h)
{
    int rc = expect_ok_or_nomem("txm_on_rollback", txm_on_rollback(c, hk_run, h, hk_free));
    h->registered = rc == 0;
    return rc;
}

/* After the scenario: registered payloads freed exactly once, unregistered ones never taken. */
static void check_hook(const char *name, const hk *h, int want_runs)
{
    if (h->registered && h->frees != 1)
        violation(cur_n, "hook %s: payload freed %d times (registered: once expected)", name, h->frees);
    if (!h->registered && (h->frees != 0 || h->runs != 0))
        violation(cur_n, "hook %s: registration failed but it ran %d / was freed %d times", name, h->runs, h->frees);
    if (want_runs >= 0 && h->registered && h->runs != want_runs)
        violation(cur_n, "hook %s ran %d times, expected %d", name, h->runs, want_runs);
}

/* ---- state after each N ------------------------------------------------------------------- */

static int64_t count_rows(const char *table)
{
    char sql[128];
    int64_t n = -1;
    int rc;
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    rc = txm_query_i64(c, &n, sql, NULL, 0);
    if (rc)
        violation(cur_n, "after the sweep step, %s failed: %s", sql, txm_error_last()->message);
    return n;
}

/* The documented state after any failure: no level open once the application rolled back its own,
 * and a fresh transaction commits. Then clears the tables for the next N. */
static void check_usable_and_reset(void)
{
    txm_tx *t;
    int rc;
    if (txm_depth(c) != 0)
        violation(cur_n, "depth is %d after the application rolled back its levels", txm_depth(c));
    rc = txm_begin(&t, c, NULL);
    if (rc == 0) {
        txm_value v = txm_int(999);
        rc = txm_exec(c, "INSERT INTO sw_item (id, name) VALUES (?, 'fresh')", &v, 1, NULL);
        if (rc == 0)
            rc = txm_commit(t);
        else
            txm_rollback(t);
    }
    if (rc)
        violation(cur_n, "a fresh transaction failed after the sweep step: %s: %s", txm_err_name(rc),
                  txm_error_last()->message);
    ok_exec("DELETE FROM sw_child");
    ok_exec("DELETE FROM sw_parent");
    ok_exec("DELETE FROM sw_uniq");
    ok_exec("DELETE FROM sw_item");
}

/* ---- the sweep driver --------------------------------------------------------------------- */

typedef void (*scenario_fn)(void);

static unsigned long leak_checks_failed(void)
{
#ifdef SWEEP_LSAN
    return __lsan_do_recoverable_leak_check() ? 1u : 0u;
#else
    return 0;
#endif
}

/* Runs `fn` with the Nth allocation failing for N = 1, 2, ... until it makes fewer than N
 * allocations. `sticky`: every allocation from the Nth on fails (until fn returns). */
static void sweep(const char *name, scenario_fn prep, scenario_fn fn, bool sticky)
{
    unsigned long n, sites = 0, leaks = 0, absorbed = 0;
    char absorbed_at[256] = "";
    for (n = 1; n <= MAX_N; n++) {
        unsigned long before, failed;
        long live_before = txm__alloc_live();
        int rc;
        cur_n = n;
        failures = 0;
        saw_nomem = false;
        /* A fresh connection per N: what it pools (levels, statement cache) is freed at close, so
         * the live-block count must return exactly to its value before the open. */
        rc = txm_open(&c, url, NULL);
        cr_assert(rc == 0, "txm_open(%s): %s", engine, txm_error_last()->message);
        if (prep)
            prep();
        before = txm__alloc_failures();
        txm__alloc_fail_after(n, sticky);
        fn();
        txm__alloc_fail_after(0, false);
        failed = txm__alloc_failures() - before;
        check_usable_and_reset();
        txm_close(c);
        c = NULL;
        if (txm__alloc_live() != live_before) {
            violation(n, "%s: %ld txm allocation(s) not freed", name, txm__alloc_live() - live_before);
            leaks++;
        }
        if (leak_checks_failed()) {
            violation(n, "%s: LeakSanitizer found a leak", name);
            leaks++;
        }
        cr_assert(failures == 0, "alloc sweep %s %s: %d contract violation(s) at N=%lu (see above)", engine, name,
                  failures, n);
        if (failed == 0)
            break; /* the scenario made fewer than N allocations: every site has been failed */
        sites++;
        if (!saw_nomem) {
            /* Every call succeeded although an allocation failed: an optional allocation (see
             * docs/errors.md); its results were checked like any other. */
            size_t len = strlen(absorbed_at);
            absorbed++;
            if (len + 12 < sizeof absorbed_at)
                snprintf(absorbed_at + len, sizeof absorbed_at - len, " %lu", n);
        }
    }
    cr_assert(n <= MAX_N, "alloc sweep %s %s did not end within %d allocations", engine, name, MAX_N);
    cr_assert(sites > 0, "alloc sweep %s %s: the scenario made no txm allocation", engine, name);
    printf("alloc sweep %s %s%s: %lu allocation sites failed (%lu reported TXM_ENOMEM, %lu optional%s%s), "
           "0 crashes, %lu leaks\n",
           engine, name, sticky ? " (sticky)" : "", sites, sites - absorbed, absorbed, absorbed ? ": N =" : "",
           absorbed_at, leaks);
    fflush(stdout);
}

/* ---- scenarios ---------------------------------------------------------------------------- */

static void sc_open(void)
{
    txm_conn *x = NULL;
    int rc = expect_ok_or_nomem("txm_open", txm_open(&x, url, NULL));
    if (rc == 0) {
        int64_t one = 0;
        if (x == NULL)
            violation(cur_n, "txm_open returned 0 without a connection");
        rc = expect_ok_or_nomem("txm_query_i64", txm_query_i64(x, &one, "SELECT 1", NULL, 0));
        if (rc == 0 && one != 1)
            violation(cur_n, "SELECT 1 returned %lld", (long long)one);
    } else if (x != NULL) {
        violation(cur_n, "txm_open failed but *out is not NULL");
    }
    txm_close(x);
}

/* An autocommit statement retried twice (txm_autocommit_retries, through the fault driver): the
 * URL the core strips, and the query's result buffer started afresh at each attempt. */
static void sc_autocommit_retry(void)
{
    char u[sizeof url + 64];
    txm_conn *x = NULL;
    txm_rows *r = NULL;
    txm_stats st;
    int rc;
    snprintf(u, sizeof u, "%s%s%ctxm_autocommit_retries=2", strncmp(url, "fault+", 6) == 0 ? "" : "fault+", url,
             strchr(url, '?') ? '&' : '?');
    rc = expect_ok_or_nomem("txm_open", txm_open(&x, u, NULL));
    if (rc) {
        if (x != NULL)
            violation(cur_n, "txm_open failed but *out is not NULL");
        return;
    }
    rc = expect_ok_or_nomem("txm_fault_set", txm_fault_set(x, "fault=deadlock&fault_at=statement&fault_times=2"));
    if (rc == 0)
        rc = expect_ok_or_nomem("txm_query", txm_query(&r, x, "SELECT 1", NULL, 0));
    if (rc == 0) {
        txm_stats_get(x, &st);
        if (txm_rows_count(r) != 1 || !txm_rows_next(r) || txm_rows_get_i64(r, 0) != 1)
            violation(cur_n, "the retried query returned the wrong rows");
        if (st.autocommit_retries != 2)
            violation(cur_n, "autocommit_retries = %llu, expected 2", (unsigned long long)st.autocommit_retries);
    }
    txm_rows_free(r);
    txm_close(x);
}

static int insert_item(int64_t id, const char *name)
{
    static const unsigned char bytes[] = {0, 1, 2, 0xff, 0x80, 0};
    txm_value v[3];
    v[0] = txm_int(id);
    v[1] = txm_text(name);
    v[2] = txm_blob(bytes, sizeof bytes);
    return expect_ok_or_nomem("INSERT", txm_exec(c, "INSERT INTO sw_item (id, name, b) VALUES (?, ?, ?)", v, 3, NULL));
}

static int64_t item_exists(int64_t id)
{
    txm_value v = txm_int(id);
    int64_t n = -1;
    int rc = txm_query_i64(c, &n, "SELECT COUNT(*) FROM sw_item WHERE id = ?", &v, 1);
    if (rc)
        violation(cur_n, "counting item %lld failed: %s", (long long)id, txm_error_last()->message);
    return n;
}

/* Nested transaction with hooks at both levels; commit (or roll back the inner level, `inner_rb`). */
static void nested(bool inner_rb)
{
    hk oc1 = {0}, orb1 = {0}, oc2 = {0}, orb2 = {0};
    txm_tx *outer = NULL, *inner = NULL;
    int rc, crc = -1000;
    bool inner_ok = false, inner_kept = false;

    rc = expect_ok_or_nomem("txm_begin outer", txm_begin(&outer, c, NULL));
    if (rc)
        goto check;
    if (insert_item(1, "outer") || reg_commit(&oc1) || reg_rollback(&orb1))
        goto bail;
    rc = expect_ok_or_nomem("txm_begin inner", txm_begin(&inner, c, NULL));
    if (rc)
        goto bail;
    if (insert_item(2, "inner") || reg_commit(&oc2) || reg_rollback(&orb2)) {
        txm_rollback(inner);
        inner = NULL;
        goto bail;
    }
    inner_ok = true;
    rc = expect_ok_or_nomem(inner_rb ? "txm_rollback inner" : "txm_commit inner",
                            inner_rb ? txm_rollback(inner) : txm_commit(inner));
    inner = NULL;
    inner_kept = !inner_rb && rc == 0;
    if (rc && inner_rb)
        goto bail;
    crc = expect_ok_or_nomem("txm_commit outer", txm_commit(outer));
    outer = NULL;
    goto check;
bail:
    if (outer)
        expect_ok_or_nomem("txm_rollback outer", txm_rollback(outer));
    outer = NULL;
check:
    txm__alloc_fail_after(0, false);
    if (crc == 0) {
        /* Reported committed: the rows are there, the on-commit hooks ran once, no on-rollback hook
         * of a committed level ran. */
        if (item_exists(1) != 1)
            violation(cur_n, "outer commit reported success but its row is missing");
        if (item_exists(2) != (inner_kept ? 1 : 0))
            violation(cur_n, "inner row: %lld, expected %d", (long long)item_exists(2), inner_kept ? 1 : 0);
        check_hook("outer on-commit", &oc1, 1);
        check_hook("outer on-rollback", &orb1, 0);
        check_hook("inner on-commit", &oc2, inner_kept ? 1 : 0);
        check_hook("inner on-rollback", &orb2, inner_ok && !inner_kept ? 1 : 0);
    } else {
        /* Not committed: nothing is there, no on-commit hook ran, the on-rollback hooks ran once. */
        if (item_exists(1) != 0 || item_exists(2) != 0)
            violation(cur_n, "the transaction was reported failed but rows were committed");
        check_hook("outer on-commit", &oc1, 0);
        check_hook("outer on-rollback", &orb1, 1);
        check_hook("inner on-commit", &oc2, 0);
        check_hook("inner on-rollback", &orb2, 1);
    }
}

static void sc_nested_commit(void) { nested(false); }
static void sc_nested_rollback(void) { nested(true); }

/* txm_retry whose body reports a deadlock on its first attempt. */
typedef struct retry_ctx {
    int attempts;
    hk hooks[4];
} retry_ctx;

static int retry_body(txm_conn *conn, void *p)
{
    retry_ctx *r = p;
    hk *h = &r->hooks[r->attempts * 2 < 4 ? r->attempts * 2 : 2];
    int rc;
    (void)conn;
    r->attempts++;
    if ((rc = insert_item(10, "retry")) != 0)
        return rc;
    if ((rc = reg_commit(&h[0])) != 0 || (rc = reg_rollback(&h[1])) != 0)
        return rc;
    if (r->attempts == 1)
        return txm_error_set(TXM_EDEADLOCK, "alloc sweep: simulated deadlock on the first attempt");
    return 0;
}

static void sc_retry(void)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    retry_ctx r;
    int rc;
    memset(&r, 0, sizeof r);
    p.base_delay_us = 1;
    p.max_delay_us = 1;
    p.seed = 42;
    rc = expect_ok_or_nomem("txm_retry", txm_retry(c, &p, retry_body, &r));
    txm__alloc_fail_after(0, false);
    if (rc == TXM_ETX_ABORTED)
        violation(cur_n, "txm_retry returned TXM_ETX_ABORTED instead of the TXM_ENOMEM that aborted it");
    if (item_exists(10) != (rc == 0 ? 1 : 0))
        violation(cur_n, "txm_retry returned %s but the row count is %lld", txm_err_name(rc),
                  (long long)item_exists(10));
    /* Attempt 1 always rolled back; attempt 2 committed iff rc == 0. */
    check_hook("attempt 1 on-commit", &r.hooks[0], 0);
    check_hook("attempt 1 on-rollback", &r.hooks[1], 1);
    check_hook("attempt 2 on-commit", &r.hooks[2], rc == 0 ? 1 : 0);
    check_hook("attempt 2 on-rollback", &r.hooks[3], rc == 0 ? 0 : 1);
}

/* A UNIQUE and a FOREIGN KEY violation with their details, inside a transaction. */
static void sc_constraint(void)
{
    txm_tx *t = NULL;
    txm_value v[2];
    int rc;
    rc = expect_ok_or_nomem("txm_begin", txm_begin(&t, c, NULL));
    if (rc)
        return;
    v[0] = txm_int(1);
    v[1] = txm_text("dup");
    rc = expect_ok_or_nomem("INSERT sw_uniq", txm_exec(c, "INSERT INTO sw_uniq (id, code) VALUES (?, ?)", v, 2, NULL));
    if (rc == 0) {
        txm_tx *sp = NULL;
        rc = expect_ok_or_nomem("txm_begin savepoint", txm_begin(&sp, c, NULL));
        if (rc == 0) {
            v[0] = txm_int(2);
            rc = txm_exec(c, "INSERT INTO sw_uniq (id, code) VALUES (?, ?)", v, 2, NULL);
            if (rc == TXM_EUNIQUE) {
                const txm_error *e = txm_error_last();
                bool named = strcmp(engine, "sqlite") == 0 ? strcmp(e->table_name, "sw_uniq") == 0
                                                           : strcmp(e->constraint_name, "uq_sw_code") == 0;
                if (!named)
                    violation(cur_n, "TXM_EUNIQUE lost its details: constraint '%s' table '%s'", e->constraint_name,
                              e->table_name);
            } else if (rc == 0) {
                violation(cur_n, "a duplicate key was accepted");
            } else {
                expect_ok_or_nomem("duplicate INSERT", rc);
            }
            expect_ok_or_nomem("txm_rollback savepoint", txm_rollback(sp));
            v[0] = txm_int(5);
            v[1] = txm_int(77); /* no such parent */
            rc = txm_exec(c, "INSERT INTO sw_child (id, parent_id) VALUES (?, ?)", v, 2, NULL);
            if (rc == TXM_EFOREIGN_KEY) {
                const txm_error *e = txm_error_last();
                if (strcmp(engine, "sqlite") != 0 && strcmp(e->constraint_name, "fk_sw_child") != 0)
                    violation(cur_n, "TXM_EFOREIGN_KEY lost its constraint name: '%s'", e->constraint_name);
            } else if (rc == 0) {
                violation(cur_n, "an orphan child row was accepted");
            } else {
                expect_ok_or_nomem("orphan INSERT", rc);
            }
        }
    }
    expect_ok_or_nomem("txm_rollback", txm_rollback(t));
    txm__alloc_fail_after(0, false);
    if (count_rows("sw_uniq") != 0 || count_rows("sw_child") != 0)
        violation(cur_n, "rolled-back rows are present");
}

/* A query of several rows and columns: text, blobs, integers, reals, NULLs. */
static const unsigned char blob_bytes[] = {0, 'a', 0xfe, 0, 0x7f};

static void fill_rows(void) /* before the allocation failure is armed */
{
    int i;
    for (i = 1; i <= 5; i++) {
        char name[32];
        txm_value v[3];
        snprintf(name, sizeof name, "row-%d-%s", i, i % 2 ? "odd" : "even");
        v[0] = txm_int(i);
        v[1] = i == 3 ? txm_null() : txm_text(name);
        v[2] = txm_blob(blob_bytes, (size_t)i);
        cr_assert(txm_exec(c, "INSERT INTO sw_item (id, name, b) VALUES (?, ?, ?)", v, 3, NULL) == 0);
    }
}

static void sc_rows(void)
{
    txm_rows *r = NULL;
    txm_tx *t = NULL;
    int rc;
    size_t seen = 0;
    rc = expect_ok_or_nomem("txm_begin", txm_begin(&t, c, NULL));
    if (rc)
        return;
    rc = expect_ok_or_nomem("txm_query",
                            txm_query(&r, c, "SELECT id, name, b, id * 1.5 AS r FROM sw_item ORDER BY id", NULL, 0));
    if (rc == 0) {
        if (txm_rows_count(r) != 5 || txm_rows_columns(r) != 4)
            violation(cur_n, "rows: %zu x %zu, expected 5 x 4", txm_rows_count(r), txm_rows_columns(r));
        if (!txm_rows_column_name(r, 3) || strcmp(txm_rows_column_name(r, 3), "r") != 0)
            violation(cur_n, "column name 3 is wrong");
        while (txm_rows_next(r)) {
            size_t len = 0;
            const char *b;
            char name[32];
            int64_t id = txm_rows_get_i64(r, 0);
            seen++;
            snprintf(name, sizeof name, "row-%d-%s", (int)id, id % 2 ? "odd" : "even");
            if (id != (int64_t)seen)
                violation(cur_n, "row %zu has id %lld", seen, (long long)id);
            if (id == 3 ? !txm_rows_is_null(r, 1) : strcmp(txm_rows_get_text(r, 1, NULL), name) != 0)
                violation(cur_n, "row %zu: wrong name", seen);
            b = txm_rows_get_text(r, 2, &len);
            if (len != seen || memcmp(b, blob_bytes, len) != 0)
                violation(cur_n, "row %zu: wrong blob (%zu bytes)", seen, len);
            if (txm_rows_get_double(r, 3) != 1.5 * (double)id)
                violation(cur_n, "row %zu: wrong real", seen);
        }
        if (seen != 5)
            violation(cur_n, "iterated %zu rows", seen);
        txm_rows_free(r);
        rc = expect_ok_or_nomem("txm_commit", txm_commit(t));
    } else {
        expect_ok_or_nomem("txm_rollback", txm_rollback(t));
    }
}

/* An on-commit hook that runs its own transaction (hooks run with the connection idle): an
 * allocation failure inside it is the hook's failure, reported as TXM_EHOOK (committed) whose
 * cause is the TXM_ENOMEM. */
static int hook_tx(txm_conn *conn, void *p)
{
    txm_tx *t;
    int rc;
    (void)p;
    if ((rc = txm_begin(&t, conn, NULL)) != 0)
        return rc;
    if ((rc = insert_item(21, "from the hook")) != 0) {
        txm_rollback(t);
        return rc;
    }
    return txm_commit(t);
}

static void sc_hook_tx(void)
{
    txm_tx *t = NULL;
    int rc;
    rc = expect_ok_or_nomem("txm_begin", txm_begin(&t, c, NULL));
    if (rc)
        return;
    if (insert_item(20, "outer") ||
        expect_ok_or_nomem("txm_on_commit", txm_on_commit(c, hook_tx, NULL, NULL))) {
        expect_ok_or_nomem("txm_rollback", txm_rollback(t));
        txm__alloc_fail_after(0, false);
        if (item_exists(20) != 0)
            violation(cur_n, "a rolled-back row is present");
        return;
    }
    rc = txm_commit(t);
    if (rc == TXM_EHOOK) {
        const txm_error *e = txm_error_last();
        if (!e->cause || e->cause->code != TXM_ENOMEM || !says_out_of_memory(e->cause))
            violation(cur_n, "TXM_EHOOK without the hook's TXM_ENOMEM as its cause: %s", e->message);
        saw_nomem = true;
    } else {
        expect_ok_or_nomem("txm_commit", rc);
    }
    txm__alloc_fail_after(0, false);
    if (item_exists(20) != (rc == 0 || rc == TXM_EHOOK ? 1 : 0))
        violation(cur_n, "txm_commit returned %s but the outer row count is %lld", txm_err_name(rc),
                  (long long)item_exists(20));
    if (item_exists(21) != (rc == 0 ? 1 : 0))
        violation(cur_n, "txm_commit returned %s but the hook's row count is %lld", txm_err_name(rc),
                  (long long)item_exists(21));
}

/* A transaction-scoped advisory lock (PostgreSQL, MariaDB): whatever failed, once the
 * application has ended its transaction the lock is free for another session; it is never kept
 * past the transaction, and never reported taken when it was not. */
static void sc_lock(void)
{
    txm_tx *t = NULL;
    txm_conn *other = NULL;
    int rc, lrc;
    rc = expect_ok_or_nomem("txm_begin", txm_begin(&t, c, NULL));
    if (rc)
        return;
    lrc = expect_ok_or_nomem("txm_lock", txm_lock(c, "alloc-sweep-key", TXM_LOCK_TX, 0));
    if (lrc == 0)
        lrc = insert_item(30, "locked");
    if (lrc == 0)
        expect_ok_or_nomem("txm_commit", txm_commit(t));
    else
        expect_ok_or_nomem("txm_rollback", txm_rollback(t));
    txm__alloc_fail_after(0, false);
    rc = txm_open(&other, url, NULL);
    if (rc) {
        violation(cur_n, "second connection: %s", txm_error_last()->message);
        return;
    }
    rc = txm_lock(other, "alloc-sweep-key", TXM_LOCK_SESSION, 0);
    if (rc)
        violation(cur_n, "the transaction-scoped lock outlived its transaction: %s: %s", txm_err_name(rc),
                  txm_error_last()->message);
    else
        txm_unlock(other, "alloc-sweep-key", TXM_LOCK_SESSION);
    txm_close(other);
}

/* The same lock taken at depth 0 under a test baseline (its statement runs in a savepoint of its
 * own: SAVEPOINT, lock, RELEASE in one flight). */
static void sc_baseline_lock(void)
{
    txm_conn *other = NULL;
    int rc;
    rc = expect_ok_or_nomem("txm_test_baseline", txm_test_baseline(c));
    if (rc)
        return;
    expect_ok_or_nomem("txm_lock", txm_lock(c, "alloc-sweep-key", TXM_LOCK_TX, 0));
    expect_ok_or_nomem("txm_test_end", txm_test_end(c));
    txm__alloc_fail_after(0, false);
    if (txm_open(&other, url, NULL)) {
        violation(cur_n, "second connection: %s", txm_error_last()->message);
        return;
    }
    rc = txm_lock(other, "alloc-sweep-key", TXM_LOCK_SESSION, 0);
    if (rc)
        violation(cur_n, "the transaction-scoped lock outlived the baseline: %s: %s", txm_err_name(rc),
                  txm_error_last()->message);
    else
        txm_unlock(other, "alloc-sweep-key", TXM_LOCK_SESSION);
    txm_close(other);
}

/* txm_batch at depth 0 (BEGIN, 2 inserts, a query with rows, COMMIT in one run) and nested in a
 * transaction: reported success means every row is there and the result was delivered; reported
 * failure means nothing of the batch is there and no result was delivered. */
static void sc_batch(void)
{
    txm_value a[2] = {txm_int(20), txm_text("batch-a")}, b[2] = {txm_int(21), txm_text("batch-b")};
    txm_rows *rows = NULL;
    txm_batch_stmt st[3];
    txm_tx *t = NULL;
    int rc, crc = -1000;
    memset(st, 0, sizeof st);
    st[0].sql = "INSERT INTO sw_item (id, name) VALUES (?, ?)";
    st[0].params = a;
    st[0].nparams = 2;
    st[1] = st[0];
    st[1].params = b;
    st[2].sql = "SELECT id FROM sw_item WHERE id >= 20 ORDER BY id";
    st[2].rows_out = &rows;
    rc = expect_ok_or_nomem("txm_batch", txm_batch(c, st, 3, NULL));
    txm__alloc_fail_after(0, false);
    if (rc == 0 && (!rows || txm_rows_count(rows) != 2))
        violation(cur_n, "txm_batch succeeded without its 2-row result");
    if (rc != 0 && rows)
        violation(cur_n, "txm_batch failed but delivered a result");
    txm_rows_free(rows);
    if (item_exists(20) != (rc == 0 ? 1 : 0) || item_exists(21) != (rc == 0 ? 1 : 0))
        violation(cur_n, "txm_batch returned %s but rows 20/21 count %lld/%lld", txm_err_name(rc),
                  (long long)item_exists(20), (long long)item_exists(21));
    txm_exec(c, "DELETE FROM sw_item WHERE id >= 20", NULL, 0, NULL);

    /* Nested: the caller's transaction commits what it holds. */
    txm__alloc_fail_after(cur_n, false);
    rc = expect_ok_or_nomem("txm_begin", txm_begin(&t, c, NULL));
    if (rc == 0) {
        int brc = -1000, irc = insert_item(22, "outer");
        if (irc == 0) {
            st[2].rows_out = NULL;
            brc = expect_ok_or_nomem("txm_batch nested", txm_batch(c, st, 2, NULL));
        }
        crc = expect_ok_or_nomem("txm_commit", txm_commit(t));
        txm__alloc_fail_after(0, false);
        if (crc == 0 && item_exists(22) != (irc == 0 ? 1 : 0))
            violation(cur_n, "commit reported success; the outer insert returned %s but its row count is %lld",
                      txm_err_name(irc), (long long)item_exists(22));
        if (crc == 0 && brc == 0 && item_exists(20) != 1)
            violation(cur_n, "nested batch and commit succeeded but the batch's row is missing");
        if (brc != 0 && item_exists(20) != 0)
            violation(cur_n, "nested batch failed but its row was committed");
        if (crc != 0 && (item_exists(22) != 0 || item_exists(20) != 0))
            violation(cur_n, "the transaction was reported failed but rows were committed");
    }
    txm__alloc_fail_after(0, false);
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(sweep, open) { sweep("open", NULL, sc_open, false); }
Test(sweep, autocommit_retry) { sweep("autocommit-retry", NULL, sc_autocommit_retry, false); }
Test(sweep, nested_commit_hooks) { sweep("nested-commit", NULL, sc_nested_commit, false); }
Test(sweep, nested_rollback_hooks) { sweep("nested-rollback", NULL, sc_nested_rollback, false); }
Test(sweep, retry) { sweep("retry", NULL, sc_retry, false); }
Test(sweep, constraint_details) { sweep("constraint", NULL, sc_constraint, false); }
Test(sweep, hook_with_transaction) { sweep("hook-tx", NULL, sc_hook_tx, false); }
Test(sweep, transaction_lock)
{
    const txm_driver *d = txm_driver_find(strcmp(engine, "postgresql") == 0 ? "postgresql" : engine);
    if (!d || !(d->caps & TXM_CAP_ADVISORY_LOCKS)) {
        fprintf(stderr, "[SKIP] alloc sweep %s lock: the driver has no advisory locks\n", engine);
        teardown(); /* Criterion does not run .fini after a skip */
        cr_skip_test("no advisory locks");
    }
    sweep("lock", NULL, sc_lock, false);
    sweep("baseline-lock", NULL, sc_baseline_lock, false);
}
Test(sweep, rows) { sweep("rows", fill_rows, sc_rows, false); }
Test(sweep, batch) { sweep("batch", NULL, sc_batch, false); }
/* Sticky: every allocation from the Nth on fails until the scenario returns (a heap that stays
 * exhausted): the same contract, and the rollbacks the application makes must still work. */
Test(sweep, nested_commit_hooks_sticky) { sweep("nested-commit", NULL, sc_nested_commit, true); }
Test(sweep, retry_sticky) { sweep("retry", NULL, sc_retry, true); }
