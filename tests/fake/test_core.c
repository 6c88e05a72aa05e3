/* Core state-machine tests on the scripted fake driver: the exact batches txm sends, and the
 * failure paths no real engine produces on demand. Real-engine behaviour: tests/conformance. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <string.h>

#include "fake_driver.h"

static txm_conn *c;

static void setup(void)
{
    cr_assert(eq(int, txm_driver_register(&fake_driver), 0));
    fake_reset();
    cr_assert(eq(int, txm_open(&c, "fake:db", NULL), 0), "%s", txm_error_last()->message);
}

static void teardown(void) { txm_close(c); }

static int calls[16];
static int frees;
static int hook_count(txm_conn *conn, void *p)
{
    (void)conn;
    calls[(intptr_t)p]++;
    return 0;
}
static void count_free(void *p)
{
    (void)p;
    frees++;
}
static void reset_hooks(void)
{
    memset(calls, 0, sizeof calls);
    frees = 0;
}

#define EXEC(sql) cr_assert(eq(int, txm_exec(c, sql, NULL, 0, NULL), 0), "%s", txm_error_last()->message)
#define LOG_IS(s) cr_assert(eq(str, fake_log, (char *)(s)))

TestSuite(batches, .init = setup, .fini = teardown);

Test(batches, empty_levels_send_nothing)
{
    txm_tx *a, *b;
    cr_assert(eq(int, txm_begin(&a, c, NULL), 0));
    cr_assert(eq(int, txm_begin(&b, c, NULL), 0));
    cr_assert(eq(int, txm_commit(b), 0));
    cr_assert(eq(int, txm_commit(a), 0));
    LOG_IS("");
}

Test(batches, begin_travels_with_first_statement)
{
    txm_tx *a;
    txm_stats st;
    txm_begin(&a, c, NULL);
    EXEC("S1");
    cr_assert(eq(int, txm_commit(a), 0));
    LOG_IS("BEGIN,STMT:S1 | COMMIT");
    txm_stats_get(c, &st);
    cr_assert(eq(u64, st.round_trips, 2));
    cr_assert(eq(u64, st.control, 2));
    cr_assert(eq(u64, st.statements, 1));
}

Test(batches, three_nested_levels_one_flight_each_and_no_release)
{
    txm_tx *a, *b, *d;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    EXEC("B");
    txm_begin(&d, c, NULL);
    EXEC("C");
    cr_assert(eq(int, txm_commit(d), 0));
    cr_assert(eq(int, txm_commit(b), 0));
    cr_assert(eq(int, txm_commit(a), 0));
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B | SP2,STMT:C | COMMIT");
}

Test(batches, lazy_begin_and_savepoint_share_the_flight)
{
    txm_tx *a, *b;
    txm_begin(&a, c, NULL);
    txm_begin(&b, c, NULL);
    EXEC("B");
    txm_commit(b);
    txm_commit(a);
    LOG_IS("BEGIN,SP1,STMT:B | COMMIT");
}

Test(batches, release_travels_with_parents_next_statement)
{
    txm_tx *a, *b;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    EXEC("B");
    txm_commit(b);
    EXEC("C");
    txm_commit(a);
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B | REL1,STMT:C | COMMIT");
}

Test(batches, outer_release_supersedes_inner_pending_release)
{
    txm_tx *a, *b, *d;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    EXEC("B");
    txm_begin(&d, c, NULL);
    EXEC("C");
    txm_commit(d);
    txm_commit(b);
    EXEC("D");
    txm_commit(a);
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B | SP2,STMT:C | REL1,STMT:D | COMMIT");
}

Test(batches, rollback_to_outer_savepoint_drops_inner_pending_release)
{
    txm_tx *a, *b, *d;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    EXEC("B");
    txm_begin(&d, c, NULL);
    EXEC("C");
    txm_commit(d);
    cr_assert(eq(int, txm_rollback(b), 0));
    EXEC("D");
    txm_commit(a);
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B | SP2,STMT:C | RBTO1,REL1 | STMT:D | COMMIT");
}

Test(batches, same_depth_sibling_reuses_name_after_release)
{
    txm_tx *a, *b;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    EXEC("B");
    txm_commit(b);
    txm_begin(&b, c, NULL);
    EXEC("B2");
    txm_commit(b);
    txm_commit(a);
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B | REL1,SP1,STMT:B2 | COMMIT");
}

Test(batches, transaction_lock_flushes_begin)
{
    txm_tx *a;
    txm_begin(&a, c, NULL);
    cr_assert(eq(int, txm_lock(c, "k", TXM_LOCK_TX, 100), 0));
    txm_commit(a);
    LOG_IS("BEGIN,LOCK:k | COMMIT");
}

Test(batches, transaction_lock_outside_transaction_is_misuse)
{
    cr_assert(eq(int, txm_lock(c, "k", TXM_LOCK_TX, 100), TXM_EMISUSE));
    cr_assert(eq(int, txm_lock(c, "k", TXM_LOCK_SHARED, 100), TXM_ENOTSUPPORTED));
    LOG_IS("");
}

/* A driver without TXM_CAP_TX_TIMEOUTS (as any third-party driver written before it) never gets
 * timeouts it would ignore: txm_begin refuses them, and nothing is sent. */
Test(batches, timeouts_refused_without_the_capability)
{
    txm_tx *a;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    cr_assert(eq(u32, fake_driver.caps & TXM_CAP_TX_TIMEOUTS, 0u));
    o.lock_timeout_ms = 100;
    cr_assert(eq(int, txm_begin(&a, c, &o), TXM_ENOTSUPPORTED));
    cr_assert(strstr(txm_error_last()->message, "txm_begin") && strstr(txm_error_last()->message, "TXM_CAP_TX_TIMEOUTS"),
              "%s", txm_error_last()->message);
    o.lock_timeout_ms = 0;
    o.statement_timeout_ms = 100;
    cr_assert(eq(int, txm_begin(&a, c, &o), TXM_ENOTSUPPORTED));
    cr_assert(eq(int, txm_depth(c), 0));
    LOG_IS("");
}

/* A version-1 struct (3 fields, as compiled against txm.h before version 2) is accepted, and the
 * driver sees a current-version struct with the old fields kept and the new ones zero. */
Test(batches, version_1_options_reach_the_driver_as_current_version)
{
    struct {
        txm_tx_options v1; /* only the first three fields are "the caller's" */
    } box;
    txm_tx *a;
    memset(&box, 0x5A, sizeof box); /* garbage where a version-1 caller has no fields */
    box.v1.version = 1;
    box.v1.flags = TXM_TX_READ_ONLY;
    box.v1.isolation = TXM_ISOLATION_SERIALIZABLE;
    cr_assert(eq(int, txm_begin(&a, c, &box.v1), 0), "%s", txm_error_last()->message);
    EXEC("S1");
    cr_assert(eq(int, txm_commit(a), 0));
    LOG_IS("BEGIN,STMT:S1 | COMMIT");
    cr_assert(eq(u32, fake_last_begin.version, (unsigned)TXM_TX_OPTIONS_VERSION));
    cr_assert(eq(u32, fake_last_begin.flags, (unsigned)TXM_TX_READ_ONLY));
    cr_assert(eq(int, (int)fake_last_begin.isolation, (int)TXM_ISOLATION_SERIALIZABLE));
    cr_assert(eq(u32, fake_last_begin.lock_timeout_ms, 0u), "the garbage beyond a version-1 struct was read");
    cr_assert(eq(u32, fake_last_begin.statement_timeout_ms, 0u));
}

TestSuite(poison, .init = setup, .fini = teardown);

Test(poison, failed_child_refuses_then_rolls_back_and_parent_continues)
{
    txm_tx *a, *b;
    txm_stats st;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    fake_fail_op(1, TXM_EUNIQUE, 0); /* SP1 ok, STMT fails */
    cr_assert(eq(int, txm_exec(c, "B", NULL, 0, NULL), TXM_EUNIQUE));
    cr_assert(eq(int, txm_exec(c, "B2", NULL, 0, NULL), TXM_ETX_ABORTED));
    cr_assert(not(eq(ptr, (void *)txm_error_last()->cause, NULL)));
    cr_assert(eq(int, txm_error_last()->cause->code, TXM_EUNIQUE));
    cr_assert(eq(str, (char *)txm_error_last()->cause->constraint_name, "fake_constraint"));
    txm_stats_get(c, &st);
    cr_assert(eq(u64, st.refused, 1));
    cr_assert(eq(int, txm_commit(b), TXM_ETX_ABORTED));
    EXEC("C");
    cr_assert(eq(int, txm_commit(a), 0));
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B | RBTO1,REL1 | STMT:C | COMMIT");
}

Test(poison, tx_lost_poisons_every_level_and_sends_no_rollback_to)
{
    txm_tx *a, *b;
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_begin(&b, c, NULL);
    fake_fail_op(1, TXM_EDEADLOCK, TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_exec(c, "B", NULL, 0, NULL), TXM_EDEADLOCK));
    cr_assert(eq(int, txm_rollback(b), 0));
    cr_assert(eq(int, txm_exec(c, "C", NULL, 0, NULL), TXM_ETX_ABORTED));
    cr_assert(eq(int, txm_error_last()->cause->code, TXM_EDEADLOCK));
    cr_assert(eq(int, txm_commit(a), TXM_ETX_ABORTED));
    cr_assert(txm_err_is_transient(txm_error_last()));
    /* The fake engine dropped the transaction (like MySQL after 1213): no ROLLBACK is sent. */
    LOG_IS("BEGIN,STMT:A | SP1,STMT:B");
    EXEC("D");
}

Test(poison, engine_side_rollback_detected_from_status)
{
    txm_tx *a;
    txm_begin(&a, c, NULL);
    EXEC("A");
    fake_fail_op(0, TXM_ELOCK_TIMEOUT, 0);
    fake_status_after_next_run(TXM_TXS_IDLE);
    cr_assert(eq(int, txm_exec(c, "B", NULL, 0, NULL), TXM_ELOCK_TIMEOUT));
    cr_assert(eq(int, txm_error_last()->flags & TXM_ERRF_TX_LOST, TXM_ERRF_TX_LOST));
    cr_assert(eq(int, txm_rollback(a), 0));
    LOG_IS("BEGIN,STMT:A | STMT:B");
}

Test(poison, join_failure_dooms_owner)
{
    txm_tx *a, *j;
    txm_tx_options jo = TXM_TX_OPTIONS_INIT;
    jo.flags = TXM_TX_JOIN;
    txm_begin(&a, c, NULL);
    EXEC("A");
    cr_assert(eq(int, txm_begin(&j, c, &jo), 0));
    fake_fail_op(0, TXM_ECHECK, 0);
    cr_assert(eq(int, txm_exec(c, "J", NULL, 0, NULL), TXM_ECHECK));
    cr_assert(eq(int, txm_commit(j), TXM_ETX_ABORTED));
    cr_assert(eq(int, txm_exec(c, "X", NULL, 0, NULL), TXM_ETX_ABORTED));
    cr_assert(eq(int, txm_commit(a), TXM_ETX_ABORTED));
    LOG_IS("BEGIN,STMT:A | STMT:J | ROLLBACK");
}

Test(poison, implicit_commit_is_reported_not_absorbed)
{
    txm_tx *a;
    txm_begin(&a, c, NULL);
    EXEC("A");
    fake_status_after_next_run(TXM_TXS_IDLE);
    cr_assert(eq(int, txm_exec(c, "CREATE TABLE t(x int)", NULL, 0, NULL), TXM_ESTATE));
    cr_assert(not(eq(ptr, strstr(txm_error_last()->message, "implicit commit"), NULL)));
    cr_assert(eq(int, txm_exec(c, "B", NULL, 0, NULL), TXM_ETX_ABORTED));
    cr_assert(eq(int, txm_commit(a), TXM_ETX_ABORTED));
    LOG_IS("BEGIN,STMT:A | STMT:CREATE TABLE t(x int)");
}

Test(poison, transaction_opened_behind_txms_back_is_rolled_back)
{
    fake_status_after_next_run(TXM_TXS_ACTIVE);
    cr_assert(eq(int, txm_exec(c, "SET autocommit=0", NULL, 0, NULL), TXM_ESTATE));
    LOG_IS("STMT:SET autocommit=0 | ROLLBACK");
}

Test(poison, failed_rollback_to_dooms_whole_transaction)
{
    txm_tx *a, *b;
    txm_begin(&a, c, NULL);
    txm_begin(&b, c, NULL);
    EXEC("B");
    fake_fail_op(0, TXM_ERROR, 0);
    cr_assert(eq(int, txm_rollback(b), TXM_ERROR));
    cr_assert(eq(int, txm_exec(c, "C", NULL, 0, NULL), TXM_ETX_ABORTED));
    cr_assert(eq(int, txm_rollback(a), 0));
    LOG_IS("BEGIN,SP1,STMT:B | RBTO1 | ROLLBACK"); /* the batch stops at the failing op */
}

TestSuite(commit_failure, .init = setup, .fini = teardown);

Test(commit_failure, unknown_outcome_runs_no_hook_and_frees_payloads)
{
    txm_tx *a;
    reset_hooks();
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_on_commit(c, hook_count, (void *)1, count_free);
    txm_on_rollback(c, hook_count, (void *)2, count_free);
    fake_fail_op(0, TXM_ECOMMIT_UNKNOWN, TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_commit(a), TXM_ECOMMIT_UNKNOWN));
    cr_assert(eq(int, calls[1] + calls[2], 0));
    cr_assert(eq(int, frees, 2));
    cr_assert(eq(int, txm_depth(c), 0));
    /* The connection is known broken: no silent autocommit on a dead link. */
    cr_assert(eq(int, txm_exec(c, "B", NULL, 0, NULL), TXM_ECONNECTION));
    cr_assert(eq(int, txm_reconnect(c), TXM_ENOTSUPPORTED));
}

Test(commit_failure, definite_failure_runs_rollback_hooks_only)
{
    txm_tx *a;
    reset_hooks();
    txm_begin(&a, c, NULL);
    EXEC("A");
    txm_on_commit(c, hook_count, (void *)1, count_free);
    txm_on_rollback(c, hook_count, (void *)2, count_free);
    fake_fail_op(0, TXM_ESERIALIZATION, TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_commit(a), TXM_ESERIALIZATION));
    cr_assert(eq(int, txm_error_last()->code, TXM_ESERIALIZATION), "hooks must not clobber the commit error");
    cr_assert(eq(int, calls[1], 0));
    cr_assert(eq(int, calls[2], 1));
    cr_assert(eq(int, frees, 2));
}

Test(commit_failure, commit_that_leaves_transaction_open_is_rolled_back)
{
    txm_tx *a;
    txm_begin(&a, c, NULL);
    EXEC("A");
    fake_fail_op(0, TXM_ELOCK_TIMEOUT, 0); /* SQLite: COMMIT busy leaves the transaction open */
    cr_assert(eq(int, txm_commit(a), TXM_ELOCK_TIMEOUT));
    LOG_IS("BEGIN,STMT:A | COMMIT | ROLLBACK");
    cr_assert(eq(int, txm_depth(c), 0));
}

static int attempts;
static int retry_body(txm_conn *conn, void *p)
{
    (void)p;
    attempts++;
    txm_on_commit(conn, hook_count, (void *)(intptr_t)attempts, count_free);
    return txm_exec(conn, "W", NULL, 0, NULL);
}

Test(commit_failure, retry_covers_commit_and_skips_failed_attempts_hooks)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    txm_stats st;
    p.base_delay_us = 1;
    p.max_delay_us = 10;
    p.seed = 7;
    reset_hooks();
    attempts = 0;
    fake_fail_op(2, TXM_ESERIALIZATION, TXM_ERRF_TX_LOST); /* BEGIN, W ok; COMMIT fails */
    cr_assert(eq(int, txm_retry(c, &p, retry_body, NULL), 0), "%s", txm_error_last()->message);
    cr_assert(eq(int, attempts, 2));
    cr_assert(eq(int, calls[1], 0));
    cr_assert(eq(int, calls[2], 1));
    cr_assert(eq(int, frees, 2));
    txm_stats_get(c, &st);
    cr_assert(eq(u64, st.retries, 1));
    LOG_IS("BEGIN,STMT:W | COMMIT | BEGIN,STMT:W | COMMIT");
}

static int swallowing_body(txm_conn *conn, void *p)
{
    (void)p;
    attempts++;
    (void)txm_exec(conn, "W", NULL, 0, NULL); /* error swallowed */
    return 0;
}

Test(commit_failure, swallowed_deadlock_is_still_retried)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    p.base_delay_us = 1;
    p.max_delay_us = 10;
    attempts = 0;
    fake_fail_op(1, TXM_EDEADLOCK, TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_retry(c, &p, swallowing_body, NULL), 0));
    cr_assert(eq(int, attempts, 2));
}

Test(commit_failure, unknown_jitter_is_refused_before_any_attempt)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    p.jitter = 2;
    attempts = 0;
    cr_assert(eq(int, txm_retry(c, &p, retry_body, NULL), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "txm_retry") != NULL, "%s", txm_error_last()->message);
    cr_expect(strstr(txm_error_last()->message, "jitter 2") != NULL, "%s", txm_error_last()->message);
    cr_assert(eq(int, attempts, 0));
    LOG_IS("");
}

/* A policy built against version 1 of txm.h ends at `seed`: what follows it in memory is not the
 * caller's, so txm_retry must not read it as `jitter` (0xAB bytes would be an unknown jitter). */
Test(commit_failure, version_1_policy_is_retried_with_full_jitter)
{
    union {
        txm_retry_policy p;
        unsigned char bytes[sizeof(txm_retry_policy)];
    } u;
    memset(&u, 0xAB, sizeof u);
    cr_assert(eq(int, txm_retry_policy_init(&u.p, 1), 0));
    u.p.base_delay_us = 1;
    u.p.max_delay_us = 10;
    reset_hooks();
    attempts = 0;
    fake_fail_op(2, TXM_EDEADLOCK, TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_retry(c, &u.p, retry_body, NULL), 0), "%s", txm_error_last()->message);
    cr_assert(eq(int, attempts, 2));
}

Test(commit_failure, no_jitter_policy_retries)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    txm_stats st;
    p.jitter = TXM_RETRY_JITTER_NONE;
    p.base_delay_us = 1;
    p.max_delay_us = 10;
    reset_hooks();
    attempts = 0;
    fake_fail_op(2, TXM_ESERIALIZATION, TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_retry(c, &p, retry_body, NULL), 0), "%s", txm_error_last()->message);
    cr_assert(eq(int, attempts, 2));
    txm_stats_get(c, &st);
    cr_assert(eq(u64, st.retries, 1));
}

TestSuite(robustness, .init = setup, .fini = teardown);

Test(robustness, driver_registration_is_validated)
{
    txm_driver bad = fake_driver;
    bad.version = 0;
    cr_assert(eq(int, txm_driver_register(&bad), TXM_EINVALID));
    bad.version = TXM_DRIVER_VERSION + 1;
    cr_assert(eq(int, txm_driver_register(&bad), TXM_EINVALID));
    cr_assert(not(eq(ptr, strstr(txm_error_last()->message, "ABI version"), NULL)));
    bad = fake_driver;
    bad.run = NULL;
    cr_assert(eq(int, txm_driver_register(&bad), TXM_EINVALID));
    cr_assert(eq(int, txm_driver_register(NULL), TXM_EINVALID));
}

Test(robustness, open_failure_reports_driver_error_without_password)
{
    txm_conn *x = (txm_conn *)1;
    cr_assert(eq(int, txm_open(&x, "fake://user:hunter2@host/refuse", NULL), TXM_ECONNECTION));
    cr_assert(eq(ptr, x, NULL));
    cr_assert(eq(ptr, strstr(txm_error_last()->message, "hunter2"), NULL), "%s", txm_error_last()->message);
}

static int scenario(void)
{
    txm_conn *x = NULL;
    txm_tx *a = NULL, *b = NULL;
    txm_rows *r = NULL;
    txm_value v = txm_int(1);
    int rc = txm_open(&x, "fake:db?opt=1", NULL);
    if (rc)
        return rc;
    if ((rc = txm_begin(&a, x, NULL)) == 0) {
        txm_on_commit(x, hook_count, (void *)3, count_free);
        txm_exec(x, "A ?", &v, 1, NULL);
        if (txm_begin(&b, x, NULL) == 0) {
            txm_on_rollback(x, hook_count, (void *)4, count_free);
            if (txm_query(&r, x, "Q", NULL, 0) == 0)
                txm_rows_free(r);
            txm_rollback(b);
        }
        rc = txm_commit(a);
    }
    txm_close(x);
    return rc;
}

Test(robustness, every_allocation_failure_is_survived)
{
    unsigned long n;
    int saw_nomem = 0, passed = 0;
    for (n = 1; n < 400 && !passed; n++) {
        int rc;
        reset_hooks();
        fake_reset();
        txm__alloc_fail_after(n, false);
        rc = scenario();
        txm__alloc_fail_after(0, false);
        if (rc == TXM_ENOMEM || (rc != 0 && rc != TXM_ETX_ABORTED))
            saw_nomem = 1;
        if (rc == 0 && n > 1)
            passed = 1;
        /* Registered payloads are freed exactly once, whatever failed. */
        cr_assert(le(int, frees, 2));
    }
    cr_assert(saw_nomem, "allocation failures must surface as errors");
    cr_assert(passed, "the scenario must eventually pass when allocations succeed");
}

Test(robustness, hook_registration_failure_never_runs_and_keeps_payload)
{
    txm_tx *a;
    reset_hooks();
    txm_begin(&a, c, NULL);
    txm__alloc_fail_after(1, false);
    cr_assert(eq(int, txm_on_commit(c, hook_count, (void *)5, count_free), TXM_ENOMEM));
    txm__alloc_fail_after(0, false);
    cr_assert(eq(int, txm_commit(a), 0));
    cr_assert(eq(int, calls[5], 0));
    cr_assert(eq(int, frees, 0));
}

TestSuite(baseline, .init = setup, .fini = teardown);

Test(baseline, depth_zero_statement_runs_in_its_own_savepoint)
{
    cr_assert(eq(int, txm_test_baseline(c), 0));
    EXEC("A");
    fake_fail_op(1, TXM_EUNIQUE, 0); /* SP1 ok, STMT B fails */
    cr_assert(eq(int, txm_exec(c, "B", NULL, 0, NULL), TXM_EUNIQUE));
    cr_assert(eq(str, (char *)txm_error_last()->constraint_name, "fake_constraint"), "error kept after the undo");
    EXEC("C"); /* the baseline is not doomed */
    cr_assert(eq(int, txm_test_end(c), 0));
    LOG_IS("BEGIN,SP1,STMT:A,REL1 | SP1,STMT:B | RBTO1,REL1 | SP1,STMT:C,REL1 | ROLLBACK");
}

Test(baseline, user_level_is_a_savepoint_and_its_hooks_are_captured)
{
    txm_tx *a;
    reset_hooks();
    cr_assert(eq(int, txm_test_baseline(c), 0));
    cr_assert(eq(int, txm_depth(c), 0));
    cr_assert(eq(int, txm_forbid_transaction(c, "send_email"), 0));
    {
        txm_tx_options o = TXM_TX_OPTIONS_INIT;
        o.flags = TXM_TX_DURABLE;
        cr_assert(eq(int, txm_begin(&a, c, &o), 0), "durable works directly inside the baseline");
    }
    EXEC("A");
    txm_on_commit(c, hook_count, (void *)6, count_free);
    cr_assert(eq(int, txm_commit(a), 0));
    cr_assert(eq(int, calls[6], 0));
    cr_assert(eq(sz, txm_test_hook_count(c), 1));
    cr_assert(eq(int, txm_test_run_hooks(c), 0));
    cr_assert(eq(int, calls[6], 1));
    cr_assert(eq(int, txm_test_end(c), 0));
    cr_assert(eq(int, frees, 1));
    LOG_IS("BEGIN,SP1,STMT:A | ROLLBACK");
}
