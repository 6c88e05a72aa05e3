/*
 * The PostgreSQL driver's prepared-statement cache (docs/driver-postgresql.md, "Prepared
 * statements"): what the server holds is read from the session's own pg_prepared_statements, so
 * every assertion is about the server's state and the results, never about timings. Covers: a
 * repeated statement and the control statements prepared once; the URL switch and size; bounded
 * LRU eviction with DEALLOCATE; 0A000 after an ALTER TABLE changes a result type (re-run alone
 * outside a transaction, reported and the transaction aborted inside one, fresh afterwards);
 * hostile statement texts; DEALLOCATE ALL and a DEALLOCATE of txm's own name by the application;
 * a batch preparing and using a statement in one flight; nothing prepared in an aborted
 * transaction; reconnect; two connections in two threads; allocation failure. Tables: pgsc_*.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "txm.h"
#include "txm_check.h"

#define NEED_PG() NEED_URL("TXM_TEST_PG_URL", "scripts/pg-server.sh")

static const char *pg_url(void) { return getenv("TXM_TEST_PG_URL"); }

/* The test URL with `param` added (the test URL may already carry a query). */
static txm_conn *open_with(const char *param)
{
    char url[1200];
    const char *u = pg_url();
    if (!param)
        return check_open(u, NULL);
    snprintf(url, sizeof url, "%s%c%s", u, strchr(u, '?') ? '&' : '?', param);
    return check_open(url, NULL);
}

/* How many prepared statements of this session have exactly this text. */
static int64_t prepared(txm_conn *c, const char *text)
{
    int64_t v = -1;
    txm_value p = txm_text(text);
    OK(txm_query_i64(c, &v, "SELECT count(*) FROM pg_prepared_statements WHERE statement = ?", &p, 1));
    return v;
}

/* How many prepared statements this session holds in all. */
static int64_t prepared_total(txm_conn *c)
{
    int64_t v = -1;
    OK(txm_query_i64(c, &v, "SELECT count(*) FROM pg_prepared_statements", NULL, 0));
    return v;
}

static int64_t q_p(txm_conn *c, const char *sql, int64_t p)
{
    int64_t v = -1;
    txm_value pv = txm_int(p);
    OK(txm_query_i64(c, &v, sql, &pv, 1));
    return v;
}

/* Each test has tables of its own (Criterion runs tests in parallel). */
static char items[64], items_insert[128], items_insert_pg[128];

static void insert_tx(txm_conn *c, int64_t v)
{
    txm_tx *t;
    txm_value p = txm_int(v);
    OK(txm_begin(&t, c, NULL));
    OK(txm_exec(c, items_insert, &p, 1, NULL));
    OK(txm_commit(t));
}

static int64_t items_q(txm_conn *c, const char *what)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s", what, items);
    return q1(c, sql);
}

static void items_table(txm_conn *c, const char *name)
{
    char sql[200];
    snprintf(items, sizeof items, "%s", name);
    snprintf(items_insert, sizeof items_insert, "INSERT INTO %s(v) VALUES (?)", name);
    snprintf(items_insert_pg, sizeof items_insert_pg, "INSERT INTO %s(v) VALUES ($1)", name);
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", name);
    x(c, sql);
    snprintf(sql, sizeof sql, "CREATE TABLE %s(id bigserial PRIMARY KEY, v bigint NOT NULL)", name);
    x(c, sql);
}

Test(pg_cache, repeated_statement_and_control_statements_are_prepared_once)
{
    txm_conn *c;
    int i;
    NEED_PG();
    c = open_with(NULL);
    items_table(c, "pgsc_items_rep");
    for (i = 0; i < 5; i++)
        insert_tx(c, i);
    cr_assert_eq(items_q(c, "count(*)"), 5);
    cr_assert_eq(items_q(c, "sum(v)"), 0 + 1 + 2 + 3 + 4);
    /* The text as the driver sends it ($1), each once, under txm's names. */
    cr_assert_eq(prepared(c, items_insert_pg), 1, "the INSERT is prepared once");
    cr_assert_eq(prepared(c, "BEGIN"), 1);
    cr_assert_eq(prepared(c, "COMMIT"), 1);
    cr_assert_eq(prepared(c, "SELECT pg_current_xact_id_if_assigned()"), 1,
                 "the transaction-id query in front of COMMIT is prepared too");
    cr_assert_eq(q1(c, "SELECT count(*) FROM pg_prepared_statements WHERE name NOT LIKE 'txm\\_%'"), 0);
    txm_close(c);
}

Test(pg_cache, off_in_the_url_prepares_nothing_and_bad_values_are_refused)
{
    txm_conn *c;
    int i;
    static const char *const bad[] = {"txm_statement_cache=lots", "txm_statement_cache=-1",
                                      "txm_statement_cache=4097", "txm_statement_cache=", "txm_statement_cache=1e3"};
    NEED_PG();
    c = open_with("txm_statement_cache=off");
    items_table(c, "pgsc_items_off");
    for (i = 0; i < 5; i++)
        insert_tx(c, i);
    cr_assert_eq(items_q(c, "count(*)"), 5);
    cr_assert_eq(prepared_total(c), 0, "with the cache off nothing is prepared (PgBouncer before 1.21)");
    txm_close(c);
    c = open_with("txm_statement_cache=0");
    for (i = 0; i < 3; i++)
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 1", i), i + 1);
    cr_assert_eq(prepared_total(c), 0);
    txm_close(c);
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        char url[1200];
        txm_conn *b = NULL;
        snprintf(url, sizeof url, "%s%c%s", pg_url(), strchr(pg_url(), '?') ? '&' : '?', bad[i]);
        RC(TXM_EINVALID, txm_open(&b, url, NULL));
        cr_assert_null(b);
        cr_assert(strstr(txm_error_last()->message, "txm_statement_cache") != NULL, "%s",
                  txm_error_last()->message);
        cr_assert(strstr(txm_error_last()->message, "txm-secret") == NULL);
    }
}

Test(pg_cache, eviction_is_bounded_and_deallocates_the_server_copy)
{
    txm_conn *c;
    char sql[64], text[64];
    int k, r;
    NEED_PG();
    c = open_with("txm_statement_cache=4");
    for (k = 0; k < 12; k++) {
        snprintf(sql, sizeof sql, "SELECT ?::int8 + %d", k);
        for (r = 0; r < 3; r++)
            cr_assert_eq(q_p(c, sql, r), r + k, "statement %d gives its own answer", k);
    }
    /* 4 entries at most; one more can wait for its DEALLOCATE (the counting query's own entry
     * evicts one, deallocated in the next flight). */
    cr_assert_leq(prepared_total(c), 5);
    cr_assert_leq(prepared_total(c), 4, "the pending DEALLOCATE went with the next flight");
    cr_assert_eq(prepared(c, "SELECT $1::int8 + 0"), 0, "the least recently used statement was deallocated");
    snprintf(text, sizeof text, "SELECT $1::int8 + %d", 11);
    cr_assert_eq(prepared(c, text), 1, "the most recent one stays");
    /* An evicted statement comes back and gives the right answer. */
    for (r = 0; r < 3; r++)
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 0", r), r);
    cr_assert_eq(prepared(c, "SELECT $1::int8 + 0"), 1);
    txm_close(c);
}

static void stale_table(txm_conn *c, const char *t)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", t);
    x(c, sql);
    snprintf(sql, sizeof sql, "CREATE TABLE %s(a int)", t);
    x(c, sql);
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (7)", t);
    x(c, sql);
}

static size_t columns_of(txm_conn *c, const char *sql, int *rc)
{
    txm_rows *rows = NULL;
    size_t n = 0;
    *rc = txm_query(&rows, c, sql, NULL, 0);
    if (*rc == 0) {
        n = txm_rows_columns(rows);
        txm_rows_free(rows);
    }
    return n;
}

Test(pg_cache, stale_plan_after_alter_table_is_rerun_outside_a_transaction)
{
    txm_conn *c, *other;
    int rc, i;
    NEED_PG();
    c = open_with(NULL);
    other = open_with(NULL);
    stale_table(c, "pgsc_stale1");
    for (i = 0; i < 3; i++)
        cr_assert_eq(columns_of(c, "SELECT * FROM pgsc_stale1", &rc), 1);
    cr_assert_eq(prepared(c, "SELECT * FROM pgsc_stale1"), 1);
    /* Another session changes the result type under the prepared statement. */
    x(other, "ALTER TABLE pgsc_stale1 ADD COLUMN b text DEFAULT 'x'");
    cr_assert_eq(columns_of(c, "SELECT * FROM pgsc_stale1", &rc), 2, "rc %s: %s", txm_err_name(rc),
                 txm_error_last()->message);
    OK(rc);
    x(other, "ALTER TABLE pgsc_stale1 ALTER COLUMN a TYPE text");
    {
        txm_rows *rows = NULL;
        OK(txm_query(&rows, c, "SELECT * FROM pgsc_stale1", NULL, 0));
        cr_assert_eq(txm_rows_next(rows), 1);
        cr_assert_eq(txm_rows_type(rows, 0), TXM_T_TEXT, "the new column type reaches the application");
        txm_rows_free(rows);
    }
    /* Prepared afresh on the next use, and the stale copy is gone from the server. */
    cr_assert_eq(columns_of(c, "SELECT * FROM pgsc_stale1", &rc), 2);
    cr_assert_eq(prepared(c, "SELECT * FROM pgsc_stale1"), 1);
    txm_close(other);
    txm_close(c);
}

Test(pg_cache, stale_plan_inside_a_transaction_aborts_it_and_the_next_attempt_succeeds)
{
    txm_conn *c, *other;
    txm_tx *t;
    int rc, i;
    NEED_PG();
    c = open_with(NULL);
    other = open_with(NULL);
    stale_table(c, "pgsc_stale2");
    for (i = 0; i < 3; i++) {
        OK(txm_begin(&t, c, NULL));
        cr_assert_eq(columns_of(c, "SELECT * FROM pgsc_stale2", &rc), 1);
        OK(txm_commit(t));
    }
    cr_assert_eq(prepared(c, "SELECT * FROM pgsc_stale2"), 1);
    x(other, "ALTER TABLE pgsc_stale2 ADD COLUMN b int DEFAULT 1");
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgsc_stale2(a) VALUES (8)");
    columns_of(c, "SELECT * FROM pgsc_stale2", &rc);
    cr_assert_eq(rc, TXM_ERROR, "got %s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert_str_eq(txm_error_last()->sqlstate, "0A000");
    /* The server aborted the transaction: its INSERT must not commit. */
    cr_assert_neq(txm_commit(t), 0);
    cr_assert_eq(txm_depth(c), 0);
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgsc_stale2"), 1, "the aborted transaction's INSERT is gone");
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgsc_stale2(a) VALUES (9)");
    cr_assert_eq(columns_of(c, "SELECT * FROM pgsc_stale2", &rc), 2);
    OK(rc);
    OK(txm_commit(t));
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgsc_stale2"), 2);
    txm_close(other);
    txm_close(c);
}

static atomic_int cache_warnings;
static void cache_log(txm_log_level level, const char *msg, void *p)
{
    (void)p;
    if (level == TXM_LOG_WARN && strstr(msg, "txm_statement_cache=off") && !strstr(msg, "txm-secret"))
        atomic_fetch_add(&cache_warnings, 1);
}

Test(pg_cache, hostile_texts_never_hit_another_entry)
{
    txm_conn *c;
    txm_open_options o;
    char *big;
    size_t bigsz = 70000, o_len;
    int r;
    NEED_PG();
    OK(txm_open_options_init(&o, TXM_OPEN_OPTIONS_VERSION));
    o.log = cache_log;
    o.log_level = TXM_LOG_WARN;
    c = check_open(pg_url(), &o);
    for (r = 0; r < 3; r++) {
        /* Texts that differ in their last byte, or only in a literal. */
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 1", r), r + 1);
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 2", r), r + 2);
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 1 -- txm_", r), r + 1);
        cr_assert_eq(q1(c, "SELECT 'txm_00000000_1'::text IS NOT NULL AND 1 = 1"), 1);
    }
    /* The same text with parameters of other types: entries of their own (types are fixed). */
    {
        txm_value vals[3] = {txm_int(5), txm_text("6"), txm_null()};
        for (r = 0; r < 3; r++) {
            int64_t v = -2;
            int is_null = 0;
            OK(txm_query_i64_or_null(c, &v, &is_null, "SELECT ?::int8", &vals[r], 1));
            cr_assert_eq(is_null, r == 2);
            if (r < 2)
                cr_assert_eq(v, 5 + r);
        }
        for (r = 0; r < 3; r++) {
            int64_t v = -2;
            int is_null = 0;
            OK(txm_query_i64_or_null(c, &v, &is_null, "SELECT ?::int8", &vals[r], 1));
            cr_assert_eq(is_null, r == 2);
        }
    }
    /* A text longer than the cache keeps runs unnamed, and right. */
    big = malloc(bigsz + 64);
    cr_assert_not_null(big);
    o_len = (size_t)snprintf(big, bigsz, "SELECT ?::int8 + 3 /*");
    memset(big + o_len, 'x', bigsz - o_len);
    memcpy(big + bigsz, "*/", 3);
    for (r = 0; r < 3; r++)
        cr_assert_eq(q_p(c, big, r), r + 3);
    free(big);
    cr_assert_eq(q1(c, "SELECT count(*) FROM pg_prepared_statements WHERE length(statement) > 65536"), 0);
    /* The application drops every prepared statement: the cache forgets them, nothing fails. */
    x(c, "DEALLOCATE ALL");
    for (r = 0; r < 3; r++)
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 1", r), r + 1);
    cr_assert_eq(prepared(c, "SELECT $1::int8 + 1"), 1, "prepared afresh after DEALLOCATE ALL");
    /* The application drops one of txm's names: the next use runs it again, right. */
    {
        txm_rows *rows = NULL;
        char name[80], sql[120];
        txm_value p = txm_text("SELECT $1::int8 + 1");
        OK(txm_query(&rows, c, "SELECT name FROM pg_prepared_statements WHERE statement = ?", &p, 1));
        cr_assert_eq(txm_rows_next(rows), 1);
        snprintf(name, sizeof name, "%s", txm_rows_get_text(rows, 0, NULL));
        txm_rows_free(rows);
        snprintf(sql, sizeof sql, "DEALLOCATE %s", name);
        x(c, sql);
        /* What a transaction pooler that lends another server session looks like: the driver
         * runs the statement again unnamed, warns, and prepares nothing more on this connection. */
        atomic_store(&cache_warnings, 0);
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 1", 40), 41);
        cr_assert_eq(atomic_load(&cache_warnings), 1, "one warning naming txm_statement_cache=off");
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 1", 41), 42);
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 7", 1), 8);
        cr_assert_eq(q_p(c, "SELECT ?::int8 + 7", 2), 9);
        cr_assert_eq(prepared_total(c), 0, "the cache is off for this connection");
    }
    txm_close(c);
}

Test(pg_cache, batch_prepares_and_uses_a_statement_in_one_flight)
{
    txm_conn *c;
    txm_batch_stmt st[6];
    txm_value v[6];
    txm_stats s0, s1;
    int i;
    NEED_PG();
    c = open_with(NULL);
    items_table(c, "pgsc_items_batch");
    memset(st, 0, sizeof st);
    for (i = 0; i < 6; i++) {
        v[i] = txm_int(i + 1);
        st[i].sql = items_insert;
        st[i].params = &v[i];
        st[i].nparams = 1;
    }
    txm_stats_get(c, &s0);
    OK(txm_batch(c, st, 6, NULL));
    txm_stats_get(c, &s1);
    cr_assert_eq(s1.round_trips - s0.round_trips, 1, "one flight");
    cr_assert_eq(items_q(c, "sum(v)"), 21);
    cr_assert_eq(prepared(c, items_insert_pg), 1, "prepared inside the batch's flight");
    /* A batch whose second statement fails: the Parse of a later one is skipped, nothing stale. */
    st[1].sql = "INSERT INTO pgsc_items_batch(v) VALUES (NULL + ?)";
    RC(TXM_ENOT_NULL, txm_batch(c, st, 6, NULL));
    cr_assert_eq(items_q(c, "sum(v)"), 21, "all or nothing");
    st[1].sql = st[0].sql;
    OK(txm_batch(c, st, 6, NULL));
    cr_assert_eq(items_q(c, "sum(v)"), 42);
    txm_close(c);
}

Test(pg_cache, nothing_is_prepared_in_an_aborted_transaction)
{
    txm_conn *c;
    txm_tx *t;
    int i;
    NEED_PG();
    c = open_with(NULL);
    for (i = 0; i < 4; i++) {
        OK(txm_begin(&t, c, NULL));
        RC(TXM_EDATA, txm_exec(c, "SELECT 1 / 0", NULL, 0, NULL));
        OK(txm_rollback(t)); /* ROLLBACK of an aborted transaction, on the server */
    }
    cr_assert_eq(prepared(c, "ROLLBACK"), 0, "never prepared while the transaction was aborted");
    for (i = 0; i < 3; i++) {
        OK(txm_begin(&t, c, NULL));
        x(c, "SELECT 1");
        OK(txm_rollback(t));
    }
    cr_assert_eq(prepared(c, "ROLLBACK"), 1, "prepared once used in a live transaction");
    /* The prepared ROLLBACK also ends an aborted transaction. */
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EDATA, txm_exec(c, "SELECT 1 / 0", NULL, 0, NULL));
    OK(txm_rollback(t));
    cr_assert_eq(q1(c, "SELECT 1"), 1);
    txm_close(c);
}

Test(pg_cache, reconnect_empties_the_cache)
{
    txm_conn *c, *k;
    int64_t pid;
    int i;
    NEED_PG();
    c = open_with(NULL);
    k = open_with(NULL);
    items_table(c, "pgsc_items_reconn");
    for (i = 0; i < 3; i++)
        insert_tx(c, i);
    cr_assert_eq(prepared(c, items_insert_pg), 1);
    pid = q1(c, "SELECT pg_backend_pid()");
    cr_assert_eq(q_p(k, "SELECT pg_terminate_backend(?::int)::int", pid), 1);
    for (i = 0; i < 2000 && q_p(k, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid) > 0; i++) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_neq(txm_exec(c, "SELECT 1", NULL, 0, NULL), 0);
    OK(txm_reconnect(c));
    /* Every cached name died with the old session: nothing may Bind one of them. */
    for (i = 3; i < 6; i++)
        insert_tx(c, i);
    cr_assert_eq(items_q(c, "count(*)"), 6);
    cr_assert_eq(prepared(c, items_insert_pg), 1, "prepared again in the new session");
    txm_close(k);
    txm_close(c);
}

typedef struct worker {
    int id;
    int64_t sum;
    int rc;
} worker;

/* Each thread: its own connection with a 3-entry cache (evictions all the time), transactions
 * with a nested level, statements that differ per iteration and per thread. */
static void *work(void *p)
{
    worker *w = p;
    txm_conn *c = NULL;
    char url[1200];
    int i;
    snprintf(url, sizeof url, "%s%ctxm_statement_cache=3", pg_url(), strchr(pg_url(), '?') ? '&' : '?');
    if ((w->rc = txm_open(&c, url, NULL)))
        return NULL;
    for (i = 0; i < 150 && !w->rc; i++) {
        txm_tx *t, *n;
        char sql[96];
        txm_value v[2] = {txm_int(w->id), txm_int(i)};
        int64_t got = -1;
        snprintf(sql, sizeof sql, "INSERT INTO pgsc_threads(w, v) VALUES (?, ? + %d)", i % 5);
        if ((w->rc = txm_begin(&t, c, NULL)))
            break;
        if (!(w->rc = txm_exec(c, sql, v, 2, NULL)) && !(w->rc = txm_begin(&n, c, NULL))) {
            if (!(w->rc = txm_query_i64(c, &got, "SELECT ?::int8 * 2", &v[1], 1)) && got != 2 * i)
                w->rc = -1;
            if (!w->rc)
                w->rc = txm_commit(n);
        }
        if (!w->rc)
            w->rc = txm_commit(t);
        else
            txm_rollback(t);
        w->sum += i + i % 5;
    }
    txm_close(c);
    return NULL;
}

Test(pg_cache, two_connections_in_two_threads)
{
    txm_conn *c;
    pthread_t th[2];
    worker w[2];
    int i;
    NEED_PG();
    c = open_with(NULL);
    x(c, "DROP TABLE IF EXISTS pgsc_threads");
    x(c, "CREATE TABLE pgsc_threads(w int NOT NULL, v bigint NOT NULL)");
    for (i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i + 1;
        cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(w[i].rc, 0, "thread %d: %s", i, txm_err_name(w[i].rc));
        cr_assert_eq(q_p(c, "SELECT count(*) FROM pgsc_threads WHERE w = ?", i + 1), 150);
        cr_assert_eq(q_p(c, "SELECT sum(v) FROM pgsc_threads WHERE w = ?", i + 1), w[i].sum);
    }
    txm_close(c);
}

/* Every allocation the cache makes may fail: the statement then runs unnamed and right. */
Test(pg_cache, allocation_failure_runs_the_statement_unnamed)
{
    txm_conn *c;
    unsigned long k;
    int64_t expect = 0;
    NEED_PG();
    c = open_with(NULL);
    items_table(c, "pgsc_items_alloc");
    for (k = 1; k <= 40; k++) {
        int rc;
        txm_value p = txm_int((int64_t)k);
        txm__alloc_fail_after(k, false);
        rc = txm_exec(c, items_insert, &p, 1, NULL);
        txm__alloc_fail_after(0, false);
        if (rc == 0)
            expect += (int64_t)k;
        else
            cr_assert_eq(rc, TXM_ENOMEM, "k=%lu: %s", k, txm_err_name(rc));
    }
    cr_assert_eq(items_q(c, "coalesce(sum(v), 0)"), expect,
                 "what succeeded was inserted, nothing else");
    insert_tx(c, 1000);
    insert_tx(c, 1000);
    cr_assert_eq(prepared(c, items_insert_pg), 1, "the cache works once memory is back");
    txm_close(c);
}

/* A session terminated while idle, with a DEALLOCATE pending: its FATAL answers the cleanup
 * segment at the front of the next flight, before any op of the run. A batch carrying its own
 * BEGIN and COMMIT must report the connection lost (nothing ran; retryable), never "commit outcome
 * unknown" for a transaction that certainly did not run. */
Test(pg_cache, session_killed_with_a_deallocate_pending_is_a_lost_connection_not_an_unknown_commit)
{
    txm_conn *c, *k;
    txm_batch_stmt st;
    txm_value v = txm_int(7);
    int64_t pid;
    int i, r, rc;
    char sql[64];
    NEED_PG();
    c = open_with("txm_statement_cache=2");
    k = open_with(NULL);
    items_table(c, "pgsc_items_killdealloc");
    /* Three statements, each prepared on its second use, in a 2-entry cache. */
    for (i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "SELECT ?::int8 + %d", i);
        for (r = 0; r < 2; r++)
            cr_assert_eq(q_p(c, sql, r), r + i);
    }
    /* The last flight before the kill: this new text's entry evicts a prepared one, whose
     * DEALLOCATE waits for the next flight. */
    pid = q1(c, "SELECT pg_backend_pid()");
    cr_assert_eq(q_p(k, "SELECT pg_terminate_backend(?::int)::int", pid), 1);
    for (i = 0; i < 2000 && q_p(k, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid) > 0; i++) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    memset(&st, 0, sizeof st);
    st.sql = items_insert;
    st.params = &v;
    st.nparams = 1;
    rc = txm_batch(c, &st, 1, NULL);
    cr_assert_eq(rc, TXM_ECONNECTION, "got %s: %s", txm_err_name(rc), txm_error_last()->message);
    OK(txm_reconnect(c));
    cr_assert_eq(items_q(c, "count(*)"), 0, "nothing ran");
    txm_close(k);
    txm_close(c);
}

/* 0A000 and 26000 raised by what a cached statement does (here a function) are the statement's
 * own errors: reported once, never taken for a stale server copy and re-run (the function's
 * non-transactional work, a sequence step, would happen twice). */
Test(pg_cache, a_statement_raising_0a000_or_26000_itself_is_not_rerun)
{
    txm_conn *c;
    int rc, i;
    static const char *const codes[] = {"0A000", "26000"};
    NEED_PG();
    c = open_with(NULL);
    x(c, "DROP SEQUENCE IF EXISTS pgsc_rerun_seq");
    x(c, "CREATE SEQUENCE pgsc_rerun_seq");
    x(c, "CREATE OR REPLACE FUNCTION pgsc_rerun_fn(code text) RETURNS int LANGUAGE plpgsql AS $$ "
         "BEGIN PERFORM nextval('pgsc_rerun_seq'); RAISE EXCEPTION 'raised by the function' USING ERRCODE = code; "
         "END $$");
    for (i = 0; i < 6; i++) {
        txm_value p = txm_text(codes[i % 2]);
        int64_t before = q1(c, "SELECT last_value + CASE WHEN is_called THEN 0 ELSE -1 END FROM pgsc_rerun_seq");
        int64_t v = 0;
        rc = txm_query_i64(c, &v, "SELECT pgsc_rerun_fn(?)", &p, 1);
        cr_assert_neq(rc, 0);
        cr_assert_str_eq(txm_error_last()->sqlstate, codes[i % 2]);
        cr_assert_eq(q1(c, "SELECT last_value + CASE WHEN is_called THEN 0 ELSE -1 END FROM pgsc_rerun_seq"),
                     before + 1, "execution %d ran the function once", i);
    }
    cr_assert_eq(prepared(c, "SELECT pgsc_rerun_fn($1)"), 1, "the entry stays: the server's copy was fine");
    txm_close(c);
}
