/*
 * PostgreSQL driver tests on a real PostgreSQL 15 server (TXM_TEST_PG_URL; every test skips with
 * the reason when it is unset). Mostly through the public API, with several connections and
 * threads; a few drive the driver vtable directly on a connection's txm_driver_conn to check what
 * the core cannot reach (25P02, COMMIT answered with ROLLBACK, pipelined batches).
 *
 * The server must run with a short deadlock_timeout (scripts/pg-server.sh sets 20ms) or the
 * deadlock tests merely take longer. Tables are named pgt_*; each test creates its own.
 */
#include <criterion/criterion.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "pg_proxy.h"
#include "txm.h"
#include "txm_check.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static const char *pg_url(void)
{
    const char *u = getenv("TXM_TEST_PG_URL");
    return u && *u ? u : NULL;
}

#define NEED_PG() NEED_URL("TXM_TEST_PG_URL", "scripts/pg-server.sh")

static txm_conn *open_url(const char *url, const txm_open_options *o) { return check_open(url, o); }
static txm_conn *open_pg(void) { return open_url(pg_url(), NULL); }

static int64_t q1p(txm_conn *c, const char *sql, int64_t p)
{
    int64_t v = 0;
    txm_value pv = txm_int(p);
    OK(txm_query_i64(c, &v, sql, &pv, 1));
    return v;
}

static uint64_t round_trips(txm_conn *c)
{
    txm_stats s;
    txm_stats_get(c, &s);
    return s.round_trips;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 20 s) until `sql` with the pid as $1 returns a non-zero count on c. */
static void wait_for(txm_conn *c, const char *sql, int64_t pid, const char *what)
{
    int i;
    for (i = 0; i < 2000; i++) {
        if (q1p(c, sql, pid) > 0)
            return;
        sleep_ms(10);
    }
    cr_assert_fail("timed out waiting for %s", what);
}

static int64_t backend_pid(txm_conn *c) { return q1(c, "SELECT pg_backend_pid()"); }
static char *setting(txm_conn *c, const char *name, char *buf, size_t size);

/* A barrier with a timeout: a thread that fails early must not hang the other forever. */
typedef struct tbar {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int waiting, parties;
} tbar;
#define TBAR_INIT(n) {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, (n)}
static void tbar_wait(tbar *b)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&b->mu);
    b->waiting++;
    pthread_cond_broadcast(&b->cv);
    while (b->waiting < b->parties) {
        if (pthread_cond_timedwait(&b->cv, &b->mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&b->mu);
}

/* Hooks that count. */
static atomic_int commit_hooks, rollback_hooks, payload_frees;
static int count_commit(txm_conn *c, void *p)
{
    (void)c;
    (void)p;
    atomic_fetch_add(&commit_hooks, 1);
    return 0;
}
static int count_rollback(txm_conn *c, void *p)
{
    (void)c;
    (void)p;
    atomic_fetch_add(&rollback_hooks, 1);
    return 0;
}
static void count_free(void *p)
{
    (void)p;
    atomic_fetch_add(&payload_frees, 1);
}
static void hooks_reset(void)
{
    atomic_store(&commit_hooks, 0);
    atomic_store(&rollback_hooks, 0);
    atomic_store(&payload_frees, 0);
}
static void add_hooks(txm_conn *c)
{
    OK(txm_on_commit(c, count_commit, NULL, count_free));
    OK(txm_on_rollback(c, count_rollback, NULL, count_free));
}

static void assert_no_secret(const char *msg, const char *secret)
{
    cr_assert(strstr(msg, secret) == NULL, "message reveals the password: %s", msg);
}

/* The test URL with its password replaced (the URL from scripts/pg-server.sh has one). */
static void url_with_password(char *out, size_t size, const char *password)
{
    const char *u = pg_url(), *a = strstr(u, "://"), *at = strrchr(u, '@'), *colon;
    cr_assert(a && at, "TXM_TEST_PG_URL must be postgresql://user:password@host:port/db");
    colon = memchr(a + 3, ':', (size_t)(at - (a + 3)));
    cr_assert(colon, "TXM_TEST_PG_URL must carry a password");
    snprintf(out, size, "%.*s%s%s", (int)(colon + 1 - u), u, password, at);
}

/* ---- connecting and errors at connect time --------------------------------------------------- */

Test(pg, wrong_password_is_auth_error_without_the_password)
{
    char url[2048];
    txm_conn *c = NULL;
    const txm_error *e;
    NEED_PG();
    url_with_password(url, sizeof url, "Wr0ng-Pa55word");
    RC(TXM_EAUTH, txm_open(&c, url, NULL));
    cr_assert_null(c);
    e = txm_error_last();
    cr_assert_str_eq(e->sqlstate, "28P01");
    assert_no_secret(e->message, "Wr0ng-Pa55word");
    cr_assert(strstr(e->message, "***") != NULL, "the URL is quoted redacted: %s", e->message);
}

Test(pg, password_in_query_parameter_is_hidden_too)
{
    char host[256], hp[300], url[2048], base[2048];
    int port;
    const char *u;
    txm_conn *c = NULL;
    NEED_PG();
    u = pg_url();
    cr_assert_eq(pg_url_host_port(u, host, sizeof host, &port), 0);
    /* postgresql://HOST:PORT/db?user=txm&password=... : no user information at all. */
    snprintf(hp, sizeof hp, "%s:%d", host, port);
    {
        const char *a = strstr(u, "://") + 3, *at = strrchr(u, '@');
        snprintf(base, sizeof base, "postgresql://%s%s", hp, strchr(at ? at : a, '/'));
    }
    cr_assert_lt(snprintf(url, sizeof url, "%s%suser=txm&password=Qu3ry%%21Secret", base,
                          strchr(base, '?') ? "&" : "?"),
                 (int)sizeof url);
    RC(TXM_EAUTH, txm_open(&c, url, NULL));
    assert_no_secret(txm_error_last()->message, "Qu3ry!Secret");
    assert_no_secret(txm_error_last()->message, "Qu3ry%21Secret");
}

Test(pg, unknown_database_is_not_found)
{
    char host[256], hp[300], url[2048];
    int port;
    txm_conn *c = NULL;
    NEED_PG();
    cr_assert_eq(pg_url_host_port(pg_url(), host, sizeof host, &port), 0);
    snprintf(hp, sizeof hp, "%s:%d", host, port);
    {
        char tmp[2048];
        const char *u = pg_url(), *slash = strchr(strrchr(u, '@') ? strrchr(u, '@') : u + 14, '/');
        snprintf(tmp, sizeof tmp, "%.*s/txm_no_such_db", (int)(slash - u), u);
        snprintf(url, sizeof url, "%s", tmp);
    }
    RC(TXM_ENOTFOUND, txm_open(&c, url, NULL));
    cr_assert_str_eq(txm_error_last()->sqlstate, "3D000");
}

Test(pg, refused_connection_is_connection_error)
{
    char url[2048];
    txm_conn *c = NULL;
    NEED_PG();
    pg_url_rewrite(pg_url(), "127.0.0.1:1", "connect_timeout=5", url, sizeof url);
    RC(TXM_ECONNECTION, txm_open(&c, url, NULL));
    cr_assert(strstr(txm_error_last()->message, "127.0.0.1:1") != NULL, "%s", txm_error_last()->message);
}

Test(pg, multi_host_url_and_target_session_attrs_reach_libpq)
{
    char host[256], hp[400], url[2048];
    int port;
    txm_conn *c = NULL;
    NEED_PG();
    cr_assert_eq(pg_url_host_port(pg_url(), host, sizeof host, &port), 0);
    /* The first host refuses; libpq moves on to the second. */
    snprintf(hp, sizeof hp, "127.0.0.1:1,%s:%d", host, port);
    pg_url_rewrite(pg_url(), hp, "target_session_attrs=read-write", url, sizeof url);
    c = open_url(url, NULL);
    cr_assert_eq(q1(c, "SELECT 1"), 1);
    txm_close(c);
    /* No host is a read-only standby: refused, and the message hides the password. */
    pg_url_rewrite(pg_url(), hp, "target_session_attrs=read-only", url, sizeof url);
    c = NULL;
    RC(TXM_ECONNECTION, txm_open(&c, url, NULL));
    assert_no_secret(txm_error_last()->message, "txm-secret");
}

Test(pg, driver_identity)
{
    txm_conn *c;
    unsigned caps;
    NEED_PG();
    c = open_pg();
    cr_assert_str_eq(txm_driver_name(c), "postgresql");
    caps = txm_capabilities(c);
    cr_assert(caps & TXM_CAP_PIPELINE);
    cr_assert(caps & TXM_CAP_ADVISORY_LOCKS);
    cr_assert(caps & TXM_CAP_SHARED_LOCKS);
    cr_assert(caps & TXM_CAP_RESOLVE_OUTCOME);
    cr_assert(caps & TXM_CAP_CANCEL);
    cr_assert(caps & TXM_CAP_RECONNECT);
    cr_assert(caps & TXM_CAP_TX_TIMEOUTS);
    cr_assert(txm_driver_find("postgres") == txm_driver_find("postgresql"));
    /* client_encoding is forced to UTF8 whatever the URL says */
    {
        txm_rows *r;
        OK(txm_query(&r, c, "SHOW client_encoding", NULL, 0));
        cr_assert(txm_rows_next(r));
        cr_assert_str_eq(txm_rows_get_text(r, 0, NULL), "UTF8");
        txm_rows_free(r);
    }
    txm_close(c);
}

/* ---- round trips ------------------------------------------------------------------------------ */

static void rt_table(txm_conn *c)
{
    x(c, "DROP TABLE IF EXISTS pgt_rt");
    x(c, "CREATE TABLE pgt_rt(id serial PRIMARY KEY, v int)");
}

/* The same shapes with the eager SAVEPOINT/RELEASE that Django and psycopg use: one PQexec per
 * statement, each a round trip. Returns the round trips. */
static int raw_eager(PGconn *pg, int levels, bool statements_in_levels)
{
    int rt = 0, i;
    PGresult *r;
    char sql[64];
#define RAW(s)                                                                                     \
    do {                                                                                           \
        r = PQexec(pg, s);                                                                         \
        cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", s, PQerrorMessage(pg));        \
        PQclear(r);                                                                                \
        rt++;                                                                                      \
    } while (0)
    RAW("BEGIN");
    RAW("INSERT INTO pgt_rt(v) VALUES (1)");
    for (i = 1; i <= levels; i++) {
        snprintf(sql, sizeof sql, "SAVEPOINT s%d", i);
        RAW(sql);
        if (statements_in_levels)
            RAW("INSERT INTO pgt_rt(v) VALUES (1)");
    }
    for (i = levels; i >= 1; i--) {
        snprintf(sql, sizeof sql, "RELEASE SAVEPOINT s%d", i);
        RAW(sql);
    }
    RAW("COMMIT");
#undef RAW
    return rt;
}

static PGconn *raw_connect(void)
{
    PGconn *pg = PQconnectdb(pg_url());
    cr_assert(PQstatus(pg) == CONNECTION_OK, "libpq: %s", PQerrorMessage(pg));
    return pg;
}

Test(pg, round_trips_single_statement_transaction_is_two)
{
    txm_conn *c;
    txm_tx *t;
    uint64_t before;
    PGconn *pg;
    int eager;
    NEED_PG();
    c = open_pg();
    rt_table(c);
    before = round_trips(c);
    OK(txm_begin(&t, c, NULL));
    cr_assert_eq(round_trips(c), before, "txm_begin sends nothing");
    x(c, "INSERT INTO pgt_rt(v) VALUES (1)");
    cr_assert_eq(round_trips(c) - before, 1, "BEGIN travels with the INSERT");
    OK(txm_commit(t));
    cr_assert_eq(round_trips(c) - before, 2);
    pg = raw_connect();
    eager = raw_eager(pg, 0, false);
    PQfinish(pg);
    printf("round trips, 1-statement transaction: txm %d, one-statement-per-round-trip libpq %d\n",
           (int)(round_trips(c) - before), eager);
    cr_assert_eq(eager, 3);
    txm_close(c);
}

Test(pg, round_trips_three_nested_levels_with_one_statement_each)
{
    txm_conn *c;
    txm_tx *t[3];
    uint64_t before;
    txm_stats s;
    PGconn *pg;
    int i, eager;
    NEED_PG();
    c = open_pg();
    rt_table(c);
    txm_stats_reset(c);
    before = round_trips(c);
    for (i = 0; i < 3; i++) {
        OK(txm_begin(&t[i], c, NULL));
        x(c, "INSERT INTO pgt_rt(v) VALUES (1)");
    }
    for (i = 2; i >= 0; i--)
        OK(txm_commit(t[i]));
    /* BEGIN+INSERT | SAVEPOINT+INSERT | SAVEPOINT+INSERT | COMMIT (RELEASEs elided) */
    cr_assert_eq(round_trips(c) - before, 4);
    txm_stats_get(c, &s);
    cr_assert_eq(s.savepoints, 2);
    cr_assert_eq(s.releases, 0, "COMMIT makes the RELEASEs redundant");
    pg = raw_connect();
    eager = raw_eager(pg, 2, true);
    PQfinish(pg);
    printf("round trips, 3 nested levels x 1 statement: txm %d, eager SAVEPOINT/RELEASE %d\n",
           (int)(round_trips(c) - before), eager);
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_rt"), 3 + 3);
    cr_assert_eq(eager, 9);
    txm_close(c);
}

Test(pg, round_trips_empty_nested_levels_cost_nothing)
{
    txm_conn *c;
    txm_tx *outer, *t[5];
    uint64_t before;
    txm_stats s;
    PGconn *pg;
    int i, eager;
    NEED_PG();
    c = open_pg();
    rt_table(c);
    txm_stats_reset(c);
    before = round_trips(c);
    OK(txm_begin(&outer, c, NULL));
    x(c, "INSERT INTO pgt_rt(v) VALUES (1)");
    for (i = 0; i < 5; i++)
        OK(txm_begin(&t[i], c, NULL));
    for (i = 4; i >= 0; i--)
        OK(txm_commit(t[i]));
    /* and empty levels rolled back */
    for (i = 0; i < 5; i++)
        OK(txm_begin(&t[i], c, NULL));
    for (i = 4; i >= 0; i--)
        OK(txm_rollback(t[i]));
    OK(txm_commit(outer));
    cr_assert_eq(round_trips(c) - before, 2);
    txm_stats_get(c, &s);
    cr_assert_eq(s.savepoints + s.releases + s.rollbacks_to, 0);
    pg = raw_connect();
    eager = raw_eager(pg, 5, false);
    PQfinish(pg);
    printf("round trips, 1 statement + 5 empty nested levels: txm %d, eager SAVEPOINT/RELEASE %d\n",
           (int)(round_trips(c) - before), eager);
    cr_assert_eq(eager, 13);
    txm_close(c);
}

/* ---- driver vtable directly ------------------------------------------------------------------ */

static txm_op stmt_op(const char *sql)
{
    txm_op op;
    memset(&op, 0, sizeof op);
    op.kind = TXM_OP_STATEMENT;
    op.sql = sql;
    op.sql_len = strlen(sql);
    op.affected = -1;
    return op;
}
static txm_op ctl(txm_op_kind k, const txm_tx_options *tx)
{
    txm_op op;
    memset(&op, 0, sizeof op);
    op.kind = k;
    op.tx = tx;
    op.affected = -1;
    return op;
}

Test(pg, driver_25P02_and_commit_answered_rollback_is_a_failed_commit)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    const txm_driver *d;
    txm_conn *c;
    txm_op ops[2];
    txm_run_result res;
    int rc;
    NEED_PG();
    d = txm_driver_find("postgresql");
    cr_assert_not_null(d);
    c = open_pg(); /* a real driver connection; driven below without the core's state machine */

    ops[0] = ctl(TXM_OP_BEGIN, &def);
    ops[1] = stmt_op("SELECT 1/0");
    memset(&res, 0, sizeof res);
    rc = d->run(c->dc, ops, 2, &res);
    cr_assert_eq(rc, TXM_EDATA, "%s", txm_error_last()->message);
    cr_assert_str_eq(txm_error_last()->sqlstate, "22012");
    cr_assert_eq(res.completed, 1);
    cr_assert_eq(res.round_trips, 1);
    cr_assert_eq(d->tx_status(c->dc), TXM_TXS_FAILED);

    /* A statement in the aborted transaction: the server's 25P02. */
    ops[0] = stmt_op("SELECT 1");
    memset(&res, 0, sizeof res);
    rc = d->run(c->dc, ops, 1, &res);
    cr_assert_eq(rc, TXM_ETX_ABORTED, "%s", txm_error_last()->message);
    cr_assert_str_eq(txm_error_last()->sqlstate, "25P02");
    cr_assert_eq(res.completed, 0);

    /* COMMIT of the aborted transaction: PostgreSQL answers "ROLLBACK"; never a success. */
    ops[0] = ctl(TXM_OP_COMMIT, NULL);
    memset(&res, 0, sizeof res);
    rc = d->run(c->dc, ops, 1, &res);
    cr_assert_eq(rc, TXM_ETX_ABORTED, "COMMIT answered ROLLBACK must fail: %s", txm_err_name(rc));
    cr_assert_str_eq(txm_error_last()->sqlstate, "25P02");
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    cr_assert_eq(d->tx_status(c->dc), TXM_TXS_IDLE);
    txm_close(c);
}

Test(pg, driver_batch_is_one_flight_and_stops_at_the_failure)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    const txm_driver *d;
    txm_conn *c;
    txm_op ops[6];
    txm_run_result res;
    int rc;
    NEED_PG();
    d = txm_driver_find("postgresql");
    c = open_pg();
    x(c, "DROP SEQUENCE IF EXISTS pgt_seq");
    x(c, "CREATE SEQUENCE pgt_seq");
    /* Sequences are not transactional: they show which statements really ran. */
    ops[0] = ctl(TXM_OP_BEGIN, &def);
    ops[1] = stmt_op("SELECT nextval('pgt_seq')");
    ops[2] = ctl(TXM_OP_SAVEPOINT, NULL);
    ops[2].level = 1;
    ops[3] = stmt_op("SELECT * FROM pgt_no_such_table");
    ops[4] = stmt_op("SELECT nextval('pgt_seq')");
    ops[5] = stmt_op("SELECT nextval('pgt_seq')");
    memset(&res, 0, sizeof res);
    rc = d->run(c->dc, ops, 6, &res);
    cr_assert_eq(rc, TXM_ESYNTAX);
    cr_assert_str_eq(txm_error_last()->sqlstate, "42P01");
    cr_assert_eq(res.completed, 3);
    cr_assert_eq(res.round_trips, 1, "six ops, one flight");
    ops[0] = ctl(TXM_OP_ROLLBACK, NULL);
    memset(&res, 0, sizeof res);
    OK(d->run(c->dc, ops, 1, &res));
    cr_assert_eq(q1(c, "SELECT nextval('pgt_seq')"), 2, "ops after the failure were not executed");
    txm_close(c);
}

/* ---- poisoning ----------------------------------------------------------------------------- */

Test(pg, aborted_transaction_refuses_without_round_trip_and_keeps_the_cause)
{
    txm_conn *c;
    txm_tx *t;
    uint64_t rt;
    const txm_error *e;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_u");
    x(c, "CREATE TABLE pgt_u(id int PRIMARY KEY)");
    x(c, "INSERT INTO pgt_u VALUES (1)");
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgt_u VALUES (1)", NULL, 0, NULL));
    rt = round_trips(c);
    RC(TXM_ETX_ABORTED, txm_exec(c, "SELECT 1", NULL, 0, NULL));
    cr_assert_eq(round_trips(c), rt, "refused without contacting the server");
    e = txm_error_last();
    cr_assert_not_null(e->cause);
    cr_assert_eq(e->cause->code, TXM_EUNIQUE);
    cr_assert_str_eq(e->cause->sqlstate, "23505");
    cr_assert_str_eq(e->cause->constraint_name, "pgt_u_pkey");
    RC(TXM_ETX_ABORTED, txm_commit(t));
    cr_assert_eq(txm_depth(c), 0);
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_u"), 1);
    txm_close(c);
}

Test(pg, failed_nested_level_rolls_back_to_its_savepoint_only)
{
    txm_conn *c;
    txm_tx *t, *n;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_u");
    x(c, "CREATE TABLE pgt_u(id int PRIMARY KEY)");
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgt_u VALUES (1)");
    OK(txm_begin(&n, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgt_u VALUES (1)", NULL, 0, NULL));
    RC(TXM_ETX_ABORTED, txm_commit(n));
    x(c, "INSERT INTO pgt_u VALUES (2)");
    OK(txm_commit(t));
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_u"), 2);
    txm_close(c);
}

/* ---- deadlock and serialization retried ------------------------------------------------------- */

typedef struct mover {
    int from, to;
    tbar *bar;
    atomic_int done;            /* this mover's txm_retry has returned */
    const struct mover *other;
    int attempts;
    int retried[3]; /* [0] deadlock, [1] serialization, [2] other */
    char sqlstate[6];
    unsigned flags;
    int rc;
    char err[512];
    txm_isolation iso;
} mover;

static void note_retry(unsigned attempt, const txm_error *err, void *p)
{
    mover *m = p;
    (void)attempt;
    m->retried[err->code == TXM_EDEADLOCK ? 0 : err->code == TXM_ESERIALIZATION ? 1 : 2]++;
    snprintf(m->sqlstate, sizeof m->sqlstate, "%s", err->sqlstate);
    m->flags = err->flags;
}

/* Moves 10 from `from` to `to`, updating `from` first: two movers in opposite directions lock
 * the rows in opposite orders. The first attempt of each waits for the other at a barrier. */
static int move_body(txm_conn *c, void *p)
{
    mover *m = p;
    txm_value v[1];
    int64_t sum;
    int rc;
    m->attempts++;
    if (m->attempts > 1) {
        /* A retry waits for the other mover to finish. It holds no lock meanwhile: nothing has
         * been sent in this attempt yet (BEGIN is lazy). Otherwise a loaded machine can let the
         * retry re-lock its first row before the winner, woken by the victim's rollback, takes
         * it: a second, equally genuine deadlock that would make the counts below vary. */
        int i;
        for (i = 0; i < 4000 && !atomic_load(&((struct mover *)m->other)->done); i++)
            sleep_ms(5);
    }
    rc = txm_query_i64(c, &sum, "SELECT sum(n) FROM pgt_acc", NULL, 0);
    if (rc)
        return rc;
    v[0] = txm_int(m->from);
    rc = txm_exec(c, "UPDATE pgt_acc SET n = n - 10 WHERE id = ?", v, 1, NULL);
    if (rc)
        return rc;
    if (m->attempts == 1)
        tbar_wait(m->bar);
    v[0] = txm_int(m->to);
    return txm_exec(c, "UPDATE pgt_acc SET n = n + 10 WHERE id = ?", v, 1, NULL);
}

static void *mover_thread(void *p)
{
    mover *m = p;
    txm_conn *c = NULL;
    txm_tx_options to = TXM_TX_OPTIONS_INIT;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    if (txm_open(&c, pg_url(), NULL) != 0) {
        m->rc = txm_error_last()->code;
        snprintf(m->err, sizeof m->err, "%s", txm_error_last()->message);
        atomic_store(&m->done, 1);
        tbar_wait(m->bar);
        return NULL;
    }
    to.isolation = m->iso;
    pol.tx = &to;
    pol.max_attempts = 10;
    pol.base_delay_us = 1000;
    pol.before_retry = note_retry;
    pol.payload = m;
    m->rc = txm_retry(c, &pol, move_body, m);
    if (m->rc)
        snprintf(m->err, sizeof m->err, "%s", txm_error_last()->message);
    atomic_store(&m->done, 1);
    txm_close(c);
    return NULL;
}

static void acc_table(txm_conn *c)
{
    x(c, "DROP TABLE IF EXISTS pgt_acc");
    x(c, "CREATE TABLE pgt_acc(id int PRIMARY KEY, n int NOT NULL)");
    x(c, "INSERT INTO pgt_acc VALUES (1, 100), (2, 100)");
}

static void run_movers(txm_isolation iso, mover *a, mover *b)
{
    tbar bar = TBAR_INIT(2);
    pthread_t ta, tb;
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    a->from = 1, a->to = 2, a->bar = &bar, a->iso = iso, a->other = b;
    b->from = 2, b->to = 1, b->bar = &bar, b->iso = iso, b->other = a;
    pthread_create(&ta, NULL, mover_thread, a);
    pthread_create(&tb, NULL, mover_thread, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(a->rc, 0, "mover 1->2: %s: %s", txm_err_name(a->rc), a->err);
    cr_assert_eq(b->rc, 0, "mover 2->1: %s: %s", txm_err_name(b->rc), b->err);
}

Test(pg, deadlock_between_two_connections_is_retried_to_success)
{
    txm_conn *c;
    mover a, b;
    NEED_PG();
    c = open_pg();
    acc_table(c);
    run_movers(TXM_ISOLATION_READ_COMMITTED, &a, &b);
    cr_assert_eq(a.retried[0] + b.retried[0], 1,
                 "exactly one deadlock victim (40P01), retried: attempts %d/%d, deadlocks %d/%d, "
                 "serialization %d/%d, other %d/%d",
                 a.attempts, b.attempts, a.retried[0], b.retried[0], a.retried[1], b.retried[1], a.retried[2],
                 b.retried[2]);
    {
        const mover *v = a.retried[0] ? &a : &b;
        cr_assert_str_eq(v->sqlstate, "40P01");
        cr_assert(v->flags & TXM_ERRF_TX_LOST, "a deadlock loses the whole transaction");
    }
    cr_assert_eq(a.retried[1] + b.retried[1] + a.retried[2] + b.retried[2], 0, "last other error: %s",
                 a.retried[2] ? a.sqlstate : b.sqlstate);
    cr_assert_eq(a.attempts + b.attempts, 3, "attempts %d + %d", a.attempts, b.attempts);
    cr_assert_eq(q1(c, "SELECT n FROM pgt_acc WHERE id = 1"), 100, "both moves applied once");
    cr_assert_eq(q1(c, "SELECT n FROM pgt_acc WHERE id = 2"), 100);
    txm_close(c);
}

/* Write skew: each transfer reads the OTHER account (a limit check) and debits its own, crediting
 * through a pending-transfer row. Disjoint writes, overlapping reads: under SERIALIZABLE one of two
 * concurrent transfers must fail with 40001 and is retried. */
typedef struct skew {
    int mine, other;
    tbar *bar;
    txm_conn *interferer; /* deterministic variant: a second connection that commits in between */
    int attempts;
    int body_ok_on_first;
    int serialization_retries;
    char sqlstate[6];
    int rc;
    char err[512];
} skew;

static void skew_note(unsigned attempt, const txm_error *err, void *p)
{
    skew *k = p;
    (void)attempt;
    if (err->code == TXM_ESERIALIZATION)
        k->serialization_retries++;
    snprintf(k->sqlstate, sizeof k->sqlstate, "%s", err->sqlstate);
}

static int skew_transfer(txm_conn *c, int mine, int other)
{
    txm_value v[2];
    int64_t bal;
    int rc;
    v[0] = txm_int(other);
    rc = txm_query_i64(c, &bal, "SELECT n FROM pgt_acc WHERE id = ?", v, 1);
    if (rc)
        return rc;
    v[0] = txm_int(mine);
    rc = txm_exec(c, "UPDATE pgt_acc SET n = n - 10 WHERE id = ?", v, 1, NULL);
    if (rc)
        return rc;
    v[0] = txm_int(other);
    v[1] = txm_int(bal);
    return txm_exec(c, "INSERT INTO pgt_pending(acct, amount, seen) VALUES (?, 10, ?)", v, 2, NULL);
}

static int skew_body(txm_conn *c, void *p)
{
    skew *k = p;
    txm_value v[1];
    int64_t bal;
    int rc;
    k->attempts++;
    if (k->interferer && k->attempts == 1) {
        /* A reads account 2 ... */
        v[0] = txm_int(2);
        if ((rc = txm_query_i64(c, &bal, "SELECT n FROM pgt_acc WHERE id = ?", v, 1)))
            return rc;
        /* ... B reads account 1, debits account 2 (A -> B) ... */
        {
            txm_tx_options so = TXM_TX_OPTIONS_INIT;
            txm_tx *bt;
            so.isolation = TXM_ISOLATION_SERIALIZABLE;
            OK(txm_begin(&bt, k->interferer, &so));
            OK(skew_transfer(k->interferer, 2, 1));
            /* ... A debits account 1 (B -> A) ... */
            v[0] = txm_int(1);
            if ((rc = txm_exec(c, "UPDATE pgt_acc SET n = n - 10 WHERE id = ?", v, 1, NULL)))
                return rc;
            v[0] = txm_int(2);
            if ((rc = txm_exec(c, "INSERT INTO pgt_pending(acct, amount, seen) VALUES (?, 10, 0)", v, 1, NULL)))
                return rc;
            /* ... B commits first: A is now the pivot and fails at its COMMIT. */
            OK(txm_commit(bt));
        }
        k->body_ok_on_first = 1;
        return 0;
    }
    if (k->bar && k->attempts == 1) {
        v[0] = txm_int(k->other);
        if ((rc = txm_query_i64(c, &bal, "SELECT n FROM pgt_acc WHERE id = ?", v, 1)))
            return rc;
        tbar_wait(k->bar);
    }
    return skew_transfer(c, k->mine, k->other);
}

static void skew_tables(txm_conn *c)
{
    acc_table(c);
    x(c, "DROP TABLE IF EXISTS pgt_pending");
    x(c, "CREATE TABLE pgt_pending(id serial PRIMARY KEY, acct int NOT NULL, amount int NOT NULL, seen int)");
}

static int run_skew(txm_conn *c, skew *k)
{
    txm_tx_options so = TXM_TX_OPTIONS_INIT;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    so.isolation = TXM_ISOLATION_SERIALIZABLE;
    pol.tx = &so;
    pol.max_attempts = 10;
    pol.base_delay_us = 1000;
    pol.before_retry = skew_note;
    pol.payload = k;
    k->rc = txm_retry(c, &pol, skew_body, k);
    if (k->rc)
        snprintf(k->err, sizeof k->err, "%s", txm_error_last()->message);
    return k->rc;
}

static void *skew_thread(void *p)
{
    skew *k = p;
    txm_conn *c = NULL;
    if (txm_open(&c, pg_url(), NULL) != 0) {
        k->rc = txm_error_last()->code;
        tbar_wait(k->bar);
        return NULL;
    }
    run_skew(c, k);
    txm_close(c);
    return NULL;
}

Test(pg, serializable_write_skew_fails_at_commit_and_is_retried)
{
    txm_conn *a, *b;
    skew k;
    NEED_PG();
    a = open_pg();
    b = open_pg();
    skew_tables(a);
    memset(&k, 0, sizeof k);
    k.interferer = b;
    k.mine = 1;
    k.other = 2;
    cr_assert_eq(run_skew(a, &k), 0, "%s: %s", txm_err_name(k.rc), k.err);
    cr_assert_eq(k.body_ok_on_first, 1, "the first attempt's statements all succeeded ...");
    cr_assert_eq(k.serialization_retries, 1, "... and its COMMIT failed with 40001");
    cr_assert_str_eq(k.sqlstate, "40001");
    cr_assert_eq(k.attempts, 2);
    cr_assert_eq(q1(a, "SELECT n FROM pgt_acc WHERE id = 1"), 90);
    cr_assert_eq(q1(a, "SELECT n FROM pgt_acc WHERE id = 2"), 90);
    cr_assert_eq(q1(a, "SELECT sum(n) FROM pgt_acc") + q1(a, "SELECT sum(amount) FROM pgt_pending"), 200);
    cr_assert_eq(q1(a, "SELECT count(*) FROM pgt_pending"), 2);
    txm_close(a);
    txm_close(b);
}

Test(pg, serializable_write_skew_between_threads_is_retried_to_success)
{
    txm_conn *c;
    skew k1, k2;
    tbar bar = TBAR_INIT(2);
    pthread_t t1, t2;
    NEED_PG();
    c = open_pg();
    skew_tables(c);
    memset(&k1, 0, sizeof k1);
    memset(&k2, 0, sizeof k2);
    k1.mine = 1, k1.other = 2, k1.bar = &bar;
    k2.mine = 2, k2.other = 1, k2.bar = &bar;
    pthread_create(&t1, NULL, skew_thread, &k1);
    pthread_create(&t2, NULL, skew_thread, &k2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(k1.rc, 0, "%s: %s", txm_err_name(k1.rc), k1.err);
    cr_assert_eq(k2.rc, 0, "%s: %s", txm_err_name(k2.rc), k2.err);
    cr_assert_geq(k1.serialization_retries + k2.serialization_retries, 1, "one transfer hit 40001");
    cr_assert_eq(q1(c, "SELECT n FROM pgt_acc WHERE id = 1"), 90);
    cr_assert_eq(q1(c, "SELECT n FROM pgt_acc WHERE id = 2"), 90);
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_pending"), 2);
    txm_close(c);
}

/* ---- lock waits -------------------------------------------------------------------------------- */

Test(pg, lock_timeout_and_nowait_are_lock_timeout)
{
    txm_conn *a, *b;
    txm_tx *ta, *tb;
    txm_rows *r;
    NEED_PG();
    a = open_pg();
    b = open_pg();
    acc_table(a);
    OK(txm_begin(&tb, b, NULL));
    x(b, "SELECT * FROM pgt_acc WHERE id = 1 FOR UPDATE");

    x(a, "SET lock_timeout = '50ms'");
    OK(txm_begin(&ta, a, NULL));
    RC(TXM_ELOCK_TIMEOUT, txm_exec(a, "UPDATE pgt_acc SET n = 0 WHERE id = 1", NULL, 0, NULL));
    cr_assert_str_eq(txm_error_last()->sqlstate, "55P03");
    OK(txm_rollback(ta));
    x(a, "RESET lock_timeout");

    OK(txm_begin(&ta, a, NULL));
    RC(TXM_ELOCK_TIMEOUT, txm_query(&r, a, "SELECT * FROM pgt_acc WHERE id = 1 FOR UPDATE NOWAIT", NULL, 0));
    cr_assert_str_eq(txm_error_last()->sqlstate, "55P03");
    OK(txm_rollback(ta));
    OK(txm_rollback(tb));
    txm_close(a);
    txm_close(b);
}

/* ---- advisory locks -------------------------------------------------------------------------- */

static int64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3u;
    }
    return h > (uint64_t)INT64_MAX ? -(int64_t)(~h) - 1 : (int64_t)h;
}

static char *setting(txm_conn *c, const char *name, char *buf, size_t size)
{
    txm_rows *r;
    txm_value v = txm_text(name);
    OK(txm_query(&r, c, "SELECT current_setting(?)", &v, 1));
    cr_assert(txm_rows_next(r));
    snprintf(buf, size, "%s", txm_rows_get_text(r, 0, NULL));
    txm_rows_free(r);
    return buf;
}

Test(pg, advisory_locks_shared_and_exclusive_across_connections)
{
    txm_conn *a, *b;
    txm_tx *t;
    char buf[64];
    NEED_PG();
    a = open_pg();
    b = open_pg();
    /* shared + shared is fine; exclusive waits for both to go */
    OK(txm_lock(a, "import:7", TXM_LOCK_SHARED, -1));
    OK(txm_lock(b, "import:7", TXM_LOCK_SHARED, 0));
    RC(TXM_ELOCK_TIMEOUT, txm_lock(a, "import:7", TXM_LOCK_EXCLUSIVE, 0));
    OK(txm_unlock(b, "import:7", TXM_LOCK_SHARED));
    OK(txm_unlock(a, "import:7", TXM_LOCK_SHARED));
    OK(txm_lock(a, "import:7", TXM_LOCK_EXCLUSIVE, 0));
    RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "import:7", TXM_LOCK_SHARED, 0));
    /* a bounded wait: TXM_ELOCK_TIMEOUT (55P03), and lock_timeout is what it was before */
    x(b, "SET lock_timeout = '7s'");
    RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "import:7", TXM_LOCK_EXCLUSIVE, 30));
    cr_assert_str_eq(txm_error_last()->sqlstate, "55P03");
    cr_assert_str_eq(setting(b, "lock_timeout", buf, sizeof buf), "7s");
    OK(txm_unlock(a, "import:7", TXM_LOCK_EXCLUSIVE));
    OK(txm_lock(b, "import:7", TXM_LOCK_EXCLUSIVE, 30));
    cr_assert_str_eq(setting(b, "lock_timeout", buf, sizeof buf), "7s", "restored after a successful wait");
    OK(txm_unlock(b, "import:7", TXM_LOCK_EXCLUSIVE));
    /* unlocking what is not held */
    RC(TXM_ENOTFOUND, txm_unlock(b, "import:7", TXM_LOCK_EXCLUSIVE));
    cr_assert(strstr(txm_error_last()->message, "not held") != NULL);

    /* transaction scope: released by COMMIT; a timed wait inside a transaction restores the
     * transaction's own lock_timeout */
    OK(txm_begin(&t, a, NULL));
    OK(txm_lock(a, "import:7", TXM_LOCK_TX, -1));
    RC(TXM_ELOCK_TIMEOUT, txm_lock(b, "import:7", TXM_LOCK_SHARED, 0));
    x(a, "SET LOCAL lock_timeout = '3s'");
    OK(txm_lock(a, "other", TXM_LOCK_TX | TXM_LOCK_SHARED, 25));
    cr_assert_str_eq(setting(a, "lock_timeout", buf, sizeof buf), "3s");
    OK(txm_commit(t));
    OK(txm_lock(b, "import:7", TXM_LOCK_SHARED, 0));
    OK(txm_unlock(b, "import:7", TXM_LOCK_SHARED));
    cr_assert_str_eq(setting(a, "lock_timeout", buf, sizeof buf), "0");
    txm_close(a);
    txm_close(b);
}

Test(pg, advisory_lock_keys_are_documented_bigints)
{
    txm_conn *a, *b;
    txm_value v[2];
    int64_t got;
    NEED_PG();
    a = open_pg();
    b = open_pg();
    /* string keys: 64-bit FNV-1a as a signed bigint, so SQL can take the same lock */
    OK(txm_lock(a, "ledger:42", TXM_LOCK_EXCLUSIVE, -1));
    v[0] = txm_int(fnv1a64("ledger:42"));
    OK(txm_query_i64(b, &got, "SELECT pg_try_advisory_lock(?)::int", v, 1));
    cr_assert_eq(got, 0, "SQL sees the lock txm took under FNV-1a(\"ledger:42\")");
    /* "A:B" with two int32: the two-key form */
    OK(txm_lock(a, "12:-34", TXM_LOCK_EXCLUSIVE, -1));
    cr_assert_eq(q1(b, "SELECT pg_try_advisory_lock(12, -34)::int"), 0);
    /* a decimal int64: that bigint */
    OK(txm_lock(a, "-9000000000", TXM_LOCK_EXCLUSIVE, -1));
    cr_assert_eq(q1(b, "SELECT pg_try_advisory_lock(-9000000000)::int"), 0);
    {
        /* session locks die with the session (once its backend has exited) */
        int64_t pid = backend_pid(a);
        int i;
        txm_close(a);
        for (i = 0; i < 2000 && q1p(b, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid) > 0; i++)
            sleep_ms(5);
    }
    OK(txm_query_i64(b, &got, "SELECT pg_try_advisory_lock(?)::int", v, 1));
    cr_assert_eq(got, 1);
    txm_close(b);
}

/* ---- subtransaction guard ------------------------------------------------------------------- */

static atomic_int subxact_warnings;
static void warn_log(txm_log_level level, const char *msg, void *p)
{
    (void)p;
    if (level == TXM_LOG_WARN && strstr(msg, "savepoints"))
        atomic_fetch_add(&subxact_warnings, 1);
}

Test(pg, subtransaction_warning_at_48_savepoints_once_per_transaction)
{
    txm_open_options o = TXM_OPEN_OPTIONS_INIT;
    txm_conn *c;
    txm_tx *t[60];
    txm_stats s;
    int i, round;
    NEED_PG();
    o.log = warn_log;
    o.log_level = TXM_LOG_WARN;
    c = open_url(pg_url(), &o);
    for (round = 0; round < 2; round++) {
        atomic_store(&subxact_warnings, 0);
        OK(txm_begin(&t[0], c, NULL));
        x(c, "SELECT 1");
        for (i = 1; i <= 47; i++) {
            OK(txm_begin(&t[i], c, NULL));
            x(c, "SELECT 1");
        }
        cr_assert_eq(atomic_load(&subxact_warnings), 0, "47 savepoints: no warning yet");
        OK(txm_begin(&t[48], c, NULL));
        x(c, "SELECT 1");
        cr_assert_eq(atomic_load(&subxact_warnings), 1, "the 48th savepoint warns");
        for (i = 49; i <= 52; i++) {
            OK(txm_begin(&t[i], c, NULL));
            x(c, "SELECT 1");
        }
        cr_assert_eq(atomic_load(&subxact_warnings), 1, "once per transaction");
        txm_stats_get(c, &s);
        cr_assert_eq(s.tx_savepoints, 52);
        for (i = 52; i >= 0; i--)
            OK(round == 0 ? txm_commit(t[i]) : txm_rollback(t[i]));
    }
    txm_close(c);
}

/* ---- every SQLSTATE category PostgreSQL produces --------------------------------------------- */

static void cat_tables(txm_conn *c)
{
    x(c, "DROP TABLE IF EXISTS pgt_child, pgt_parent, pgt_chk, pgt_room, pgt_nn");
    x(c, "CREATE TABLE pgt_parent(id int PRIMARY KEY, code text, CONSTRAINT uq_pgt_parent_code UNIQUE (code))");
    x(c, "CREATE TABLE pgt_child(id int PRIMARY KEY, parent_id int CONSTRAINT fk_pgt_child_parent REFERENCES "
         "pgt_parent(id))");
    x(c, "CREATE TABLE pgt_chk(id int PRIMARY KEY, qty int CONSTRAINT ck_pgt_chk_qty CHECK (qty >= 0))");
    x(c, "CREATE TABLE pgt_nn(id int PRIMARY KEY, name text NOT NULL)");
    x(c, "CREATE TABLE pgt_room(id int, during int4range, CONSTRAINT ex_pgt_room EXCLUDE USING gist (during WITH &&))");
    x(c, "INSERT INTO pgt_parent VALUES (1, 'a')");
    x(c, "INSERT INTO pgt_child VALUES (1, 1)");
    x(c, "INSERT INTO pgt_room VALUES (1, int4range(1, 5))");
}

static const txm_error *expect(txm_conn *c, int code, const char *state, const char *sql)
{
    const txm_error *e;
    RC(code, txm_exec(c, sql, NULL, 0, NULL));
    e = txm_error_last();
    cr_assert_str_eq(e->sqlstate, state, "%s", sql);
    cr_assert(e->message[0], "a message for %s", sql);
    return e;
}

Test(pg, constraint_categories_carry_names)
{
    txm_conn *c;
    const txm_error *e;
    NEED_PG();
    c = open_pg();
    cat_tables(c);
    e = expect(c, TXM_EUNIQUE, "23505", "INSERT INTO pgt_parent VALUES (2, 'a')");
    cr_assert_str_eq(e->constraint_name, "uq_pgt_parent_code");
    cr_assert_str_eq(e->table_name, "pgt_parent");
    cr_assert_str_eq(e->schema_name, "public");
    cr_assert(strstr(e->detail, "(code)=(a)") != NULL, "detail: %s", e->detail);
    /* child without parent */
    e = expect(c, TXM_EFOREIGN_KEY, "23503", "INSERT INTO pgt_child VALUES (2, 99)");
    cr_assert_str_eq(e->constraint_name, "fk_pgt_child_parent");
    cr_assert_str_eq(e->table_name, "pgt_child");
    /* parent still referenced: the table named is the child's */
    e = expect(c, TXM_EFOREIGN_KEY, "23503", "DELETE FROM pgt_parent WHERE id = 1");
    cr_assert_str_eq(e->constraint_name, "fk_pgt_child_parent");
    cr_assert_str_eq(e->table_name, "pgt_child");
    e = expect(c, TXM_ENOT_NULL, "23502", "INSERT INTO pgt_nn VALUES (1, NULL)");
    cr_assert_str_eq(e->column_name, "name");
    cr_assert_str_eq(e->table_name, "pgt_nn");
    e = expect(c, TXM_ECHECK, "23514", "INSERT INTO pgt_chk VALUES (1, -1)");
    cr_assert_str_eq(e->constraint_name, "ck_pgt_chk_qty");
    e = expect(c, TXM_EEXCLUSION, "23P01", "INSERT INTO pgt_room VALUES (2, int4range(3, 8))");
    cr_assert_str_eq(e->constraint_name, "ex_pgt_room");
    cr_assert(txm_err_is_constraint(TXM_EEXCLUSION));
    txm_close(c);
}

Test(pg, statement_categories)
{
    txm_conn *c;
    txm_tx *t;
    txm_tx_options ro = TXM_TX_OPTIONS_INIT;
    NEED_PG();
    c = open_pg();
    cat_tables(c);
    expect(c, TXM_ESYNTAX, "42601", "SELEC 1");
    expect(c, TXM_ESYNTAX, "42P01", "SELECT * FROM pgt_no_such_table");
    expect(c, TXM_ESYNTAX, "42703", "SELECT no_such_column FROM pgt_parent");
    expect(c, TXM_EDATA, "22P02", "SELECT 'abc'::int");
    expect(c, TXM_EDATA, "22003", "SELECT 2147483647::int + 1");
    expect(c, TXM_EDATA, "22012", "SELECT 1 / 0");
    expect(c, TXM_EAUTH, "42501", "SELECT pg_read_file('/etc/hostname')");
    ro.flags = TXM_TX_READ_ONLY;
    OK(txm_begin(&t, c, &ro));
    expect(c, TXM_EREAD_ONLY, "25006", "INSERT INTO pgt_chk VALUES (5, 5)");
    OK(txm_rollback(t));
    x(c, "SET statement_timeout = '30ms'");
    expect(c, TXM_ECANCELED, "57014", "SELECT pg_sleep(5)");
    x(c, "RESET statement_timeout");
    cr_assert_eq(q1(c, "SELECT 1"), 1, "the connection is usable after each error");
    txm_close(c);
}

Test(pg, isolation_read_only_deferrable_reach_the_server)
{
    txm_conn *c;
    txm_tx *t;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    char buf[64];
    NEED_PG();
    c = open_pg();
    o.isolation = TXM_ISOLATION_SERIALIZABLE;
    o.flags = TXM_TX_READ_ONLY | TXM_TX_DEFERRABLE;
    OK(txm_begin(&t, c, &o));
    cr_assert_str_eq(setting(c, "transaction_isolation", buf, sizeof buf), "serializable");
    cr_assert_str_eq(setting(c, "transaction_read_only", buf, sizeof buf), "on");
    cr_assert_str_eq(setting(c, "transaction_deferrable", buf, sizeof buf), "on");
    OK(txm_commit(t));
    o.isolation = TXM_ISOLATION_REPEATABLE_READ;
    o.flags = 0;
    OK(txm_begin(&t, c, &o));
    cr_assert_str_eq(setting(c, "transaction_isolation", buf, sizeof buf), "repeatable read");
    cr_assert_str_eq(setting(c, "transaction_read_only", buf, sizeof buf), "off");
    OK(txm_commit(t));
    txm_close(c);
}

/* ---- cancel ---------------------------------------------------------------------------------- */

typedef struct canceller {
    txm_conn *victim;
    int64_t pid;
    int rc;
} canceller;

static void *cancel_thread(void *p)
{
    canceller *k = p;
    txm_conn *w = NULL;
    if (txm_open(&w, pg_url(), NULL) != 0) {
        k->rc = -1;
        return NULL;
    }
    wait_for(w, "SELECT count(*) FROM pg_stat_activity WHERE pid = ? AND wait_event = 'PgSleep'", k->pid,
             "the victim to sleep");
    k->rc = txm_cancel(k->victim);
    txm_close(w);
    return NULL;
}

Test(pg, cancel_from_another_thread_is_canceled)
{
    txm_conn *c;
    canceller k;
    pthread_t th;
    txm_tx *t;
    NEED_PG();
    c = open_pg();
    k.victim = c;
    k.pid = backend_pid(c);
    k.rc = 0;
    pthread_create(&th, NULL, cancel_thread, &k);
    OK(txm_begin(&t, c, NULL));
    RC(TXM_ECANCELED, txm_exec(c, "SELECT pg_sleep(60)", NULL, 0, NULL));
    cr_assert_str_eq(txm_error_last()->sqlstate, "57014");
    pthread_join(th, NULL);
    cr_assert_eq(k.rc, 0);
    RC(TXM_ETX_ABORTED, txm_commit(t));
    cr_assert_eq(q1(c, "SELECT 1"), 1);
    txm_close(c);
}

/* ---- deferred constraint at COMMIT ------------------------------------------------------------- */

Test(pg, deferred_fk_violation_at_commit_runs_rollback_hooks_only)
{
    txm_conn *c;
    txm_tx *t;
    const txm_error *e;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_dchild, pgt_dparent");
    x(c, "CREATE TABLE pgt_dparent(id int PRIMARY KEY)");
    x(c, "CREATE TABLE pgt_dchild(id int PRIMARY KEY, parent_id int CONSTRAINT fk_pgt_dchild_parent REFERENCES "
         "pgt_dparent(id) DEFERRABLE INITIALLY DEFERRED)");
    hooks_reset();
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgt_dchild VALUES (1, 42)"); /* accepted: checked at COMMIT */
    add_hooks(c);
    RC(TXM_EFOREIGN_KEY, txm_commit(t));
    e = txm_error_last();
    cr_assert_str_eq(e->sqlstate, "23503");
    cr_assert_str_eq(e->constraint_name, "fk_pgt_dchild_parent");
    cr_assert_str_eq(e->table_name, "pgt_dchild");
    cr_assert(strstr(e->message, "COMMIT") != NULL, "%s", e->message);
    cr_assert_eq(atomic_load(&commit_hooks), 0);
    cr_assert_eq(atomic_load(&rollback_hooks), 1);
    cr_assert_eq(atomic_load(&payload_frees), 2);
    cr_assert_eq(txm_depth(c), 0);
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_dchild"), 0);
    txm_close(c);
}

/* ---- lost connections ------------------------------------------------------------------------ */

static void terminate(int64_t pid)
{
    txm_conn *k = open_pg();
    cr_assert_eq(q1p(k, "SELECT pg_terminate_backend(?::int)::int", pid), 1);
    /* gone from pg_stat_activity = the backend has exited */
    {
        int i;
        for (i = 0; i < 2000 && q1p(k, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid) > 0; i++)
            sleep_ms(5);
    }
    txm_close(k);
}

Test(pg, terminated_backend_inside_transaction_is_connection_error_then_reconnect)
{
    txm_conn *c;
    txm_tx *t;
    const txm_error *e;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_lost");
    x(c, "CREATE TABLE pgt_lost(id int)");
    hooks_reset();
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgt_lost VALUES (1)");
    add_hooks(c);
    terminate(backend_pid(c));
    RC(TXM_ECONNECTION, txm_exec(c, "INSERT INTO pgt_lost VALUES (2)", NULL, 0, NULL));
    e = txm_error_last();
    cr_assert(e->flags & TXM_ERRF_TX_LOST);
    assert_no_secret(e->message, "txm-secret");
    /* the level is poisoned by the loss: refused locally, with the loss as the cause */
    RC(TXM_ETX_ABORTED, txm_exec(c, "SELECT 1", NULL, 0, NULL));
    cr_assert_not_null(txm_error_last()->cause);
    cr_assert_eq(txm_error_last()->cause->code, TXM_ECONNECTION);
    cr_assert_neq(txm_commit(t), 0, "a transaction on a lost connection cannot commit");
    cr_assert_eq(atomic_load(&commit_hooks), 0, "on-commit hooks never run");
    cr_assert_eq(txm_depth(c), 0);
    OK(txm_reconnect(c));
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_lost"), 0, "the server rolled the transaction back");
    x(c, "INSERT INTO pgt_lost VALUES (3)");
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_lost"), 1);
    txm_close(c);
    cr_assert_eq(atomic_load(&payload_frees), 2);
}

/* Defect 5 of issue 7: the backend dies while the transaction is idle; the FATAL that the dead
 * backend left on the socket answers the transaction-id query that precedes COMMIT in its flight,
 * so COMMIT never ran: a definite rollback (TXM_ECONNECTION, on-rollback hooks), not an unknown. */
static void assert_idle_loss_is_rollback(txm_conn *c, txm_tx *t, const char *table)
{
    char sql[128];
    txm_outcome out = TXM_OUTCOME_COMMITTED;
    const txm_error *e;
    RC(TXM_ECONNECTION, txm_commit(t));
    e = txm_error_last();
    cr_assert(e->flags & TXM_ERRF_TX_LOST);
    assert_no_secret(e->message, "txm-secret");
    cr_assert_eq(atomic_load(&commit_hooks), 0, "no on-commit hook for a transaction that did not commit");
    cr_assert_eq(atomic_load(&rollback_hooks), 1, "a definite rollback runs the on-rollback hooks");
    cr_assert_eq(atomic_load(&payload_frees), 2);
    cr_assert_eq(txm_depth(c), 0);
    RC(TXM_EMISUSE, txm_resolve_outcome(c, &out)); /* the outcome is known: nothing to resolve */
    OK(txm_reconnect(c));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    cr_assert_eq(q1(c, sql), 0, "the row is absent");
}

Test(pg, terminated_while_idle_in_transaction_then_commit_is_a_definite_rollback)
{
    txm_conn *c;
    txm_tx *t;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_idle_kill");
    x(c, "CREATE TABLE pgt_idle_kill(id int)");
    hooks_reset();
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgt_idle_kill VALUES (1)");
    add_hooks(c);
    terminate(backend_pid(c));
    assert_idle_loss_is_rollback(c, t, "pgt_idle_kill");
    x(c, "DROP TABLE pgt_idle_kill");
    txm_close(c);
}

/* idle_in_transaction_session_timeout ends the backend; with `url_suffix` "" the FATAL answers the
 * transaction-id query, with outcome tracking off it answers COMMIT itself (25P03 still proves the
 * backend was idle, so COMMIT never ran). */
static void idle_timeout_then_commit(const char *url_suffix, const char *table)
{
    char url[2048];
    txm_conn *c;
    txm_tx *t;
    txm_conn *w;
    int64_t pid;
    snprintf(url, sizeof url, "%s%s%s", pg_url(), url_suffix[0] && strchr(pg_url(), '?') ? "&" : url_suffix[0] ? "?" : "",
             url_suffix);
    c = open_url(url, NULL);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", table);
    x(c, sql);
    snprintf(sql, sizeof sql, "CREATE TABLE %s(id int)", table);
    x(c, sql);
    x(c, "SET idle_in_transaction_session_timeout = 50");
    pid = backend_pid(c);
    hooks_reset();
    OK(txm_begin(&t, c, NULL));
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (1)", table);
    x(c, sql);
    add_hooks(c);
    /* wait until the timeout has ended the backend (gone from pg_stat_activity) */
    w = open_pg();
    {
        int i;
        for (i = 0; i < 2000 && q1p(w, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid) > 0; i++)
            sleep_ms(10);
        cr_assert_eq(q1p(w, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid), 0,
                     "idle_in_transaction_session_timeout did not end the backend");
    }
    txm_close(w);
    assert_idle_loss_is_rollback(c, t, table);
    snprintf(sql, sizeof sql, "DROP TABLE %s", table);
    x(c, sql);
    txm_close(c);
}

Test(pg, idle_in_transaction_timeout_then_commit_is_a_definite_rollback)
{
    NEED_PG();
    idle_timeout_then_commit("", "pgt_idle_timeout");
}

Test(pg, idle_in_transaction_timeout_then_commit_without_outcome_tracking_is_a_definite_rollback)
{
    NEED_PG();
    idle_timeout_then_commit("txm_resolve_outcome=off", "pgt_idle_timeout_off");
}

typedef struct killer {
    int64_t pid;
} killer;

static void *kill_when_sleeping(void *p)
{
    killer *k = p;
    txm_conn *w = NULL;
    if (txm_open(&w, pg_url(), NULL) != 0)
        return NULL;
    wait_for(w, "SELECT count(*) FROM pg_stat_activity WHERE pid = ? AND wait_event = 'PgSleep'", k->pid,
             "COMMIT to reach the sleeping deferred trigger");
    txm_close(w);
    terminate(k->pid);
    return NULL;
}

Test(pg, terminated_backend_during_commit_is_commit_unknown_then_resolved_aborted)
{
    txm_conn *c;
    txm_tx *t;
    killer k;
    pthread_t th;
    txm_outcome out = TXM_OUTCOME_COMMITTED;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_slow");
    x(c, "CREATE TABLE pgt_slow(id int)");
    x(c, "CREATE OR REPLACE FUNCTION pgt_slow_trg() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$");
    x(c, "CREATE CONSTRAINT TRIGGER pgt_slow_commit AFTER INSERT ON pgt_slow DEFERRABLE INITIALLY DEFERRED "
         "FOR EACH ROW EXECUTE FUNCTION pgt_slow_trg()");
    hooks_reset();
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgt_slow VALUES (1)");
    add_hooks(c);
    k.pid = backend_pid(c);
    pthread_create(&th, NULL, kill_when_sleeping, &k);
    RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
    pthread_join(th, NULL);
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    cr_assert_eq(atomic_load(&commit_hooks) + atomic_load(&rollback_hooks), 0, "no hook runs on an unknown outcome");
    cr_assert_eq(atomic_load(&payload_frees), 2);
    OK(txm_resolve_outcome(c, &out));
    cr_assert_eq(out, TXM_OUTCOME_ABORTED, "killed inside the deferred trigger: before the commit record");
    OK(txm_reconnect(c));
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_slow"), 0);
    x(c, "DROP TABLE pgt_slow");
    txm_close(c);
}

Test(pg, connection_cut_after_the_server_committed_resolves_committed)
{
    char purl[2048];
    pg_proxy *p;
    txm_conn *c;
    txm_tx *t;
    txm_outcome out = TXM_OUTCOME_UNKNOWN;
    NEED_PG();
    p = pg_proxy_start(pg_url(), purl, sizeof purl);
    cr_assert_not_null(p);
    c = open_url(purl, NULL);
    x(c, "DROP TABLE IF EXISTS pgt_cut");
    x(c, "CREATE TABLE pgt_cut(id int)");
    RC(TXM_EMISUSE, txm_resolve_outcome(c, &out));

    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgt_cut VALUES (1)");
    pg_proxy_arm(p);
    RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
    cr_assert(pg_proxy_cut_done(p));
    OK(txm_resolve_outcome(c, &out));
    cr_assert_eq(out, TXM_OUTCOME_COMMITTED);
    OK(txm_reconnect(c));
    cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_cut"), 1);

    /* A transaction that wrote nothing has no transaction id: nothing to lose, "committed". */
    OK(txm_begin(&t, c, NULL));
    cr_assert_eq(q1(c, "SELECT 7"), 7);
    pg_proxy_arm(p);
    RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
    OK(txm_resolve_outcome(c, &out));
    cr_assert_eq(out, TXM_OUTCOME_COMMITTED);
    OK(txm_reconnect(c));

    /* READ ONLY: same answer (no id is asked for) */
    {
        txm_tx_options ro = TXM_TX_OPTIONS_INIT;
        ro.flags = TXM_TX_READ_ONLY;
        OK(txm_begin(&t, c, &ro));
        cr_assert_eq(q1(c, "SELECT count(*) FROM pgt_cut"), 1);
        pg_proxy_arm(p);
        RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
        out = TXM_OUTCOME_UNKNOWN;
        OK(txm_resolve_outcome(c, &out));
        cr_assert_eq(out, TXM_OUTCOME_COMMITTED);
        OK(txm_reconnect(c));
    }
    x(c, "DROP TABLE pgt_cut");
    txm_close(c);
    pg_proxy_stop(p);
}

Test(pg, outcome_tracking_can_be_turned_off_in_the_url)
{
    char purl[2048], url[2200];
    pg_proxy *p;
    txm_conn *c = NULL;
    txm_tx *t;
    txm_outcome out;
    NEED_PG();
    p = pg_proxy_start(pg_url(), purl, sizeof purl);
    cr_assert_not_null(p);
    /* txm_* parameters are the driver's; libpq never sees them (it would reject them) */
    snprintf(url, sizeof url, "%s&txm_resolve_outcome=off", purl);
    c = open_url(url, NULL);
    OK(txm_begin(&t, c, NULL));
    x(c, "CREATE TEMP TABLE pgt_off(i int)");
    x(c, "INSERT INTO pgt_off VALUES (1)");
    pg_proxy_arm(p);
    RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
    RC(TXM_ENOTSUPPORTED, txm_resolve_outcome(c, &out));
    cr_assert(strstr(txm_error_last()->message, "txm_resolve_outcome=off") != NULL);
    txm_close(c);
    pg_proxy_stop(p);

    /* first in the query, followed by a libpq parameter that must survive */
    {
        char host[256], hp[300];
        int port;
        char buf[64];
        cr_assert_eq(pg_url_host_port(pg_url(), host, sizeof host, &port), 0);
        snprintf(hp, sizeof hp, "%s:%d", host, port);
        pg_url_rewrite(pg_url(), hp, "txm_resolve_outcome=on&application_name=txm_url_test", url, sizeof url);
        c = open_url(url, NULL);
        cr_assert_str_eq(setting(c, "application_name", buf, sizeof buf), "txm_url_test");
        txm_close(c);
    }

    snprintf(url, sizeof url, "%s%stxm_no_such_option=1", pg_url(), strchr(pg_url(), '?') ? "&" : "?");
    c = NULL;
    RC(TXM_EINVALID, txm_open(&c, url, NULL));
    cr_assert(strstr(txm_error_last()->message, "txm_no_such_option") != NULL);
    assert_no_secret(txm_error_last()->message, "txm-secret");
}

/* ---- values ------------------------------------------------------------------------------------ */

Test(pg, values_round_trip_with_types)
{
    txm_conn *c;
    txm_rows *r;
    static const unsigned char blob[] = {0, 1, 0x7f, 0x80, 0xff, '\\', 'x', 0};
    txm_value in[6];
    size_t len;
    const char *s;
    NEED_PG();
    c = open_pg();
    x(c, "DROP TABLE IF EXISTS pgt_vals");
    x(c, "CREATE TABLE pgt_vals(i bigint, r double precision, t text, b bytea, s smallint, n numeric, ok boolean, "
         "j jsonb)");
    in[0] = txm_int(INT64_MIN);
    in[1] = txm_real(-1.0 / 3.0);
    in[2] = txm_text("grüße ✓ 'quoted' $1 ?");
    in[3] = txm_blob(blob, sizeof blob);
    in[4] = txm_int(-32768);
    in[5] = txm_text("12345678901234567890.000000001");
    OK(txm_exec(c, "INSERT INTO pgt_vals VALUES (?, ?, ?, ?, ?, ?, true, '{\"a\": 1}')", in, 6, NULL));
    in[0] = txm_int(INT64_MAX);
    in[1] = txm_null();
    in[2] = txm_textn("", 0);
    in[3] = txm_blob(NULL, 0);
    in[4] = txm_null();
    in[5] = txm_null();
    OK(txm_exec(c, "INSERT INTO pgt_vals VALUES (?, ?, ?, ?, ?, ?, false, NULL)", in, 6, NULL));
    OK(txm_query(&r, c, "SELECT i, r, t, b, s, n, ok, j, r::float4 FROM pgt_vals ORDER BY i", NULL, 0));
    cr_assert_eq(txm_rows_count(r), 2);
    cr_assert(txm_rows_next(r));
    cr_assert_eq(txm_rows_type(r, 0), TXM_T_INT);
    cr_assert_eq(txm_rows_get_i64(r, 0), INT64_MIN);
    cr_assert_eq(txm_rows_type(r, 1), TXM_T_REAL);
    cr_assert(txm_rows_get_double(r, 1) == -1.0 / 3.0, "float8 round trips exactly");
    cr_assert_str_eq(txm_rows_get_text(r, 2, NULL), "grüße ✓ 'quoted' $1 ?");
    cr_assert_eq(txm_rows_type(r, 3), TXM_T_BLOB);
    s = txm_rows_get_text(r, 3, &len);
    cr_assert_eq(len, sizeof blob);
    cr_assert(memcmp(s, blob, sizeof blob) == 0);
    cr_assert_eq(txm_rows_type(r, 4), TXM_T_INT);
    cr_assert_eq(txm_rows_get_i64(r, 4), -32768);
    cr_assert_eq(txm_rows_type(r, 5), TXM_T_TEXT, "numeric stays exact text");
    cr_assert_str_eq(txm_rows_get_text(r, 5, NULL), "12345678901234567890.000000001");
    cr_assert_eq(txm_rows_type(r, 6), TXM_T_INT);
    cr_assert_eq(txm_rows_get_i64(r, 6), 1);
    cr_assert_str_eq(txm_rows_get_text(r, 7, NULL), "{\"a\": 1}");
    cr_assert_eq(txm_rows_type(r, 8), TXM_T_REAL);
    cr_assert(txm_rows_next(r));
    cr_assert_eq(txm_rows_get_i64(r, 0), INT64_MAX);
    cr_assert(txm_rows_is_null(r, 1));
    cr_assert_eq(txm_rows_type(r, 2), TXM_T_TEXT);
    cr_assert_str_eq(txm_rows_get_text(r, 2, NULL), "", "empty text is not NULL");
    cr_assert_eq(txm_rows_type(r, 3), TXM_T_BLOB, "empty blob is not NULL");
    txm_rows_get_text(r, 3, &len);
    cr_assert_eq(len, 0);
    cr_assert_eq(txm_rows_get_i64(r, 6), 0);
    cr_assert(txm_rows_is_null(r, 7));
    txm_rows_free(r);
    {
        int64_t n = 0;
        OK(txm_exec(c, "UPDATE pgt_vals SET s = 1", NULL, 0, &n));
        cr_assert_eq(n, 2, "affected rows from the command tag");
        OK(txm_exec(c, "SELECT 1", NULL, 0, &n));
        cr_assert_eq(n, 1);
        OK(txm_exec(c, "CREATE TEMP TABLE pgt_tmp(i int)", NULL, 0, &n));
        cr_assert_eq(n, -1, "no count for DDL");
    }
    txm_close(c);
}

Test(pg, text_parameter_with_nul_byte_is_refused_before_sending)
{
    txm_conn *c;
    txm_value v;
    uint64_t rt;
    NEED_PG();
    c = open_pg();
    rt = round_trips(c);
    v = txm_textn("a\0b", 3);
    RC(TXM_EDATA, txm_exec(c, "SELECT ?::text", &v, 1, NULL));
    cr_assert(strstr(txm_error_last()->message, "NUL") != NULL);
    cr_assert_eq(round_trips(c), rt);
    v = txm_blob("a\0b", 3);
    {
        int64_t n;
        OK(txm_query_i64(c, &n, "SELECT length(?)", &v, 1));
        cr_assert_eq(n, 3);
    }
    txm_close(c);
}
