/*
 * Fault-driver tests: every retry, hook and poisoning path of the core, made deterministic by
 * faults injected through fault+SCHEME URLs (docs/fault-driver.md), on a real engine.
 *
 * The engine is picked at run time by TXM_FAULT_ENGINE (sqlite | postgresql | mysql): SQLite uses
 * a temp database file; the servers read TXM_TEST_PG_URL / TXM_TEST_MYSQL_URL and every test skips
 * with a reason without it. meson registers the executable once per engine (suites sqlite,
 * postgresql, mysql). Results are checked on a second, plain connection (no wrapper).
 */
#include "txm.h"
#include "txm/fault.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "txm_check.h"

static char engine[16];
static char inner[2048];  /* the plain URL */
static char dbfile[256];  /* SQLite temp file */
static txm_conn *plain;   /* verification connection */

static void setup(void)
{
    const char *e = getenv("TXM_FAULT_ENGINE");
    snprintf(engine, sizeof engine, "%s", e && *e ? e : "sqlite");
    if (strcmp(engine, "sqlite") == 0) {
        snprintf(dbfile, sizeof dbfile, "/tmp/txm-fault-XXXXXX");
        int fd = mkstemp(dbfile);
        cr_assert(fd >= 0, "mkstemp failed");
        close(fd);
        snprintf(inner, sizeof inner, "sqlite:%s?busy_timeout=2000", dbfile);
    } else {
        const char *var = strcmp(engine, "postgresql") == 0 ? "TXM_TEST_PG_URL" : "TXM_TEST_MYSQL_URL";
        NEED_URL(var, strcmp(engine, "postgresql") == 0 ? "scripts/pg-server.sh" : "scripts/mariadb-server.sh");
        snprintf(inner, sizeof inner, "%s", getenv(var));
    }
    plain = check_open(inner, NULL);
    x(plain, "DROP TABLE IF EXISTS f_item");
    x(plain, "CREATE TABLE f_item (id INTEGER PRIMARY KEY, v VARCHAR(40))");
}

static void teardown(void)
{
    txm_close(plain);
    plain = NULL;
    if (dbfile[0]) {
        char p[300];
        unlink(dbfile);
        snprintf(p, sizeof p, "%s-journal", dbfile);
        unlink(p);
        snprintf(p, sizeof p, "%s-wal", dbfile);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", dbfile);
        unlink(p);
        dbfile[0] = '\0';
    }
}

TestSuite(fault, .init = setup, .fini = teardown);

static bool is(const char *e) { return strcmp(engine, e) == 0; }

/* fault+<inner> with `spec` appended as query parameters (NULL: none). */
static txm_conn *fopen_spec(const char *spec)
{
    char url[2300];
    snprintf(url, sizeof url, "fault+%s%s%s", inner, spec ? (strchr(inner, '?') ? "&" : "?") : "", spec ? spec : "");
    return check_open(url, NULL);
}

static int64_t count_rows(void)
{
    int64_t n = -1;
    OK(txm_query_i64(plain, &n, "SELECT COUNT(*) FROM f_item", NULL, 0));
    return n;
}

static int64_t count_id(int64_t id)
{
    int64_t n = -1;
    txm_value p = txm_int(id);
    OK(txm_query_i64(plain, &n, "SELECT COUNT(*) FROM f_item WHERE id = ?", &p, 1));
    return n;
}

static int ins(txm_conn *c, int64_t id)
{
    txm_value p[2] = {txm_int(id), txm_text("x")};
    return txm_exec(c, "INSERT INTO f_item (id, v) VALUES (?, ?)", p, 2, NULL);
}

/* ---- hooks ---------------------------------------------------------------------------------- */

typedef struct counters {
    int commit_runs, rollback_runs, frees, body_calls;
} counters;

static int on_commit_cb(txm_conn *c, void *p)
{
    (void)c;
    ((counters *)p)->commit_runs++;
    return 0;
}
static int on_rollback_cb(txm_conn *c, void *p)
{
    (void)c;
    ((counters *)p)->rollback_runs++;
    return 0;
}
static void free_cb(void *p) { ((counters *)p)->frees++; }

static void hooks(txm_conn *c, counters *k)
{
    OK(txm_on_commit(c, on_commit_cb, k, free_cb));
    OK(txm_on_rollback(c, on_rollback_cb, k, free_cb));
}

/* Retry body: hooks, then three inserts (ids 1..3). */
static int body3(txm_conn *c, void *payload)
{
    counters *k = payload;
    int rc, i;
    k->body_calls++;
    hooks(c, k);
    for (i = 1; i <= 3; i++)
        if ((rc = ins(c, i)) != 0)
            return rc;
    return 0;
}

static txm_retry_policy fast_policy(unsigned max_attempts, unsigned retry_on)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    p.max_attempts = max_attempts;
    p.base_delay_us = 100;
    p.max_delay_us = 1000;
    p.retry_on = retry_on;
    p.seed = 42;
    return p;
}

/* txm_retry with a fault injected `failures` times: succeeds on attempt failures+1, each failed
 * attempt's on-rollback hook ran and its on-commit hook did not, the rows are there once. */
static void retry_case(const char *spec, int failures)
{
    txm_conn *c = fopen_spec(spec);
    txm_retry_policy p = fast_policy(5, TXM_RETRY_DEFAULT);
    counters k = {0};
    txm_stats st;
    OK(txm_retry(c, &p, body3, &k));
    cr_assert_eq(k.body_calls, failures + 1, "%s: %d attempts, expected %d", spec, k.body_calls, failures + 1);
    cr_assert_eq(k.commit_runs, 1, "%s: on-commit hooks ran %d times (only the successful attempt's may run)", spec,
                 k.commit_runs);
    cr_assert_eq(k.rollback_runs, failures, "%s: on-rollback hooks ran %d times, expected %d", spec, k.rollback_runs,
                 failures);
    cr_assert_eq(k.frees, 2 * (failures + 1), "%s: %d payload frees", spec, k.frees);
    cr_assert_eq(txm_fault_count(c), (unsigned long)failures, "%s: %lu faults injected", spec, txm_fault_count(c));
    txm_stats_get(c, &st);
    cr_assert_eq(st.retries, (uint64_t)failures, "%s: stats.retries=%llu", spec, (unsigned long long)st.retries);
    cr_assert_eq(count_rows(), 3, "%s: %lld rows committed, expected 3", spec, (long long)count_rows());
    txm_close(c);
}

Test(fault, retry_deadlock_at_statement_k)
{
    retry_case("fault=deadlock&fault_at=2&fault_times=2", 2);
}
Test(fault, retry_deadlock_at_last_statement) { retry_case("fault=deadlock&fault_at=3", 1); }
Test(fault, retry_serialization_at_statement_k) { retry_case("fault=serialization&fault_at=1", 1); }
Test(fault, retry_deadlock_at_commit) { retry_case("fault=deadlock&fault_at=commit&fault_times=3", 3); }
Test(fault, retry_serialization_at_commit) { retry_case("fault=serialization&fault_at=commit&fault_times=2", 2); }
Test(fault, retry_deadlock_at_begin) { retry_case("fault=deadlock&fault_at=begin", 1); }

Test(fault, retry_exhausts_max_attempts)
{
    txm_conn *c = fopen_spec("fault=deadlock&fault_at=2&fault_times=always");
    txm_retry_policy p = fast_policy(3, TXM_RETRY_DEFAULT);
    counters k = {0};
    RC(TXM_EDEADLOCK, txm_retry(c, &p, body3, &k));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST, "deadlock without TX_LOST");
    cr_assert(strstr(txm_error_last()->message, "injected by the fault driver"), "message: %s",
              txm_error_last()->message);
    cr_assert_eq(k.body_calls, 3);
    cr_assert_eq(k.commit_runs, 0);
    cr_assert_eq(k.rollback_runs, 3);
    cr_assert_eq(txm_fault_count(c), 3ul);
    cr_assert_eq(count_rows(), 0);
    cr_assert_eq(txm_depth(c), 0);
    txm_close(c);
}

Test(fault, lock_timeout_retried_only_when_asked)
{
    txm_conn *c = fopen_spec("fault=lock_timeout&fault_at=2");
    txm_retry_policy p = fast_policy(5, TXM_RETRY_DEFAULT);
    counters k = {0};
    RC(TXM_ELOCK_TIMEOUT, txm_retry(c, &p, body3, &k));
    cr_assert_eq(k.body_calls, 1, "lock timeout retried without TXM_RETRY_LOCK_TIMEOUT");
    cr_assert_eq(k.rollback_runs, 1);
    cr_assert_eq(count_rows(), 0);

    memset(&k, 0, sizeof k);
    OK(txm_fault_set(c, "fault=lock_timeout&fault_at=2"));
    p.retry_on |= TXM_RETRY_LOCK_TIMEOUT;
    OK(txm_retry(c, &p, body3, &k));
    cr_assert_eq(k.body_calls, 2);
    cr_assert_eq(k.commit_runs, 1);
    cr_assert_eq(k.rollback_runs, 1);
    cr_assert_eq(txm_fault_count(c), 2ul);
    cr_assert_eq(count_rows(), 3);
    txm_close(c);
}

/* ---- poisoning ------------------------------------------------------------------------------ */

/* A fault connection with an outer level (hooks ko, row 1) and a nested level (hooks ki) open. */
static txm_conn *two_levels(const char *spec, txm_tx **outer, txm_tx **nested, counters *ko, counters *ki)
{
    txm_conn *c = fopen_spec(spec);
    OK(txm_begin(outer, c, NULL));
    hooks(c, ko);
    OK(ins(c, 1));
    OK(txm_begin(nested, c, NULL));
    hooks(c, ki);
    return c;
}

/* A statement-level fault in a nested level poisons that level only. */
static void nested_statement_fault(const char *spec, int code)
{
    txm_tx *outer, *inner_tx;
    counters ko = {0}, ki = {0};
    txm_conn *c = two_levels(spec, &outer, &inner_tx, &ko, &ki);
    RC(code, ins(c, 2));
    cr_assert((txm_error_last()->flags & TXM_ERRF_TX_LOST) == 0, "a statement-level fault set TX_LOST");
    RC(TXM_ETX_ABORTED, ins(c, 3));
    cr_assert_eq(txm_error_last()->cause ? txm_error_last()->cause->code : 0, code, "cause of the refusal");
    OK(txm_rollback(inner_tx));
    cr_assert_eq(ki.rollback_runs, 1, "the nested level's on-rollback hook did not run");
    OK(ins(c, 4)); /* the outer level is intact */
    OK(txm_commit(outer));
    cr_assert_eq(ko.commit_runs, 1);
    cr_assert_eq(ki.commit_runs, 0);
    cr_assert_eq(ko.rollback_runs, 0);
    cr_assert_eq(count_id(1) + count_id(4), 2);
    cr_assert_eq(count_rows(), 2);
    cr_assert_eq(txm_fault_count(c), 1ul);
    txm_close(c);
}

Test(fault, lock_timeout_in_nested_poisons_that_level_only)
{
    nested_statement_fault("fault=lock_timeout&fault_at=2", TXM_ELOCK_TIMEOUT);
}
Test(fault, nomem_in_nested_poisons_that_level_only) { nested_statement_fault("fault=nomem&fault_at=2", TXM_ENOMEM); }

/* Three levels, a statement-level fault at level k's statement: levels below k are intact, level k
 * refuses work until it is rolled back, and the parent continues. */
static void poison_level(int k)
{
    char spec[64];
    txm_conn *c;
    txm_tx *lv[3];
    int i, want = 0;
    snprintf(spec, sizeof spec, "fault=lock_timeout&fault_at=%d", k);
    c = fopen_spec(spec);
    for (i = 1; i <= k; i++) {
        OK(txm_begin(&lv[i - 1], c, NULL));
        if (i < k)
            OK(ins(c, i));
    }
    RC(TXM_ELOCK_TIMEOUT, ins(c, k));
    RC(TXM_ETX_ABORTED, ins(c, 50));
    OK(txm_rollback(lv[k - 1]));
    if (k > 1) {
        OK(ins(c, 100)); /* the parent level continues */
        for (i = k - 1; i >= 1; i--)
            OK(txm_commit(lv[i - 1]));
        want = k; /* ids 1..k-1 and 100 */
        cr_assert_eq(count_id(100), 1);
    }
    cr_assert_eq(count_rows(), want, "fault at level %d: %lld rows, expected %d", k, (long long)count_rows(), want);
    cr_assert_eq(count_id(k), 0);
    cr_assert_eq(txm_depth(c), 0);
    txm_close(c);
}

Test(fault, poison_level_1) { poison_level(1); }
Test(fault, poison_level_2) { poison_level(2); }
Test(fault, poison_level_3) { poison_level(3); }

/* A fault in a joined level dooms the nearest level that owns a savepoint, not its parent. */
Test(fault, fault_in_join_level_dooms_its_savepoint_owner)
{
    txm_conn *c = fopen_spec("fault=lock_timeout&fault_at=3");
    txm_tx *outer, *n1, *j;
    txm_tx_options jo = TXM_TX_OPTIONS_INIT;
    jo.flags = TXM_TX_JOIN;
    OK(txm_begin(&outer, c, NULL));
    OK(ins(c, 1));
    OK(txm_begin(&n1, c, NULL));
    OK(ins(c, 2));
    OK(txm_begin(&j, c, &jo));
    RC(TXM_ELOCK_TIMEOUT, ins(c, 3));
    OK(txm_rollback(j));
    RC(TXM_ETX_ABORTED, ins(c, 4)); /* n1 is doomed */
    OK(txm_rollback(n1));
    OK(ins(c, 5)); /* the outer level is intact */
    OK(txm_commit(outer));
    cr_assert_eq(count_rows(), 2);
    cr_assert_eq(count_id(1) + count_id(5), 2);
    txm_close(c);
}

/* A deadlock anywhere poisons every level: the server rolled the whole transaction back. */
static void nested_tx_killer(const char *spec, int code)
{
    txm_tx *outer, *inner_tx;
    counters ko = {0}, ki = {0};
    txm_conn *c = two_levels(spec, &outer, &inner_tx, &ko, &ki);
    RC(code, ins(c, 2));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST, "no TX_LOST");
    OK(txm_rollback(inner_tx));
    RC(TXM_ETX_ABORTED, ins(c, 3)); /* the outer level is poisoned too */
    RC(TXM_ETX_ABORTED, txm_commit(outer));
    cr_assert_eq(ko.commit_runs + ki.commit_runs, 0);
    cr_assert_eq(ko.rollback_runs + ki.rollback_runs, 2, "on-rollback hooks: %d + %d", ko.rollback_runs,
                 ki.rollback_runs);
    cr_assert_eq(count_rows(), 0);
    /* The connection is usable afterwards. */
    OK(ins(c, 9));
    cr_assert_eq(count_rows(), 1);
    txm_close(c);
}

Test(fault, deadlock_in_nested_poisons_all_levels) { nested_tx_killer("fault=deadlock&fault_at=2", TXM_EDEADLOCK); }
Test(fault, serialization_in_nested_poisons_all_levels)
{
    nested_tx_killer("fault=serialization&fault_at=2", TXM_ESERIALIZATION);
}

/* A deadlock at a nested level's SAVEPOINT: same as at a statement. */
Test(fault, deadlock_at_savepoint_poisons_all) { nested_tx_killer("fault=deadlock&fault_at=savepoint", TXM_EDEADLOCK); }

/* RELEASE travels with the next statement of the outer level. */
static void release_fault(const char *spec, int code, bool lost)
{
    txm_conn *c = fopen_spec(spec);
    txm_tx *outer, *inner_tx;
    counters ko = {0};
    OK(txm_begin(&outer, c, NULL));
    hooks(c, &ko);
    OK(txm_begin(&inner_tx, c, NULL));
    OK(ins(c, 1));
    OK(txm_commit(inner_tx));
    RC(code, ins(c, 2));
    cr_assert_eq((txm_error_last()->flags & TXM_ERRF_TX_LOST) != 0, lost, "TX_LOST flag");
    cr_assert(strstr(txm_error_last()->message, "RELEASE SAVEPOINT"), "message names the op: %s",
              txm_error_last()->message);
    cr_assert_eq(txm_fault_count(c), 1ul);
    RC(TXM_ETX_ABORTED, txm_commit(outer));
    cr_assert_eq(ko.commit_runs, 0);
    cr_assert_eq(ko.rollback_runs, 1);
    cr_assert_eq(count_rows(), 0);
    OK(ins(c, 9));
    cr_assert_eq(count_rows(), 1);
    txm_close(c);
}

Test(fault, deadlock_at_release) { release_fault("fault=deadlock&fault_at=release", TXM_EDEADLOCK, true); }
Test(fault, lock_timeout_at_release) { release_fault("fault=lock_timeout&fault_at=release", TXM_ELOCK_TIMEOUT, false); }
Test(fault, nomem_at_release) { release_fault("fault=nomem&fault_at=release", TXM_ENOMEM, false); }

/* A nested level that cannot be rolled back to its savepoint dooms the whole transaction. */
static void rollback_to_fault(const char *spec, int code)
{
    txm_tx *outer, *inner_tx;
    counters ko = {0}, ki = {0};
    txm_conn *c = two_levels(spec, &outer, &inner_tx, &ko, &ki);
    OK(ins(c, 2));
    RC(code, txm_rollback(inner_tx));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST, "a failed ROLLBACK TO must doom the transaction");
    cr_assert_eq(txm_depth(c), 1);
    RC(TXM_ETX_ABORTED, ins(c, 3));
    RC(TXM_ETX_ABORTED, txm_commit(outer));
    cr_assert_eq(ko.commit_runs + ki.commit_runs, 0);
    cr_assert_eq(ko.rollback_runs + ki.rollback_runs, 2);
    cr_assert_eq(count_rows(), 0);
    OK(ins(c, 9));
    cr_assert_eq(count_rows(), 1);
    txm_close(c);
}

Test(fault, deadlock_at_rollback_to) { rollback_to_fault("fault=deadlock&fault_at=rollback_to", TXM_EDEADLOCK); }
Test(fault, nomem_at_rollback_to) { rollback_to_fault("fault=nomem&fault_at=rollback_to", TXM_ENOMEM); }

/* ---- lost connections ----------------------------------------------------------------------- */

Test(fault, disconnect_then_reconnect)
{
    txm_conn *c = fopen_spec("fault=disconnect&fault_at=2");
    txm_tx *t;
    counters k = {0};
    OK(txm_begin(&t, c, NULL));
    hooks(c, &k);
    OK(ins(c, 1));
    RC(TXM_ECONNECTION, ins(c, 2));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    RC(TXM_ETX_ABORTED, ins(c, 3));
    cr_assert_eq(txm_error_last()->cause ? txm_error_last()->cause->code : 0, TXM_ECONNECTION);
    RC(TXM_EMISUSE, txm_reconnect(c)); /* a level is still open */
    OK(txm_rollback(t));
    cr_assert_eq(k.rollback_runs, 1);
    cr_assert_eq(k.commit_runs, 0);
    RC(TXM_ECONNECTION, ins(c, 4));
    if (txm_capabilities(c) & TXM_CAP_CANCEL)
        RC(TXM_ECONNECTION, txm_cancel(c));
    /* The session really ended: row 1 was rolled back by the server, not by a ROLLBACK. */
    cr_assert_eq(count_rows(), 0);
    OK(txm_reconnect(c));
    OK(ins(c, 5));
    cr_assert_eq(count_rows(), 1);
    cr_assert_eq(count_id(5), 1);
    cr_assert_eq(txm_fault_count(c), 1ul);
    txm_close(c);
}

Test(fault, disconnect_at_commit_is_a_definite_rollback)
{
    txm_conn *c = fopen_spec("fault=disconnect&fault_at=commit");
    txm_tx *t;
    counters k = {0};
    OK(txm_begin(&t, c, NULL));
    hooks(c, &k);
    OK(ins(c, 1));
    RC(TXM_ECONNECTION, txm_commit(t));
    cr_assert_eq(k.rollback_runs, 1, "the COMMIT never reached the server: on-rollback hooks run");
    cr_assert_eq(k.commit_runs, 0);
    cr_assert_eq(txm_depth(c), 0);
    cr_assert_eq(count_rows(), 0);
    OK(txm_reconnect(c));
    OK(ins(c, 2));
    cr_assert_eq(count_rows(), 1);
    txm_close(c);
}

static void commit_unknown(const char *spec, bool committed)
{
    txm_conn *c = fopen_spec(spec);
    txm_tx *t;
    counters k = {0};
    txm_outcome o = TXM_OUTCOME_UNKNOWN;
    OK(txm_begin(&t, c, NULL));
    hooks(c, &k);
    OK(ins(c, 1));
    RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
    cr_assert_eq(k.commit_runs + k.rollback_runs, 0, "a hook ran after an unknown outcome");
    cr_assert_eq(k.frees, 2, "hook payloads not freed");
    cr_assert_eq(txm_depth(c), 0);
    cr_assert_eq(count_rows(), committed ? 1 : 0);
    RC(TXM_ECONNECTION, ins(c, 2));
    if (txm_capabilities(c) & TXM_CAP_RESOLVE_OUTCOME) {
        OK(txm_resolve_outcome(c, &o));
        cr_assert_eq(o, committed ? TXM_OUTCOME_COMMITTED : TXM_OUTCOME_ABORTED, "resolve_outcome said %d", (int)o);
    } else {
        RC(TXM_ENOTSUPPORTED, txm_resolve_outcome(c, &o));
    }
    OK(txm_reconnect(c));
    OK(ins(c, 2));
    cr_assert_eq(count_rows(), committed ? 2 : 1);
    txm_close(c);
}

Test(fault, commit_unknown_committed) { commit_unknown("fault=commit_unknown", true); }
Test(fault, commit_unknown_aborted) { commit_unknown("fault=commit_unknown_aborted&fault_at=commit", false); }

/* ---- allocation failure at each op kind ----------------------------------------------------- */

/* One transaction that passes through every op kind: BEGIN, statement, SAVEPOINT, statement,
 * ROLLBACK TO (nested rollback), SAVEPOINT, statement, RELEASE (with the next statement),
 * statement, COMMIT; then a second transaction that rolls back (ROLLBACK). Every call's failure
 * is tolerated: the checks are that the failing call said TXM_ENOMEM, that the connection is
 * usable afterwards and that the data is all or nothing. */
static int scenario(txm_conn *c, int *first_fail)
{
    txm_tx *o = NULL, *n1 = NULL, *n2 = NULL, *r = NULL;
    int later = 0, *ff = first_fail, rc;
#define STEP(expr)                                                                                 \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc && !*ff)                                                                            \
            *ff = rc;                                                                              \
    } while (0)
    STEP(txm_begin(&o, c, NULL));
    STEP(ins(c, 1));
    STEP(txm_begin(&n1, c, NULL));
    STEP(ins(c, 2));
    STEP(txm_rollback(n1));
    STEP(txm_begin(&n2, c, NULL));
    STEP(ins(c, 3));
    STEP(txm_commit(n2));
    STEP(ins(c, 4));
    STEP(txm_commit(o));
    if (*first_fail)
        ff = &later; /* the first transaction failed already: its aftermath is not the fault */
    STEP(txm_begin(&r, c, NULL));
    STEP(ins(c, 5));
    STEP(txm_rollback(r));
#undef STEP
    return *first_fail;
}

/* `want` lists the ids the first transaction leaves committed (0-terminated): a fault in a
 * nested level loses that level's rows only. */
static void nomem_at(const char *at, const int *want)
{
    char spec[64];
    txm_conn *c;
    int first = 0, nwant = 0;
    int64_t rows;
    snprintf(spec, sizeof spec, "fault=nomem&fault_at=%s", at);
    c = fopen_spec(spec);
    scenario(c, &first);
    cr_assert_eq(txm_fault_count(c), 1ul, "%s: the fault did not fire", spec);
    cr_assert_eq(first, TXM_ENOMEM, "%s: first failure %s (%s)", spec, txm_err_name(first), txm_error_last()->message);
    cr_assert_eq(txm_depth(c), 0, "%s: levels left open", spec);
    rows = count_rows();
    for (; want[nwant]; nwant++)
        cr_assert_eq(count_id(want[nwant]), 1, "%s: id %d missing", spec, want[nwant]);
    cr_assert_eq(rows, nwant, "%s: %lld rows committed, expected %d", spec, (long long)rows, nwant);
    /* The connection is in a defined state: a new transaction works and commits alone. */
    {
        txm_tx *t;
        OK(txm_begin(&t, c, NULL));
        OK(ins(c, 100));
        OK(txm_commit(t));
        cr_assert_eq(count_rows(), rows + 1, "%s: the next transaction committed %lld rows instead of 1", spec,
                     (long long)(count_rows() - rows));
    }
    txm_close(c);
}

static const int none[] = {0}, all3[] = {1, 3, 4, 0};
Test(fault, nomem_at_begin) { nomem_at("begin", none); }
Test(fault, nomem_at_statement_1) { nomem_at("1", none); }
Test(fault, nomem_at_statement_3) { nomem_at("3", (const int[]){1, 4, 0}); } /* in the 2nd nested level */
Test(fault, nomem_at_savepoint) { nomem_at("savepoint", all3); }            /* the 1st nested level fails */
Test(fault, nomem_at_rollback_to_op) { nomem_at("rollback_to", none); }
Test(fault, nomem_at_release_op) { nomem_at("release", none); }
Test(fault, nomem_at_commit) { nomem_at("commit", none); }
/* ROLLBACK: failed_rollback_never_commits_the_work_later (the connection must be reconnected). */

/* ---- the driver itself ---------------------------------------------------------------------- */

Test(fault, transparent_without_faults)
{
    txm_conn *c = fopen_spec(NULL);
    txm_tx *t;
    cr_assert_str_eq(txm_driver_name(c), txm_driver_name(plain), "the wrapper reports the inner driver's name");
    cr_assert_eq(txm_capabilities(c), txm_capabilities(plain));
    OK(txm_begin(&t, c, NULL));
    OK(ins(c, 1));
    OK(txm_commit(t));
    cr_assert_eq(count_rows(), 1);
    cr_assert_eq(txm_fault_count(c), 0ul);
    OK(txm_fault_set(c, "fault=deadlock&fault_at=1"));
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EDEADLOCK, ins(c, 2));
    OK(txm_rollback(t));
    OK(txm_fault_set(c, NULL));
    OK(ins(c, 3));
    cr_assert_eq(count_rows(), 2);
    cr_assert_eq(txm_fault_count(c), 1ul);
    txm_close(c);
}

Test(fault, skip_and_times)
{
    /* The 2nd and 3rd COMMITs fail; the 1st and 4th succeed. */
    txm_conn *c = fopen_spec("fault=deadlock&fault_at=commit&fault_skip=1&fault_times=2");
    int i, want[4] = {0, TXM_EDEADLOCK, TXM_EDEADLOCK, 0};
    for (i = 0; i < 4; i++) {
        txm_tx *t;
        OK(txm_begin(&t, c, NULL));
        OK(ins(c, 10 + i));
        RC(want[i], txm_commit(t));
    }
    cr_assert_eq(count_rows(), 2);
    cr_assert_eq(count_id(10) + count_id(13), 2);
    txm_close(c);
}

Test(fault, errors_look_like_the_engines)
{
    txm_conn *c = fopen_spec("fault=deadlock&fault_at=1");
    txm_tx *t;
    const txm_error *e;
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EDEADLOCK, ins(c, 1));
    e = txm_error_last();
    if (is("postgresql"))
        cr_assert_str_eq(e->sqlstate, "40P01");
    else if (is("mysql"))
        cr_assert_eq(e->native_code, 1213);
    else
        cr_assert_eq(e->native_code, 5); /* SQLITE_BUSY */
    cr_assert(strstr(e->message, "injected by the fault driver") && strstr(e->message, "fault=deadlock"),
              "message: %s", e->message);
    OK(txm_rollback(t));
    txm_close(c);
}

Test(fault, bad_specs_are_refused)
{
    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"fault=bogus&fault_at=1", "fault='bogus'"},
        {"fault=deadlock", "needs fault_at"},
        {"fault=deadlock&fault_at=0", "fault_at='0'"},
        {"fault=deadlock&fault_at=commmit", "fault_at='commmit'"},
        {"fault=deadlock&fault_at=1&fault_tims=2", "fault_tims"},
        {"fault=deadlock&fault_at=1&fault_times=0", "fault_times='0'"},
        {"fault=commit_unknown&fault_at=2", "COMMIT only"},
        {"fault_at=2", "no fault="},
        {"fault=deadlock&f%61ult_at=1", "plainly"},
    };
    size_t i;
    char url[2300];
    txm_conn *c = NULL;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(url, sizeof url, "fault+%s%s%s", inner, strchr(inner, '?') ? "&" : "?", bad[i].spec);
        RC(TXM_EINVALID, txm_open(&c, url, NULL));
        cr_assert_null(c);
        cr_assert(strstr(txm_error_last()->message, bad[i].needle), "%s: message '%s' lacks '%s'", bad[i].spec,
                  txm_error_last()->message, bad[i].needle);
        cr_assert(!strstr(txm_error_last()->message, "txm-secret"), "password in message: %s",
                  txm_error_last()->message);
    }
    snprintf(url, sizeof url, "fault+fault+%s", inner);
    RC(TXM_ENOTFOUND, txm_open(&c, url, NULL));
    RC(TXM_EINVALID, txm_fault_set(plain, "fault=deadlock&fault_at=1"));
    c = fopen_spec(NULL);
    RC(TXM_EINVALID, txm_fault_set(c, "fault=deadlock"));
    RC(TXM_EINVALID, txm_fault_set(c, "garbage"));
    RC(TXM_EINVALID, txm_fault_set(NULL, NULL));
    cr_assert_eq(txm_fault_count(NULL), 0ul);
    cr_assert_eq(txm_fault_count(plain), 0ul);
    txm_close(c);
}

/* A ROLLBACK that never reached the server (here: out of memory before it was sent) leaves the
 * server transaction open. The work of that transaction must never be committed later: before the
 * fix the next txm_begin's BEGIN ran inside it (PostgreSQL: a warning; MySQL/MariaDB: an implicit
 * COMMIT of the "rolled back" rows; SQLite: "cannot start a transaction within a transaction").
 * Now the connection is marked unusable until txm_reconnect (which ends the session) or close. */
Test(fault, failed_rollback_never_commits_the_work_later)
{
    txm_conn *c = fopen_spec("fault=nomem&fault_at=rollback");
    txm_tx *t;
    counters k = {0};
    int rc;
    OK(txm_begin(&t, c, NULL));
    hooks(c, &k);
    OK(ins(c, 5));
    (void)txm_rollback(t);
    cr_assert_eq(txm_fault_count(c), 1ul);
    cr_assert_eq(k.rollback_runs, 1);
    cr_assert_eq(txm_depth(c), 0);
    /* Whatever the application does next, row 5 is never committed. */
    rc = txm_begin(&t, c, NULL);
    if (rc == 0) {
        rc = ins(c, 100);
        if (rc == 0)
            rc = txm_commit(t);
        else
            (void)txm_rollback(t);
    }
    cr_assert_neq(rc, 0, "a new transaction ran on a connection whose ROLLBACK failed");
    cr_assert_eq(rc, TXM_ECONNECTION, "%s (%s)", txm_err_name(rc), txm_error_last()->message);
    rc = txm_reconnect(c);
    if (rc == TXM_ENOTSUPPORTED) { /* SQLite: closing ends the transaction */
        txm_close(c);
        c = fopen_spec(NULL);
    } else {
        OK(rc);
    }
    cr_assert_eq(count_id(5), 0, "the rolled-back row was committed");
    OK(txm_begin(&t, c, NULL));
    OK(ins(c, 100));
    OK(txm_commit(t));
    cr_assert_eq(count_rows(), 1);
    cr_assert_eq(count_id(5), 0, "the rolled-back row was committed");
    txm_close(c);
}

/* ---- adversarial ---------------------------------------------------------------------------- */

#include "internal.h" /* txm__alloc_fail_after */
#include <pthread.h>
#include <stdatomic.h>

/* Every allocation of open + a faulted transaction + reconnect + close fails in turn: no crash, no
 * leak (LeakSanitizer in the sanitizer tree), TXM_ENOMEM where it surfaces. */
Test(fault, allocation_sweep_over_a_fault_connection)
{
    char url[2300];
    unsigned long n, used = 0;
    snprintf(url, sizeof url, "fault+%s%sfault=disconnect&fault_at=2", inner, strchr(inner, '?') ? "&" : "?");
    for (n = 1; n < 2000; n++) {
        txm_conn *c = NULL;
        txm_tx *t = NULL;
        unsigned long before = txm__alloc_count();
        int rc;
        txm__alloc_fail_after(n, false);
        rc = txm_open(&c, url, NULL);
        if (rc == 0) {
            if (txm_begin(&t, c, NULL) == 0) {
                (void)ins(c, 1);
                (void)ins(c, 2);
                (void)txm_rollback(t);
            }
            (void)txm_reconnect(c);
            txm_close(c);
        } else {
            cr_assert_null(c);
            cr_assert(rc == TXM_ENOMEM || rc == TXM_ECONNECTION, "open with allocation %lu failing: %s: %s", n,
                      txm_err_name(rc), txm_error_last()->message);
        }
        used = txm__alloc_count() - before;
        txm__alloc_fail_after(0, false);
        if (used < n)
            break; /* the failure point lay beyond everything the run allocated: swept */
    }
    cr_assert_lt(n, 2000ul, "the sweep did not finish");
    fprintf(stderr, "[%s] allocation sweep: %lu failure points, %lu allocations per run\n", engine, n - 1, used);
    cr_assert_eq(count_id(1), 0);
}

static void *open_close(void *arg)
{
    txm_conn *c = NULL;
    int rc = txm_open(&c, "fault+sqlite::memory:", NULL);
    *(int *)arg = rc == 0 && strcmp(txm_driver_name(c), "sqlite") == 0 ? 0 : 1;
    txm_close(c);
    return NULL;
}

/* The first txm_open of a fault+ scheme from many threads at once builds one wrapper. */
Test(fault, concurrent_first_open)
{
    pthread_t th[8];
    int res[8], i;
    if (!is("sqlite")) {
        fprintf(stderr, "[SKIP] concurrent_first_open: server-free, runs in the sqlite instance\n");
        cr_skip_test("server-free test: runs in the sqlite instance");
    }
    for (i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, open_close, &res[i]), 0);
    for (i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(res[i], 0, "thread %d could not open a fault connection", i);
    }
}

typedef struct canceller {
    txm_conn *c;
    atomic_int stop;
    atomic_ulong calls;
} canceller;

static void *cancel_loop(void *arg)
{
    canceller *k = arg;
    while (!atomic_load(&k->stop)) {
        (void)txm_cancel(k->c);
        atomic_fetch_add(&k->calls, 1);
        usleep(200);
    }
    return NULL;
}

/* txm_cancel from another thread while the fault driver closes and reopens the inner connection
 * (injected losses + txm_reconnect): no crash, no use-after-free (ASan), no data race (TSan). */
Test(fault, cancel_races_injected_loss)
{
    txm_conn *c = fopen_spec("fault=disconnect&fault_at=2&fault_times=always");
    canceller k;
    pthread_t th;
    int i, losses = 0;
    if (!(txm_capabilities(c) & TXM_CAP_CANCEL)) {
        fprintf(stderr, "[SKIP] %s: the driver cannot cancel\n", engine);
        txm_close(c);
        cr_skip_test("the driver cannot cancel");
    }
    k.c = c;
    atomic_init(&k.stop, 0);
    atomic_init(&k.calls, 0);
    cr_assert_eq(pthread_create(&th, NULL, cancel_loop, &k), 0);
    /* At least 40 rounds, and on until the injected loss has happened: a cancel that lands on the
     * first statement poisons the level, so the second never reaches the driver (under TSan on a
     * busy machine that can be every one of the first 40 rounds). */
    for (i = 0; i < 40 || (txm_fault_count(c) == 0 && i < 20000); i++) {
        txm_tx *t;
        if (txm_begin(&t, c, NULL) == 0) {
            (void)ins(c, 1000 + i);
            losses += ins(c, 2000 + i) == TXM_ECONNECTION;
            (void)txm_rollback(t);
        }
        (void)txm_reconnect(c);
    }
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    fprintf(stderr, "[%s] cancel race: %d injected losses, %lu txm_cancel calls\n", engine, losses,
            atomic_load(&k.calls));
    cr_assert_gt(txm_fault_count(c), 0ul);
    cr_assert_eq(count_rows(), 0, "rolled-back rows were committed");
    txm_close(c);
}
