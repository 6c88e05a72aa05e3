/* txm_batch: all-or-nothing statements in one driver run (docs/semantics.md, "Batches"). At depth 0
 * the batch is its own transaction (BEGIN, statements, COMMIT in one flight on pipelining
 * drivers); inside a transaction it is a savepoint level whose failure undoes only the batch. */
#include "harness.h"

#include <pthread.h>

#define NSTMT(a) (sizeof(a) / sizeof((a)[0]))

static txm_batch_stmt stmt(const char *sql, const txm_value *params, size_t n)
{
    txm_batch_stmt s;
    memset(&s, 0, sizeof s);
    s.sql = sql;
    s.params = params;
    s.nparams = n;
    s.affected = 12345; /* txm_batch must overwrite it */
    s.status = 12345;
    return s;
}

static const char *ins_item = "INSERT INTO t_item (id, name) VALUES (?, ?)";
static const char *ins_uniq = "INSERT INTO t_uniq (id, code) VALUES (?, ?)";

Test(batch, all_succeed_rows_and_affected, .init = conf_init, .fini = conf_fini)
{
    txm_value p1[2] = {txm_int(1), txm_text("one")};
    txm_value p2[2] = {txm_int(2), txm_text("two")};
    txm_value p3[1] = {txm_int(100)};
    txm_rows *rows = (txm_rows *)&rows; /* garbage on entry: txm_batch must set it */
    /* A query whose rows are discarded may sit anywhere: its result set is read and dropped. */
    txm_batch_stmt s[5] = {stmt(ins_item, p1, 2), stmt("SELECT id, name FROM t_item", NULL, 0),
                           stmt(ins_item, p2, 2), stmt("UPDATE t_counter SET n = n + 1 WHERE n = ?", p3, 1),
                           stmt("SELECT id, name FROM t_item ORDER BY id", NULL, 0)};
    s[4].rows_out = &rows;
    CONF_OK(txm_batch(conf.c, s, NSTMT(s), NULL));
    for (size_t i = 0; i < NSTMT(s); i++)
        cr_assert(s[i].status == 0, "statement %zu: status %s", i, txm_err_name(s[i].status));
    cr_assert(s[0].affected == 1 && s[2].affected == 1, "affected %lld %lld", (long long)s[0].affected,
              (long long)s[2].affected);
    cr_assert(s[3].affected == 2, "UPDATE of both counters: affected %lld", (long long)s[3].affected);
    cr_assert(s[4].affected == 2, "rows_out statement: affected = rows returned, got %lld", (long long)s[4].affected);
    cr_assert(rows != NULL && txm_rows_count(rows) == 2);
    cr_assert(txm_rows_next(rows) && txm_rows_get_i64(rows, 0) == 1);
    cr_assert_str_eq(txm_rows_get_text(rows, 1, NULL), "one");
    cr_assert(txm_rows_next(rows) && txm_rows_get_i64(rows, 0) == 2);
    cr_assert_str_eq(txm_rows_get_text(rows, 1, NULL), "two");
    txm_rows_free(rows);
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 2 && conf_counter(conf.c, 1) == 101);
}

Test(batch, failure_in_the_middle_persists_nothing, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_uniq(conf.c, 1, "taken"));
    txm_value p1[2] = {txm_int(10), txm_text("a")};
    txm_value p2[2] = {txm_int(11), txm_text("taken")};
    txm_value p3[2] = {txm_int(12), txm_text("c")};
    txm_rows *rows = NULL;
    txm_batch_stmt s[4] = {stmt(ins_item, p1, 2), stmt("SELECT id FROM t_item", NULL, 0), stmt(ins_uniq, p2, 2),
                           stmt(ins_item, p3, 2)};
    s[1].rows_out = &rows;
    CONF_RC(TXM_EUNIQUE, txm_batch(conf.c, s, NSTMT(s), NULL));
    conf_err e = conf_last_err();
    cr_assert(e.code == TXM_EUNIQUE);
    cr_assert(conf_contains(e.message, "txm_batch: statement 3 of 4"), "message: %s", e.message);
    conf_assert_unique_names("uq_t_uniq_code", "t_uniq", "code"); /* the engine's fields are intact */
    cr_assert(s[0].status == 0 && s[1].status == 0, "statuses %d %d", s[0].status, s[1].status);
    cr_assert(s[2].status == TXM_EUNIQUE, "failing statement status %s", txm_err_name(s[2].status));
    cr_assert(s[3].status == TXM_ECANCELED, "statement after it: %s", txm_err_name(s[3].status));
    cr_assert(s[3].affected == -1);
    cr_assert(rows == NULL, "rows_out must be NULL unless the whole batch succeeded");
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0, "the batch's first INSERT must have been rolled back");
    cr_assert(conf_count(conf.c, "t_uniq") == 1);
    /* The connection is usable: a batch and a plain statement go through. */
    txm_batch_stmt ok[1] = {stmt(ins_item, p3, 2)};
    CONF_OK(txm_batch(conf.c, ok, 1, NULL));
    CONF_OK(conf_item(conf.c, 13));
    cr_assert(conf_count(conf.c, "t_item") == 2);
}

Test(batch, depth_zero_is_one_round_trip_with_pipeline, .init = conf_init, .fini = conf_fini)
{
    txm_value p1[2] = {txm_int(1), txm_text("a")};
    txm_value p2[2] = {txm_int(2), txm_text("b")};
    txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(ins_item, p2, 2)};
    txm_stats before = conf_stats(conf.c);
    CONF_OK(txm_batch(conf.c, s, 2, NULL));
    txm_stats d = conf_delta(conf.c, &before);
    conf_print_stats("batch of 2 inserts at depth 0", &d);
    cr_assert(d.begins == 1 && d.commits == 1 && d.statements == 2 && d.rollbacks == 0);
    if (conf_has_cap(TXM_CAP_PIPELINE) && !conf_is("sqlite"))
        cr_assert(d.round_trips == 1, "BEGIN, 2 statements and COMMIT must travel in one flight; got %llu round trips",
                  (unsigned long long)d.round_trips);
    else
        cr_assert(d.round_trips >= 1);
    cr_assert(conf_count(conf.c, "t_item") == 2);

    /* A failing batch: the run, then one ROLLBACK. */
    CONF_OK(conf_uniq(conf.c, 1, "x"));
    txm_value q[2] = {txm_int(2), txm_text("x")};
    txm_batch_stmt f[2] = {stmt(ins_item, (txm_value[]){txm_int(3), txm_text("c")}, 2), stmt(ins_uniq, q, 2)};
    before = conf_stats(conf.c);
    CONF_RC(TXM_EUNIQUE, txm_batch(conf.c, f, 2, NULL));
    d = conf_delta(conf.c, &before);
    conf_print_stats("failing batch of 2 at depth 0", &d);
    cr_assert(d.commits == 0 && d.rollbacks == 1);
    if (conf_has_cap(TXM_CAP_PIPELINE) && !conf_is("sqlite"))
        cr_assert(d.round_trips == 2, "the batch's flight and the ROLLBACK: got %llu", (unsigned long long)d.round_trips);
}

Test(batch, nested_failure_undoes_only_the_batch, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_uniq(conf.c, 1, "taken"));
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_value p1[2] = {txm_int(2), txm_text("b")};
    txm_value p2[2] = {txm_int(3), txm_text("taken")};
    txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(ins_uniq, p2, 2)};
    txm_batch_options o = TXM_BATCH_OPTIONS_INIT;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    o.retry = &pol; /* ignored inside a transaction */
    txm_stats before = conf_stats(conf.c);
    CONF_RC(TXM_EUNIQUE, txm_batch(conf.c, s, 2, &o));
    txm_stats d = conf_delta(conf.c, &before);
    conf_print_stats("failing nested batch", &d);
    cr_assert(d.savepoints == 1 && d.rollbacks_to == 1 && d.retries == 0 && d.rollbacks == 0);
    cr_assert(s[0].status == 0 && s[1].status == TXM_EUNIQUE);
    cr_assert(!(txm_error_last()->flags & TXM_ERRF_TX_LOST));
    cr_assert(txm_depth(conf.c) == 1, "the caller's transaction goes on");
    CONF_OK(conf_item(conf.c, 4)); /* not poisoned */
    /* A successful nested batch: its SAVEPOINT travels with the statements. */
    txm_value p3[2] = {txm_int(5), txm_text("e")};
    txm_batch_stmt ok[1] = {stmt(ins_item, p3, 2)};
    before = conf_stats(conf.c);
    CONF_OK(txm_batch(conf.c, ok, 1, NULL));
    d = conf_delta(conf.c, &before);
    cr_assert(d.savepoints == 1 && d.commits == 0);
    if (conf_has_cap(TXM_CAP_PIPELINE) && !conf_is("sqlite"))
        cr_assert(d.round_trips == 1, "nested batch: got %llu round trips", (unsigned long long)d.round_trips);
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 3, "items 1, 4, 5 committed");
    cr_assert(conf_count_id(conf.c, "t_item", 2) == 0, "the failed batch's insert must be undone");
    cr_assert(conf_count_id(conf.c, "t_item", 5) == 1);
}

Test(batch, poisoned_level_refuses_without_round_trip, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_uniq(conf.c, 1, "taken"));
    txm_tx *t = conf_begin(conf.c);
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "taken"));
    txm_value p1[2] = {txm_int(1), txm_text("a")};
    txm_batch_stmt s[1] = {stmt(ins_item, p1, 2)};
    txm_stats before = conf_stats(conf.c);
    CONF_RC(TXM_ETX_ABORTED, txm_batch(conf.c, s, 1, NULL));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.round_trips == 0 && d.refused == 1, "round trips %llu refused %llu", (unsigned long long)d.round_trips,
              (unsigned long long)d.refused);
    cr_assert(txm_error_last()->cause && txm_error_last()->cause->code == TXM_EUNIQUE);
    cr_assert(s[0].status == TXM_ECANCELED);
    cr_assert(txm_depth(conf.c) == 1);
    CONF_RC(TXM_ETX_ABORTED, txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

Test(batch, control_sql_refused_before_anything_is_sent, .init = conf_init, .fini = conf_fini)
{
    static const char *const control[] = {"COMMIT", "  rollback", "SAVEPOINT x", "BEGIN", "START TRANSACTION",
                                          "RELEASE SAVEPOINT x"};
    txm_value p1[2] = {txm_int(1), txm_text("a")};
    for (size_t i = 0; i < NSTMT(control); i++) {
        txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(control[i], NULL, 0)};
        txm_stats before = conf_stats(conf.c);
        CONF_RC(TXM_EMISUSE, txm_batch(conf.c, s, 2, NULL));
        txm_stats d = conf_delta(conf.c, &before);
        cr_assert(d.round_trips == 0, "%s: nothing may be sent", control[i]);
        cr_assert(conf_contains(txm_error_last()->message, "statement 2 of 2"), "%s", txm_error_last()->message);
        cr_assert(s[0].status == TXM_ECANCELED && s[1].status == TXM_EMISUSE);
    }
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

Test(batch, bad_arguments, .init = conf_init, .fini = conf_fini)
{
    txm_value p1[2] = {txm_int(1), txm_text("a")};
    txm_batch_stmt s[1] = {stmt(ins_item, p1, 2)};
    txm_batch_options o = TXM_BATCH_OPTIONS_INIT;
    txm_stats before = conf_stats(conf.c);
    CONF_OK(txm_batch(conf.c, NULL, 0, NULL)); /* n == 0: a no-op */
    CONF_OK(txm_batch(conf.c, s, 0, NULL));
    cr_assert(conf_delta(conf.c, &before).round_trips == 0);
    CONF_RC(TXM_EINVALID, txm_batch(NULL, s, 1, NULL));
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, NULL, 1, NULL));
    cr_assert(conf_contains(txm_error_last()->message, "txm_batch"));
    o.version = 99;
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, s, 1, &o));
    cr_assert(conf_contains(txm_error_last()->message, "version"));
    CONF_RC(TXM_EINVALID, txm_batch_options_init(NULL, TXM_BATCH_OPTIONS_VERSION));
    CONF_RC(TXM_EINVALID, txm_batch_options_init(&o, 99));
    CONF_OK(txm_batch_options_init(&o, TXM_BATCH_OPTIONS_VERSION));
    txm_retry_policy bad = TXM_RETRY_POLICY_INIT;
    bad.version = 7;
    o.retry = &bad;
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, s, 1, &o));
    txm_tx_options badtx = TXM_TX_OPTIONS_INIT;
    badtx.version = 9;
    o.retry = NULL;
    o.tx = &badtx;
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, s, 1, &o));
    /* Statement-level problems name the statement. */
    txm_batch_stmt nulls[2] = {stmt(ins_item, p1, 2), stmt(NULL, NULL, 0)};
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, nulls, 2, NULL));
    cr_assert(conf_contains(txm_error_last()->message, "statement 2 of 2"), "%s", txm_error_last()->message);
    txm_batch_stmt count[1] = {stmt(ins_item, p1, 1)};
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, count, 1, NULL));
    txm_batch_stmt noparams[1] = {stmt(ins_item, NULL, 2)};
    CONF_RC(TXM_EINVALID, txm_batch(conf.c, noparams, 1, NULL));
    cr_assert(conf_delta(conf.c, &before).round_trips == 0, "refused batches send nothing");
    cr_assert(txm_depth(conf.c) == 0 && conf_count(conf.c, "t_item") == 0);
}

Test(batch, hostile_parameter_values_stored_verbatim, .init = conf_init, .fini = conf_fini)
{
    static const char *const hostile[] = {"'); DROP TABLE t_item; --", "\\'; DELETE FROM t_item; #", "\"`$1?",
                                          "x'' OR ''1''=''1"};
    txm_value p[NSTMT(hostile)][2];
    txm_batch_stmt s[NSTMT(hostile)];
    for (size_t i = 0; i < NSTMT(hostile); i++) {
        p[i][0] = txm_int((int64_t)i + 1);
        p[i][1] = txm_text(hostile[i]);
        s[i] = stmt(ins_item, p[i], 2);
    }
    CONF_OK(txm_batch(conf.c, s, NSTMT(s), NULL));
    for (size_t i = 0; i < NSTMT(hostile); i++) {
        txm_rows *r = NULL;
        txm_value id = txm_int((int64_t)i + 1);
        CONF_OK(txm_query(&r, conf.c, "SELECT name FROM t_item WHERE id = ?", &id, 1));
        cr_assert(txm_rows_next(r));
        cr_assert_str_eq(txm_rows_get_text(r, 0, NULL), hostile[i]);
        txm_rows_free(r);
    }
    cr_assert(conf_count(conf.c, "t_item") == (int64_t)NSTMT(hostile));
}

Test(batch, under_test_baseline_failure_keeps_baseline, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    CONF_OK(conf_uniq(conf.c, 1, "taken"));
    txm_value p1[2] = {txm_int(1), txm_text("a")};
    txm_value p2[2] = {txm_int(2), txm_text("taken")};
    txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(ins_uniq, p2, 2)};
    CONF_RC(TXM_EUNIQUE, txm_batch(conf.c, s, 2, NULL));
    cr_assert(txm_depth(conf.c) == 0);
    txm_batch_stmt ok[1] = {stmt(ins_item, p1, 2)};
    CONF_OK(txm_batch(conf.c, ok, 1, NULL));
    cr_assert(conf_count(conf.c, "t_item") == 1 && conf_count(conf.c, "t_uniq") == 1);
    CONF_OK(txm_test_end(conf.c));
    cr_assert(conf_count(conf.c, "t_item") == 0 && conf_count(conf.c, "t_uniq") == 0, "the baseline undoes it all");
}

/* The fault driver loses the connection right after the batch's COMMIT executed. */
Test(batch, commit_unknown_reported_as_such, .init = conf_init_shared, .fini = conf_fini)
{
    char url[2300];
    int n = snprintf(url, sizeof url, "%s%s%cfault=commit_unknown&fault_at=commit",
                     strncmp(conf.url, "fault+", 6) == 0 ? "" : "fault+", conf.url, strchr(conf.url, '?') ? '&' : '?');
    cr_assert(n > 0 && (size_t)n < sizeof url);
    txm_conn *f = NULL;
    CONF_OK(txm_open(&f, url, NULL));
    txm_value p1[2] = {txm_int(1), txm_text("a")};
    txm_value p2[2] = {txm_int(2), txm_text("b")};
    txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(ins_item, p2, 2)};
    CONF_RC(TXM_ECOMMIT_UNKNOWN, txm_batch(f, s, 2, NULL));
    cr_assert(conf_contains(txm_error_last()->message, "COMMIT"), "%s", txm_error_last()->message);
    cr_assert(s[0].status == 0 && s[1].status == 0, "both statements ran; only the COMMIT's answer was lost");
    cr_assert(txm_depth(f) == 0);
    if (txm_capabilities(f) & TXM_CAP_RESOLVE_OUTCOME) {
        txm_outcome out;
        CONF_OK(txm_resolve_outcome(f, &out));
        cr_assert(out == TXM_OUTCOME_COMMITTED);
    }
    cr_assert(conf_count(conf.c, "t_item") == 2, "the COMMIT really happened");
    txm_close(f);
}

/* ---- retry: two batches locking two rows in opposite orders ---- */
typedef struct bl_side {
    txm_conn *c;
    int64_t first, second, amount;
    pthread_barrier_t *barrier;
    int rc;
    uint64_t retries;
    char message[256];
} bl_side;

static void *bl_thread(void *payload)
{
    bl_side *s = payload;
    /* The sleep between the two updates keeps both first row locks held while the other batch
     * reaches for its second row. */
    const char *sleep_sql = conf_is("postgresql") ? "SELECT pg_sleep(0.3)" : "SELECT SLEEP(0.3)";
    txm_value a[2] = {txm_int(s->amount), txm_int(s->first)}, b[2] = {txm_int(s->amount), txm_int(s->second)};
    txm_batch_stmt st[3] = {stmt("UPDATE t_counter SET n = n - ? WHERE id = ?", a, 2), stmt(sleep_sql, NULL, 0),
                            stmt("UPDATE t_counter SET n = n + ? WHERE id = ?", b, 2)};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    txm_batch_options o = TXM_BATCH_OPTIONS_INIT;
    pol.max_attempts = 6;
    pol.base_delay_us = 20000;
    o.retry = &pol;
    txm_stats before = conf_stats(s->c);
    pthread_barrier_wait(s->barrier);
    s->rc = txm_batch(s->c, st, 3, &o);
    if (s->rc)
        snprintf(s->message, sizeof s->message, "%s", txm_error_last()->message);
    s->retries = conf_delta(s->c, &before).retries;
    return NULL;
}

Test(batch, deadlocked_batch_retried_to_success, .init = conf_init_shared, .fini = conf_fini, .timeout = 120)
{
    if (conf_is_embedded())
        CONF_SKIP("%s: an embedded engine cannot deadlock (write transactions start with BEGIN IMMEDIATE)",
                  conf.driver);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    bl_side s[2] = {{0}, {0}};
    s[0].c = conf_open_other();
    s[1].c = conf_open_other();
    s[0].first = 1, s[0].second = 2, s[0].amount = 10;
    s[1].first = 2, s[1].second = 1, s[1].amount = 5;
    s[0].barrier = s[1].barrier = &barrier;
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert(pthread_create(&th[i], NULL, bl_thread, &s[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "[%s] batch deadlock side %d: rc=%s retries=%llu\n", conf.driver, i, txm_err_name(s[i].rc),
                (unsigned long long)s[i].retries);
        cr_assert(s[i].rc == 0, "side %d: %s: %s", i, txm_err_name(s[i].rc), s[i].message);
    }
    cr_assert(s[0].retries + s[1].retries >= 1, "no batch was retried: the engine did not deadlock");
    cr_assert(conf_counter(conf.c, 1) == 95 && conf_counter(conf.c, 2) == 105,
              "each batch applied exactly once: counters %lld, %lld", (long long)conf_counter(conf.c, 1),
              (long long)conf_counter(conf.c, 2));
    txm_close(s[0].c);
    txm_close(s[1].c);
}

/* ---- faults injected by the fault driver (deterministic, every engine) ---- */
static txm_conn *open_fault(const char *spec)
{
    char url[2300];
    int n = snprintf(url, sizeof url, "%s%s%c%s", strncmp(conf.url, "fault+", 6) == 0 ? "" : "fault+", conf.url,
                     strchr(conf.url, '?') ? '&' : '?', spec);
    cr_assert(n > 0 && (size_t)n < sizeof url);
    txm_conn *f = NULL;
    CONF_OK(txm_open(&f, url, NULL));
    return f;
}

Test(batch, injected_deadlock_retried_with_fresh_outputs, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *f = open_fault("fault=deadlock&fault_at=2");
    txm_value p1[2] = {txm_int(1), txm_text("a")}, p2[2] = {txm_int(2), txm_text("b")};
    txm_rows *rows = NULL;
    txm_batch_stmt s[3] = {stmt(ins_item, p1, 2), stmt(ins_item, p2, 2), stmt("SELECT id FROM t_item", NULL, 0)};
    s[2].rows_out = &rows;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    txm_batch_options o = TXM_BATCH_OPTIONS_INIT;
    pol.base_delay_us = 100;
    pol.seed = 7;
    o.retry = &pol;
    txm_stats before = conf_stats(f);
    CONF_OK(txm_batch(f, s, 3, &o)); /* attempt 1: statement 2 is the deadlock victim */
    txm_stats d = conf_delta(f, &before);
    cr_assert(d.retries == 1 && d.begins == 2 && d.commits == 1 && d.rollbacks <= 1, "retries %llu begins %llu",
              (unsigned long long)d.retries, (unsigned long long)d.begins);
    cr_assert(s[0].status == 0 && s[1].status == 0 && s[2].status == 0);
    cr_assert(rows && txm_rows_count(rows) == 2, "the result is the successful attempt's");
    txm_rows_free(rows);
    cr_assert(conf_count(conf.c, "t_item") == 2);
    txm_close(f);
}

Test(batch, injected_deadlock_without_retry_and_nested, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *f = open_fault("fault=deadlock&fault_at=2&fault_times=2");
    txm_value p1[2] = {txm_int(1), txm_text("a")}, p2[2] = {txm_int(2), txm_text("b")};
    txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(ins_item, p2, 2)};
    CONF_RC(TXM_EDEADLOCK, txm_batch(f, s, 2, NULL));
    cr_assert(s[0].status == 0 && s[1].status == TXM_EDEADLOCK);
    cr_assert(conf_contains(txm_error_last()->message, "statement 2 of 2"));
    cr_assert(txm_depth(f) == 0 && conf_count(conf.c, "t_item") == 0);
    /* Nested: a deadlock loses the caller's whole transaction, whose levels are all poisoned. */
    txm_tx *t = conf_begin(f);
    CONF_OK(conf_item(f, 10)); /* statement 3 */
    txm_batch_stmt n1[1] = {stmt(ins_item, p1, 2)}; /* statement 4: the second injection */
    CONF_RC(TXM_EDEADLOCK, txm_batch(f, n1, 1, NULL));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    cr_assert(txm_depth(f) == 1);
    CONF_RC(TXM_ETX_ABORTED, conf_item(f, 11));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 0);
    txm_close(f);
}

Test(batch, injected_disconnect_mid_batch, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *f = open_fault("fault=disconnect&fault_at=2");
    txm_value p1[2] = {txm_int(1), txm_text("a")}, p2[2] = {txm_int(2), txm_text("b")};
    txm_batch_stmt s[2] = {stmt(ins_item, p1, 2), stmt(ins_item, p2, 2)};
    CONF_RC(TXM_ECONNECTION, txm_batch(f, s, 2, NULL));
    cr_assert(s[0].status == 0 && s[1].status == TXM_ECONNECTION);
    cr_assert(txm_depth(f) == 0 && conf_count(conf.c, "t_item") == 0, "the lost transaction committed nothing");
    txm_stats before = conf_stats(f);
    CONF_RC(TXM_ECONNECTION, txm_batch(f, s, 2, NULL)); /* no silent reconnect */
    cr_assert(conf_delta(f, &before).round_trips == 0);
    CONF_OK(txm_reconnect(f));
    CONF_OK(txm_batch(f, s, 2, NULL));
    cr_assert(conf_count(conf.c, "t_item") == 2);
    txm_close(f);
}
