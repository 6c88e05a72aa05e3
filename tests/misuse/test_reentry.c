/*
 * Hooks and bodies that re-enter txm on their own connection (issue 7, defects 6 and 7), on real
 * SQLite databases (a fresh temp directory per test; Criterion runs each test in its own process).
 *
 * Defect 6: txm_close from a hook (or a txm_atomic body) running on the same connection used to
 * free the connection under the hook runner (heap use-after-free, caught by ASan). Now the close
 * is deferred to the end of the outermost txm call on that connection, and every call made on it
 * after the request fails with TXM_EMISUSE "connection is closing".
 * Defect 7: a hook that commits a transaction whose hook commits a transaction ... recursed once
 * per level and overflowed the stack at ~3,500 levels. Hooks queued by hooks now run from one
 * loop; the chains here are 100,000 long.
 */
#include "txm.h"
#include "txm_tmpdir.h"

#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "txm_check.h"

static char dir[64];
static char url[128];

static void setup(void)
{
    txm_tmpdir_make(dir, sizeof dir, "reentry");
    snprintf(url, sizeof url, "sqlite:%s/db.sqlite", dir);
}

static void teardown(void)
{
    txm_tmpdir_remove(dir);
}

TestSuite(close_in_hook, .init = setup, .fini = teardown);
TestSuite(hook_chain, .init = setup, .fini = teardown);

static txm_conn *open_url(const char *u)
{
    txm_conn *c = check_open(u, NULL);
    x(c, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)");
    return c;
}

/* A file database (a second connection checks what was committed). */
static txm_conn *open_db(void) { return open_url(url); }

/* The chains commit 100,000 transactions: in memory, so that no fsync paces them. */
static txm_conn *open_mem(void) { return open_url("sqlite::memory:"); }

static int64_t count_rows(void)
{
    txm_conn *c = check_open(url, NULL);
    int64_t n = q1(c, "SELECT COUNT(*) FROM t");
    txm_close(c);
    return n;
}

static int insert(txm_conn *c, int64_t id)
{
    txm_value v = txm_int(id);
    return txm_exec(c, "INSERT INTO t (id) VALUES (?)", &v, 1, NULL);
}

/* ---- defect 6: txm_close from a hook ------------------------------------------------------ */

/* What the hooks of one test saw. */
static struct {
    int closer_runs;
    int after_runs;          /* hooks that ran after the close request */
    int after_close_rc[8];   /* what calls on the closing connection returned */
    char after_close_msg[256];
    int frees;
} seen;

static void count_free(void *p)
{
    (void)p;
    seen.frees++;
}

/* Records what a few calls on a closing connection return (each must be TXM_EMISUSE). */
static void probe_closing(txm_conn *c)
{
    txm_tx *t = NULL;
    txm_rows *r = NULL;
    int i = 0;
    seen.after_close_rc[i++] = insert(c, 1000);
    snprintf(seen.after_close_msg, sizeof seen.after_close_msg, "%s", txm_error_last()->message);
    seen.after_close_rc[i++] = txm_begin(&t, c, NULL);
    seen.after_close_rc[i++] = txm_query(&r, c, "SELECT 1", NULL, 0);
    seen.after_close_rc[i++] = txm_on_commit(c, NULL, NULL, NULL) == TXM_EINVALID ? TXM_EMISUSE : -999;
    seen.after_close_rc[i++] = txm_retry(c, NULL, NULL, NULL) == TXM_EINVALID ? TXM_EMISUSE : -999;
    seen.after_close_rc[i++] = txm_reconnect(c);
    seen.after_close_rc[i++] = txm_test_baseline(c);
    seen.after_close_rc[i++] = txm_forbid_transaction(c, "probe");
    txm_close(c); /* a second request is a no-op */
}

static int closer(txm_conn *c, void *p)
{
    (void)p;
    seen.closer_runs++;
    txm_close(c);
    probe_closing(c);
    return 0;
}

static int after_close(txm_conn *c, void *p)
{
    (void)p;
    seen.after_runs++;
    cr_assert(insert(c, 2000) == TXM_EMISUSE, "a hook after the close request could use the connection");
    return 0;
}

static void assert_closed_cleanly(int want_after_runs)
{
    size_t i;
    cr_assert(seen.closer_runs == 1, "the closing hook ran %d times", seen.closer_runs);
    for (i = 0; i < sizeof seen.after_close_rc / sizeof seen.after_close_rc[0]; i++)
        cr_assert(seen.after_close_rc[i] == TXM_EMISUSE, "call #%zu on the closing connection returned %s", i + 1,
                  txm_err_name(seen.after_close_rc[i]));
    cr_assert(strstr(seen.after_close_msg, "closing") != NULL && strstr(seen.after_close_msg, "txm_exec") != NULL,
              "the refusal must name the function and say the connection is closing: %s", seen.after_close_msg);
    cr_assert(seen.after_runs == want_after_runs, "hooks queued after the closing hook: ran %d, want %d",
              seen.after_runs, want_after_runs);
}

Test(close_in_hook, on_commit_hook)
{
    txm_conn *c = open_db();
    txm_tx *t = NULL;
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 1));
    OK(txm_on_commit(c, closer, NULL, count_free));
    OK(txm_on_commit(c, after_close, NULL, count_free));
    OK(txm_commit(t)); /* committed; the connection is closed when txm_commit returns */
    assert_closed_cleanly(1);
    cr_assert(seen.frees == 2, "payloads freed %d times", seen.frees);
    cr_assert(count_rows() == 1, "the commit before the close was lost");
}

Test(close_in_hook, on_rollback_hook)
{
    txm_conn *c = open_db();
    txm_tx *t = NULL;
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 1));
    OK(txm_on_rollback(c, closer, NULL, count_free));
    OK(txm_on_rollback(c, after_close, NULL, count_free));
    OK(txm_on_commit(c, after_close, NULL, count_free)); /* discarded: never runs */
    OK(txm_rollback(t));
    assert_closed_cleanly(1);
    cr_assert(seen.frees == 3, "payloads freed %d times", seen.frees);
    cr_assert(count_rows() == 0);
}

Test(close_in_hook, nested_on_rollback_hook_with_outer_level_open)
{
    txm_conn *c = open_db();
    txm_tx *outer = NULL, *inner = NULL;
    OK(txm_begin(&outer, c, NULL));
    OK(insert(c, 1));
    OK(txm_on_rollback(c, after_close, NULL, count_free)); /* the outer level's: runs at the deferred close */
    OK(txm_begin(&inner, c, NULL));
    OK(insert(c, 2));
    OK(txm_on_rollback(c, closer, NULL, count_free));
    OK(txm_rollback(inner)); /* the close rolls the outer level back when this returns */
    assert_closed_cleanly(1);
    cr_assert(seen.frees == 2, "payloads freed %d times", seen.frees);
    cr_assert(count_rows() == 0, "the outer level was committed by a close");
}

Test(close_in_hook, depth0_on_commit_hook)
{
    txm_conn *c = open_db();
    OK(txm_on_commit(c, closer, NULL, count_free)); /* runs at once, closes when txm_on_commit returns */
    assert_closed_cleanly(0);
    cr_assert(seen.frees == 1);
}

static int body_registering_closer(txm_conn *c, void *p)
{
    (void)p;
    int rc = insert(c, 1);
    if (rc == 0)
        rc = txm_on_commit(c, closer, NULL, count_free);
    if (rc == 0)
        rc = txm_on_commit(c, after_close, NULL, count_free);
    return rc;
}

Test(close_in_hook, hook_run_by_txm_retry)
{
    txm_conn *c = open_db();
    OK(txm_retry(c, NULL, body_registering_closer, NULL));
    assert_closed_cleanly(1);
    cr_assert(seen.frees == 2);
    cr_assert(count_rows() == 1);
}

Test(close_in_hook, hook_run_by_txm_atomic)
{
    txm_conn *c = open_db();
    OK(txm_atomic(c, NULL, body_registering_closer, NULL));
    assert_closed_cleanly(1);
    cr_assert(seen.frees == 2);
    cr_assert(count_rows() == 1);
}

Test(close_in_hook, hook_run_by_txm_test_run_hooks)
{
    txm_conn *c = open_db();
    txm_tx *t = NULL;
    OK(txm_test_baseline(c));
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 1));
    OK(txm_on_commit(c, closer, NULL, count_free));
    OK(txm_on_commit(c, after_close, NULL, count_free));
    OK(txm_commit(t));
    cr_assert(txm_test_hook_count(c) == 2);
    OK(txm_test_run_hooks(c)); /* the close ends the baseline (rolled back) when this returns */
    assert_closed_cleanly(1);
    cr_assert(seen.frees == 2);
    cr_assert(count_rows() == 0, "the baseline was committed by a close");
}

Test(close_in_hook, hook_run_by_txm_close)
{
    txm_conn *c = open_db();
    txm_tx *t = NULL;
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 1));
    OK(txm_on_rollback(c, closer, NULL, count_free));
    OK(txm_on_rollback(c, after_close, NULL, count_free));
    txm_close(c); /* runs the on-rollback hooks; the one that closes again is a no-op */
    cr_assert(seen.closer_runs == 1 && seen.after_runs == 1);
    cr_assert(seen.after_close_rc[0] == TXM_EMISUSE, "a hook run by txm_close used the connection: %s",
              txm_err_name(seen.after_close_rc[0]));
    cr_assert(seen.frees == 2);
    cr_assert(count_rows() == 0);
}

static int body_closing(txm_conn *c, void *p)
{
    (void)p;
    int rc = insert(c, 1);
    if (rc == 0)
        rc = txm_on_commit(c, after_close, NULL, count_free); /* must not run: nothing commits */
    if (rc == 0)
        rc = txm_on_rollback(c, after_close, NULL, count_free);
    txm_close(c);
    seen.after_close_rc[0] = insert(c, 2);
    return rc;
}

Test(close_in_hook, txm_atomic_body_closes)
{
    txm_conn *c = open_db();
    int rc = txm_atomic(c, NULL, body_closing, NULL);
    cr_assert(rc == TXM_EMISUSE, "txm_atomic after its body closed the connection: %s", txm_err_name(rc));
    cr_assert(strstr(txm_error_last()->message, "closed") != NULL, "%s", txm_error_last()->message);
    cr_assert(seen.after_close_rc[0] == TXM_EMISUSE);
    cr_assert(seen.after_runs == 1, "the on-rollback hook must run, the on-commit hook never (%d ran)",
              seen.after_runs);
    cr_assert(seen.frees == 2);
    cr_assert(count_rows() == 0, "a body that closed its connection got committed");
}

/* ---- defect 7: chains of hooks registered by hooks ---------------------------------------- */

#define CHAIN 100000

static struct {
    int next;         /* id the next hook must have */
    int bad_order;
    int bad_depth;
    int nested_rc;    /* first non-zero result of a txm_commit/txm_rollback inside a hook */
    int fail_at;      /* hook id that fails (0 = none) */
    int frees;
} chain;

static void chain_free(void *p)
{
    (void)p;
    chain.frees++;
}

/* Hook k commits (even k, or all when mode is 'c') or rolls back (mode 'r', or odd k in mode 'm')
 * a transaction that inserts k and registers hook k+1 of the matching kind. */
static int link_hook(txm_conn *c, void *p)
{
    intptr_t v = (intptr_t)p;
    int k = (int)(v >> 8);
    char mode = (char)(v & 0xff);
    txm_tx *t = NULL;
    int rc;
    if (k != chain.next)
        chain.bad_order++;
    chain.next = k + 1;
    if (txm_depth(c) != 0)
        chain.bad_depth++;
    if (k == CHAIN)
        return k == chain.fail_at ? txm_error_set(TXM_EDATA, "hook %d failed on purpose", k) : 0;
    {
        int next = k + 1;
        bool next_commits = mode == 'c' || (mode == 'm' && next % 2 == 0);
        void *np = (void *)(((intptr_t)next << 8) | mode);
        rc = txm_begin(&t, c, NULL);
        if (rc == 0)
            rc = insert(c, k);
        if (rc == 0)
            rc = next_commits ? txm_on_commit(c, link_hook, np, chain_free) : txm_on_rollback(c, link_hook, np, chain_free);
        if (rc != 0) {
            txm_rollback(t);
            return rc;
        }
        rc = next_commits ? txm_commit(t) : txm_rollback(t);
        if (rc != 0 && chain.nested_rc == 0)
            chain.nested_rc = rc;
    }
    if (k == chain.fail_at)
        return txm_error_set(TXM_EDATA, "hook %d failed on purpose", k);
    return rc;
}

static int run_chain(txm_conn *c, char mode)
{
    txm_tx *t = NULL;
    void *p = (void *)(((intptr_t)1 << 8) | mode);
    chain.next = 1;
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 0));
    if (mode == 'r') {
        OK(txm_on_rollback(c, link_hook, p, chain_free));
        return txm_rollback(t);
    }
    OK(txm_on_commit(c, link_hook, p, chain_free));
    return txm_commit(t);
}

static void assert_chain_ran(txm_conn *c)
{
    txm_stats s;
    cr_assert(chain.next == CHAIN + 1, "the chain stopped at hook %d of %d", chain.next - 1, CHAIN);
    cr_assert(chain.bad_order == 0, "%d hooks ran out of order", chain.bad_order);
    cr_assert(chain.bad_depth == 0, "%d hooks ran with a transaction open", chain.bad_depth);
    cr_assert(chain.frees == CHAIN, "payloads freed %d times for %d hooks", chain.frees, CHAIN);
    txm_stats_get(c, &s);
    cr_assert(s.hooks_run == CHAIN, "stats.hooks_run = %llu", (unsigned long long)s.hooks_run);
    cr_assert(txm_depth(c) == 0);
}

Test(hook_chain, on_commit_100000_deep, .timeout = 300)
{
    txm_conn *c = open_mem();
    OK(run_chain(c, 'c'));
    assert_chain_ran(c);
    cr_assert(chain.nested_rc == 0, "a txm_commit inside a hook returned %s", txm_err_name(chain.nested_rc));
    cr_assert(q1(c, "SELECT COUNT(*) FROM t") == CHAIN, "every hook's transaction commits");
    txm_close(c);
}

Test(hook_chain, on_rollback_100000_deep, .timeout = 300)
{
    txm_conn *c = open_mem();
    OK(run_chain(c, 'r'));
    assert_chain_ran(c);
    cr_assert(q1(c, "SELECT COUNT(*) FROM t") == 0, "every transaction in the chain rolled back");
    txm_close(c);
}

Test(hook_chain, mixed_100000_deep, .timeout = 300)
{
    txm_conn *c = open_mem();
    OK(run_chain(c, 'm'));
    assert_chain_ran(c);
    /* hook k commits iff k+1 is even: k odd, 1..CHAIN-1, plus row 0 of the first transaction */
    cr_assert(q1(c, "SELECT COUNT(*) FROM t") == CHAIN / 2 + 1, "rows: %lld",
              (long long)q1(c, "SELECT COUNT(*) FROM t"));
    txm_close(c);
}

Test(hook_chain, deep_failure_is_reported_by_the_outermost_commit, .timeout = 300)
{
    txm_conn *c = open_mem();
    chain.fail_at = CHAIN - 7;
    int rc = run_chain(c, 'c');
    cr_assert(rc == TXM_EHOOK, "expected TXM_EHOOK, got %s", txm_err_name(rc));
    const txm_error *e = txm_error_last();
    cr_assert(strstr(e->message, "committed, but 1 of 100000 hooks failed") != NULL, "%s", e->message);
    cr_assert(e->cause && e->cause->code == TXM_EDATA && strstr(e->cause->message, "hook 99993 failed"),
              "cause: %s", e->cause ? e->cause->message : "none");
    assert_chain_ran(c);
    cr_assert(chain.nested_rc == 0, "a nested txm_commit reported a hook that had not run yet: %s",
              txm_err_name(chain.nested_rc));
    txm_close(c);
}

/* ---- order and misuse inside the runner ----------------------------------------------------- */

static char order_log[64];

static int log_hook(txm_conn *c, void *p)
{
    (void)c;
    strcat(order_log, (const char *)p);
    return 0;
}

static int spawning_hook(txm_conn *c, void *p)
{
    txm_tx *t = NULL;
    strcat(order_log, (const char *)p);
    OK(txm_begin(&t, c, NULL));
    OK(txm_on_commit(c, log_hook, "g1,", NULL));
    OK(txm_commit(t));
    cr_assert_str_eq(order_log, "h1,", "a hook's nested commit ran its hooks inside the hook");
    OK(txm_begin(&t, c, NULL));
    OK(txm_on_commit(c, log_hook, "g2,", NULL));
    OK(txm_commit(t));
    OK(txm_on_commit(c, log_hook, "g3,", NULL)); /* depth 0: queued too */
    return 0;
}

Test(hook_chain, queued_hooks_run_right_after_the_hook_that_queued_them)
{
    txm_conn *c = open_mem();
    txm_tx *t = NULL;
    OK(txm_begin(&t, c, NULL));
    OK(txm_on_commit(c, spawning_hook, "h1,", NULL));
    OK(txm_on_commit(c, log_hook, "h2,", NULL));
    OK(txm_commit(t));
    cr_assert_str_eq(order_log, "h1,g1,g2,g3,h2,");
    txm_close(c);
}

static int leaves_level_open(txm_conn *c, void *p)
{
    txm_tx *t = NULL;
    (void)p;
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 7));
    OK(txm_on_rollback(c, log_hook, "r,", NULL));
    return 0;
}

Test(hook_chain, hook_leaving_a_level_open_is_rolled_back_and_counted)
{
    txm_conn *c = open_mem();
    txm_tx *t = NULL;
    OK(txm_begin(&t, c, NULL));
    OK(txm_on_commit(c, leaves_level_open, NULL, NULL));
    OK(txm_on_commit(c, log_hook, "next,", NULL));
    int rc = txm_commit(t);
    cr_assert(rc == TXM_EHOOK, "%s", txm_err_name(rc));
    const txm_error *e = txm_error_last();
    cr_assert(e->cause && e->cause->code == TXM_EMISUSE && strstr(e->cause->message, "left 1 transaction level"),
              "cause: %s", e->cause ? e->cause->message : "none");
    cr_assert_str_eq(order_log, "r,next,", "the left level's on-rollback hook runs before the next hook");
    cr_assert(txm_depth(c) == 0);
    cr_assert(q1(c, "SELECT COUNT(*) FROM t") == 0, "the level a hook left open was committed");
    txm_close(c);
}

/* The log callback is user code too: closing the connection from it is deferred like from a hook. */
static txm_conn *log_conn;
static int log_closes;

static void closing_logger(txm_log_level level, const char *msg, void *p)
{
    (void)level;
    (void)msg;
    (void)p;
    if (log_conn) {
        log_closes++;
        txm_close(log_conn);
    }
}

static int failing_hook(txm_conn *c, void *p)
{
    (void)c;
    (void)p;
    return txm_error_set(TXM_EDATA, "failing hook");
}

Test(close_in_hook, from_the_log_callback)
{
    txm_open_options o = TXM_OPEN_OPTIONS_INIT;
    txm_tx *t = NULL;
    o.log = closing_logger;
    txm_conn *c = check_open(url, &o);
    x(c, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
    log_conn = c;
    OK(txm_begin(&t, c, NULL));
    OK(insert(c, 1));
    OK(txm_on_commit(c, failing_hook, NULL, NULL)); /* its failure is logged at WARN */
    int rc = txm_commit(t);
    log_conn = NULL;
    cr_assert(rc == TXM_EHOOK, "%s", txm_err_name(rc));
    cr_assert(strstr(txm_error_last()->message, "committed, but 1 of 1") != NULL, "the result survives the close: %s",
              txm_error_last()->message);
    cr_assert(log_closes >= 1);
    cr_assert(count_rows() == 1);
}
