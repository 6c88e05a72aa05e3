/* Connection-level behaviour: a connection killed by the server (TXM_ECONNECTION, poisoning, no
 * silent reconnect, txm_reconnect), txm_cancel from another thread, and errors that make the
 * server drop the whole transaction (TXM_ERRF_TX_LOST poisons every level). */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define U(x) ((unsigned long long)(x))

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Asks the server, through `killer`, to end the session of `victim`. */
static void kill_session(txm_conn *killer, txm_conn *victim)
{
    char sql[128];
    if (conf_is("postgresql")) {
        int64_t pid = conf_i64(victim, "SELECT pg_backend_pid()");
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld, 5000)", (long long)pid);
    } else {
        int64_t id = conf_i64(victim, "SELECT CONNECTION_ID()");
        snprintf(sql, sizeof sql, "KILL CONNECTION %lld", (long long)id);
    }
    conf_exec(killer, sql);
    sleep_ms(50); /* let the server close the socket */
}

Test(conn, killed_connection_reported_and_reconnected, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    if (!conf_is("postgresql") && !conf_is("mysql"))
        CONF_SKIP("%s: no recipe to kill a session (PostgreSQL and MySQL/MariaDB only; embedded engines have "
                  "no connection to lose)", conf.driver);
    txm_conn *b = conf_open_other();
    txm_conn *a = conf_open_other();
    txm_tx *t = conf_begin(a);
    CONF_OK(conf_item(a, 1));
    kill_session(b, a);

    int rc = conf_item(a, 2);
    conf_err e = conf_last_err();
    cr_assert(rc == TXM_ECONNECTION, "statement on a killed session: expected TXM_ECONNECTION, got %s (%s)",
              txm_err_name(rc), e.message);
    cr_assert(e.flags & TXM_ERRF_TX_LOST, "a lost connection inside a transaction must carry TXM_ERRF_TX_LOST");
    txm_stats before = conf_stats(a);
    rc = conf_item(a, 3);
    e = conf_last_err();
    cr_assert(rc == TXM_ECONNECTION || (rc == TXM_ETX_ABORTED && e.has_cause && e.cause_code == TXM_ECONNECTION),
              "next statement: %s (cause %s)", txm_err_name(rc), e.has_cause ? txm_err_name(e.cause_code) : "none");
    txm_stats d = conf_delta(a, &before);
    cr_assert(d.round_trips == 0, "a statement on a broken connection touched the network (%llu round trips)",
              U(d.round_trips));
    rc = txm_commit(t);
    cr_assert(rc != 0, "commit on a lost connection succeeded");
    cr_assert(txm_depth(a) == 0, "the failed commit must end the level");

    before = conf_stats(a);
    CONF_RC(TXM_ECONNECTION, conf_item(a, 4));
    d = conf_delta(a, &before);
    cr_assert(d.round_trips == 0, "outside a transaction too, a broken connection is not used");

    /* a level may not be opened on a broken connection, or if it is, it blocks txm_reconnect */
    rc = txm_begin(&t, a, NULL);
    if (rc == 0) {
        CONF_RC(TXM_EMISUSE, txm_reconnect(a));
        CONF_OK(txm_rollback(t));
    } else {
        cr_assert(rc == TXM_ECONNECTION, "txm_begin on a broken connection: %s", txm_err_name(rc));
    }
    t = conf_begin(b);
    CONF_RC(TXM_EMISUSE, txm_reconnect(b)); /* levels open (on a healthy connection) */
    CONF_OK(txm_rollback(t));

    if (!conf_has_cap(TXM_CAP_RECONNECT)) {
        CONF_RC(TXM_ENOTSUPPORTED, txm_reconnect(a));
    } else {
        CONF_OK(txm_reconnect(a));
        CONF_OK(conf_item(a, 5));
        cr_assert(conf_count(b, "t_item") == 1, "only item 5 may exist: the killed transaction never committed");
        cr_assert(conf_count_id(b, "t_item", 5) == 1);
    }
    txm_close(a);
    txm_close(b);
}

typedef struct canceller {
    txm_conn *c;
    atomic_int done;
    int calls;
    int last_rc;
} canceller;

static void *cancel_loop(void *payload)
{
    canceller *k = payload;
    while (!atomic_load(&k->done)) {
        sleep_ms(30);
        if (atomic_load(&k->done))
            break;
        k->last_rc = txm_cancel(k->c);
        k->calls++;
    }
    return NULL;
}

Test(conn, cancel_interrupts_running_statement, .init = conf_init, .fini = conf_fini, .timeout = 120)
{
    if (!conf_has_cap(TXM_CAP_CANCEL)) {
        CONF_RC(TXM_ENOTSUPPORTED, txm_cancel(conf.c));
        CONF_SKIP("driver lacks TXM_CAP_CANCEL (txm_cancel returns TXM_ENOTSUPPORTED, checked)");
    }
    const char *slow;
    if (conf_is("postgresql"))
        slow = "SELECT pg_sleep(60)";
    else if (conf_is("mysql"))
        /* SLEEP() and BENCHMARK() return normally when killed; a long join fails with 1317 */
        slow = "SELECT COUNT(*) FROM information_schema.collations a, information_schema.collations b, "
               "information_schema.collations c, information_schema.collations d";
    else
        slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000000) "
               "SELECT COUNT(*) FROM c";
    canceller k = {.c = conf.c};
    atomic_init(&k.done, 0);
    pthread_t th;
    cr_assert(pthread_create(&th, NULL, cancel_loop, &k) == 0);
    int rc = txm_exec(conf.c, slow, NULL, 0, NULL);
    conf_err e = conf_last_err();
    atomic_store(&k.done, 1);
    pthread_join(th, NULL);
    fprintf(stderr, "[%s] cancel: %s after %d txm_cancel calls: %s\n", conf.driver, txm_err_name(rc), k.calls,
            rc ? e.message : "");
    cr_assert(rc == TXM_ECANCELED, "expected TXM_ECANCELED, got %s (%s)", txm_err_name(rc), e.message);
    cr_assert(k.last_rc == 0, "txm_cancel returned %s", txm_err_name(k.last_rc));
    /* the connection is usable afterwards, also for a transaction */
    cr_assert(conf_i64(conf.c, "SELECT 1") == 1);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

/* ---- a transaction-killing error inside a nested level poisons every level ---- */
typedef struct lost_side {
    txm_conn *c;
    int64_t from, to, amount;
    pthread_barrier_t *barrier;
    int second_rc;       /* the statement that may deadlock */
    unsigned flags;      /* its error flags */
    int inner_stmt_rc;   /* victim: a statement in the inner level afterwards */
    int inner_end_rc;    /* victim: rollback of the inner level */
    int depth_after_inner;
    int outer_stmt_rc;   /* victim: a statement in the outer level */
    int outer_commit_rc; /* both */
    int depth_after;
    int fresh_rc;        /* victim: a statement after the outermost level ended */
} lost_side;

static void *lost_thread(void *payload)
{
    lost_side *s = payload;
    txm_tx *outer = NULL, *inner = NULL;
    txm_value p1[2] = {txm_int(s->amount), txm_int(s->from)};
    txm_value p2[2] = {txm_int(s->amount), txm_int(s->to)};
    int rc = txm_begin(&outer, s->c, NULL);
    if (rc == 0)
        rc = txm_exec(s->c, "UPDATE t_counter SET n = n - ? WHERE id = ?", p1, 2, NULL);
    if (rc == 0)
        rc = txm_begin(&inner, s->c, NULL);
    pthread_barrier_wait(s->barrier);
    if (rc) {
        s->second_rc = rc;
        return NULL;
    }
    s->second_rc = txm_exec(s->c, "UPDATE t_counter SET n = n + ? WHERE id = ?", p2, 2, NULL);
    s->flags = txm_error_last()->flags;
    if (s->second_rc == 0) {
        txm_commit(inner);
        s->outer_commit_rc = txm_commit(outer);
        s->depth_after = txm_depth(s->c);
        return NULL;
    }
    s->inner_stmt_rc = txm_exec(s->c, "UPDATE t_counter SET n = n + 1000 WHERE id = ?", p2 + 1, 1, NULL);
    s->inner_end_rc = txm_rollback(inner);
    s->depth_after_inner = txm_depth(s->c);
    s->outer_stmt_rc = txm_exec(s->c, "UPDATE t_counter SET n = n + 1000 WHERE id = ?", p1 + 1, 1, NULL);
    s->outer_commit_rc = txm_commit(outer);
    s->depth_after = txm_depth(s->c);
    s->fresh_rc = txm_query_i64(s->c, &(int64_t){0}, "SELECT COUNT(*) FROM t_counter", NULL, 0);
    return NULL;
}

Test(conn, transaction_lost_in_nested_level_poisons_every_level, .init = conf_init_shared, .fini = conf_fini,
     .timeout = 120)
{
    if (conf_is_embedded())
        CONF_SKIP("%s: an embedded engine cannot deadlock on demand (SQLite: BEGIN IMMEDIATE); no "
                  "transaction-killing error to provoke", conf.driver);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    lost_side s[2];
    memset(s, 0, sizeof s);
    s[0].c = conf_open_other();
    s[1].c = conf_open_other();
    s[0].from = 1, s[0].to = 2, s[0].amount = 10;
    s[1].from = 2, s[1].to = 1, s[1].amount = 5;
    s[0].barrier = s[1].barrier = &barrier;
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert(pthread_create(&th[i], NULL, lost_thread, &s[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);

    int victims = 0, winner = -1;
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "[%s] side %d: second=%s inner_stmt=%s inner_end=%s outer_stmt=%s commit=%s\n", conf.driver,
                i, txm_err_name(s[i].second_rc), txm_err_name(s[i].inner_stmt_rc), txm_err_name(s[i].inner_end_rc),
                txm_err_name(s[i].outer_stmt_rc), txm_err_name(s[i].outer_commit_rc));
        if (s[i].second_rc == 0) {
            winner = i;
            cr_assert(s[i].outer_commit_rc == 0, "winner's commit: %s", txm_err_name(s[i].outer_commit_rc));
            continue;
        }
        victims++;
        cr_assert(s[i].second_rc == TXM_EDEADLOCK, "side %d: expected TXM_EDEADLOCK, got %s", i,
                  txm_err_name(s[i].second_rc));
        cr_assert(s[i].flags & TXM_ERRF_TX_LOST, "a deadlock must carry TXM_ERRF_TX_LOST");
        cr_assert(s[i].inner_stmt_rc == TXM_ETX_ABORTED, "inner statement after the deadlock: %s",
                  txm_err_name(s[i].inner_stmt_rc));
        cr_assert(s[i].depth_after_inner == 1, "rolling back the inner level must end it (depth %d)",
                  s[i].depth_after_inner);
        cr_assert(s[i].outer_stmt_rc == TXM_ETX_ABORTED,
                  "rolling back the inner level must not recover a lost transaction: outer statement %s",
                  txm_err_name(s[i].outer_stmt_rc));
        cr_assert(s[i].outer_commit_rc == TXM_ETX_ABORTED, "commit of the lost transaction: %s",
                  txm_err_name(s[i].outer_commit_rc));
        cr_assert(s[i].depth_after == 0);
        cr_assert(s[i].fresh_rc == 0, "the connection is usable after the outermost level ended: %s",
                  txm_err_name(s[i].fresh_rc));
    }
    cr_assert(victims == 1 && winner >= 0, "expected one deadlock victim, got %d", victims);
    int64_t c1 = conf_counter(conf.c, 1), c2 = conf_counter(conf.c, 2);
    if (winner == 0)
        cr_assert(c1 == 90 && c2 == 110, "only side 0's transfer may apply: %lld, %lld", (long long)c1, (long long)c2);
    else
        cr_assert(c1 == 105 && c2 == 95, "only side 1's transfer may apply: %lld, %lld", (long long)c1, (long long)c2);
    txm_close(s[0].c);
    txm_close(s[1].c);
}

Test(conn, ddl_in_transaction_is_transactional_or_reported, .init = conf_init_shared, .fini = conf_fini)
{
    conf_exec(conf.c, "DROP TABLE IF EXISTS t_tmp");
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    int rc = txm_exec(conf.c, "CREATE TABLE t_tmp (id INTEGER PRIMARY KEY)", NULL, 0, NULL);
    conf_err e = conf_last_err();
    if (conf_is("mysql")) {
        /* MySQL/MariaDB commit implicitly before DDL: txm must say so, never absorb it. */
        cr_assert(rc == TXM_ESTATE, "DDL in a MySQL transaction: expected TXM_ESTATE, got %s", txm_err_name(rc));
        cr_assert(e.flags & TXM_ERRF_TX_LOST);
        cr_assert(conf_contains(e.message, "implicit commit"), "the message must name the implicit commit: %s",
                  e.message);
        CONF_RC(TXM_ETX_ABORTED, conf_item(conf.c, 2));
        CONF_OK(txm_rollback(t));
        txm_conn *b = conf_open_other();
        cr_assert(conf_count(b, "t_item") == 1, "the implicit commit did commit item 1");
        txm_close(b);
    } else {
        cr_assert(rc == 0, "DDL in a transaction: %s: %s", txm_err_name(rc), e.message);
        CONF_OK(conf_item(conf.c, 2));
        CONF_OK(txm_rollback(t));
        cr_assert(conf_count(conf.c, "t_item") == 0);
        CONF_RC(TXM_ESYNTAX, txm_exec(conf.c, "SELECT COUNT(*) FROM t_tmp", NULL, 0, NULL));
    }
    cr_assert(txm_depth(conf.c) == 0);
    conf_exec(conf.c, "DROP TABLE IF EXISTS t_tmp");
}
