/*
 * Behind PgBouncer in transaction pooling (TXM_TEST_PGBOUNCER_URL: scripts/pgbouncer-server.sh
 * prints one; every test skips with the reason when it is unset). Each txm connection here is a
 * client of the pooler, which lends it a server session for one transaction at a time.
 *
 * Shows the incident of issue 9: a session-level `SET lock_timeout` sent through txm_exec stays
 * on the server session it ran on; the application's next transaction runs on another one and
 * waits for a lock with no limit. txm's per-transaction lock_timeout_ms travels inside the
 * transaction (SET LOCAL in the BEGIN flight) and fires there with TXM_ELOCK_TIMEOUT.
 * Every wait is bounded by the test (the lock holder lets go after a few seconds); outcomes and
 * categories are asserted, never durations (they are printed).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "txm.h"
#include "txm_check.h"

#define NEED_BOUNCER() NEED_URL("TXM_TEST_PGBOUNCER_URL", "scripts/pgbouncer-server.sh")
#define MAX_PINS 60 /* more than the pooler's default_pool_size (scripts/pgbouncer-server.sh) */

static txm_conn *open_bouncer(void) { return check_open(getenv("TXM_TEST_PGBOUNCER_URL"), NULL); }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t q_i64(txm_conn *c, const char *sql)
{
    int64_t v = -1;
    OK(txm_query_i64(c, &v, sql, NULL, 0));
    return v;
}

/* The lock holder: a transaction on the row, rolled back by a thread after `ms`. */
typedef struct holder {
    txm_conn *c;
    txm_tx *tx;
    int ms;
    int rc;
    pthread_t th;
} holder;

static void *let_go_later(void *arg)
{
    holder *h = arg;
    struct timespec ts = {h->ms / 1000, (long)(h->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    h->rc = txm_rollback(h->tx);
    return NULL;
}

static void hold_row(holder *h, int ms)
{
    h->ms = ms;
    h->rc = -1;
    OK(txm_begin(&h->tx, h->c, NULL));
    OK(txm_exec(h->c, "UPDATE pgb_row SET n = n + 1 WHERE id = 1", NULL, 0, NULL));
    cr_assert(pthread_create(&h->th, NULL, let_go_later, h) == 0);
}

static void release_row(holder *h)
{
    pthread_join(h->th, NULL);
    cr_assert(h->rc == 0, "the holder's rollback failed: %s", txm_err_name(h->rc));
}

static void setup_table(txm_conn *c)
{
    OK(txm_exec(c, "DROP TABLE IF EXISTS pgb_row", NULL, 0, NULL));
    OK(txm_exec(c, "CREATE TABLE pgb_row (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)", NULL, 0, NULL));
    OK(txm_exec(c, "INSERT INTO pgb_row VALUES (1, 0)", NULL, 0, NULL));
}

Test(pgbouncer, session_set_is_lost_but_transaction_lock_timeout_fires, .timeout = 120)
{
    NEED_BOUNCER();
    txm_conn *w = open_bouncer(); /* the application */
    holder h = {open_bouncer(), NULL, 0, -1, 0};
    txm_conn *pins[MAX_PINS];
    txm_tx *pin_tx[MAX_PINS], *t;
    size_t npins = 0;
    int64_t set_pid, wait_pid, wait_setting;
    double t0;
    int rc;

    setup_table(w);

    /* 1. The application sets a lock timeout for its session, as it would without a pooler. The
     * pooler runs that statement on some server session S and takes S back right after. (A value
     * of this run's own, formatted from an integer, tells S apart.) */
    int64_t mine = 200 + (int64_t)(getpid() % 500);
    char set[64];
    snprintf(set, sizeof set, "SET lock_timeout = %lld", (long long)mine);
    OK(txm_exec(w, set, NULL, 0, NULL));
    /* Other clients' transactions take S meanwhile (as on a busy pooler): pin server sessions
     * until S is among them, so that the application's next transaction cannot run on S. */
    for (;;) {
        cr_assert(npins < MAX_PINS, "the pooler never lent the session of the SET to another client");
        pins[npins] = open_bouncer();
        OK(txm_begin(&pin_tx[npins], pins[npins], NULL));
        int64_t v = q_i64(pins[npins], "SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'");
        set_pid = q_i64(pins[npins], "SELECT pg_backend_pid()");
        npins++;
        if (v == mine)
            break;
    }

    /* 2. The row is locked by another client for 3 s. The application's update does not give up
     * after 200 ms: its transaction runs on another server session, with no lock_timeout. */
    hold_row(&h, 3000);
    OK(txm_begin(&t, w, NULL));
    t0 = now_ms();
    rc = txm_exec(w, "UPDATE pgb_row SET n = n + 10 WHERE id = 1", NULL, 0, NULL);
    double waited = now_ms() - t0;
    cr_assert(rc == 0, "expected the session SET to be lost (the update waits for the holder), got %s: %s",
              txm_err_name(rc), txm_error_last()->message);
    wait_pid = q_i64(w, "SELECT pg_backend_pid()");
    wait_setting = q_i64(w, "SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'");
    OK(txm_rollback(t));
    release_row(&h);
    fprintf(stderr, "[pgbouncer] session SET lock_timeout = %lld ran on backend %lld; the next transaction ran on backend "
                    "%lld with lock_timeout=%lld and waited %.0f ms for the holder (no timeout)\n",
            (long long)mine, (long long)set_pid, (long long)wait_pid, (long long)wait_setting, waited);
    cr_assert(wait_pid != set_pid);
    cr_assert(wait_setting != mine && wait_setting == 0, "the transaction's server session has lock_timeout %lld", (long long)wait_setting);

    /* 3. The same wait with txm's per-transaction lock timeout: it fires behind the pooler. */
    {
        txm_tx_options o = TXM_TX_OPTIONS_INIT;
        o.lock_timeout_ms = 200;
        hold_row(&h, 3000);
        OK(txm_begin(&t, w, &o));
        t0 = now_ms();
        rc = txm_exec(w, "UPDATE pgb_row SET n = n + 10 WHERE id = 1", NULL, 0, NULL);
        waited = now_ms() - t0;
        cr_assert(rc == TXM_ELOCK_TIMEOUT, "expected TXM_ELOCK_TIMEOUT behind the pooler, got %s: %s",
                  txm_err_name(rc), txm_error_last()->message);
        txm_rollback(t);
        release_row(&h);
        fprintf(stderr, "[pgbouncer] txm lock_timeout_ms=200: TXM_ELOCK_TIMEOUT after %.0f ms\n", waited);
    }
    /* ... and leaves nothing behind on the server session for the pooler's next client. */
    OK(txm_begin(&t, w, NULL));
    cr_assert(q_i64(w, "SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'") != 200,
              "SET LOCAL must end with the transaction");
    OK(txm_rollback(t));
    cr_assert(q_i64(w, "SELECT n FROM pgb_row WHERE id = 1") == 0, "nothing was committed");

    /* S goes back to the pool with the default setting (no state left for later tests). */
    OK(txm_exec(pins[npins - 1], "SET lock_timeout TO DEFAULT", NULL, 0, NULL));
    OK(txm_commit(pin_tx[npins - 1]));
    pin_tx[npins - 1] = NULL;
    while (npins > 0) {
        npins--;
        if (pin_tx[npins])
            txm_rollback(pin_tx[npins]);
        txm_close(pins[npins]);
    }
    txm_close(h.c);
    txm_close(w);
}

Test(pgbouncer, statement_timeout_fires_and_costs_no_round_trip, .timeout = 120)
{
    NEED_BOUNCER();
    txm_conn *w = open_bouncer();
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    txm_stats s0, s1;
    txm_tx *t;
    uint64_t plain, timed;
    int rc;

    txm_stats_get(w, &s0);
    OK(txm_begin(&t, w, NULL));
    OK(txm_exec(w, "SELECT 1", NULL, 0, NULL));
    OK(txm_commit(t));
    txm_stats_get(w, &s1);
    plain = s1.round_trips - s0.round_trips;

    o.lock_timeout_ms = 1000;
    o.statement_timeout_ms = 150;
    txm_stats_get(w, &s0);
    OK(txm_begin(&t, w, &o));
    OK(txm_exec(w, "SELECT 1", NULL, 0, NULL));
    OK(txm_commit(t));
    txm_stats_get(w, &s1);
    timed = s1.round_trips - s0.round_trips;
    fprintf(stderr, "[pgbouncer] begin + select + commit: %llu round trips, %llu with both timeouts\n",
            (unsigned long long)plain, (unsigned long long)timed);
    cr_assert(timed == plain);

    OK(txm_begin(&t, w, &o));
    rc = txm_exec(w, "SELECT pg_sleep(3)", NULL, 0, NULL);
    cr_assert(rc == TXM_ECANCELED, "expected TXM_ECANCELED, got %s: %s", txm_err_name(rc), txm_error_last()->message);
    txm_rollback(t);
    OK(txm_exec(w, "SELECT pg_sleep(0.3)", NULL, 0, NULL)); /* the limit ended with the transaction */
    txm_close(w);
}

/* The statement cache left on behind PgBouncer 1.18 (it should be off there: the URL the suite
 * gets carries txm_statement_cache=off; this test turns it back on). A name prepared in one
 * transaction's server session is unknown in the next one's: the driver sees 26000 at the BEGIN
 * of a transaction (nothing ran), turns the cache off for that connection and runs the flight
 * again. Several connections in threads make the pooler swap server sessions; every transaction
 * must commit and every count must be exact. How many connections noticed is printed. */
#define CACHE_THREADS 4
#define CACHE_TX 40
static atomic_int cache_off_warnings;
static void cache_log(txm_log_level level, const char *msg, void *p)
{
    (void)p;
    if (level == TXM_LOG_WARN && strstr(msg, "txm_statement_cache=off"))
        atomic_fetch_add(&cache_off_warnings, 1);
}

typedef struct cache_worker {
    int id;
    int rc;
    char err[300];
} cache_worker;

static void *cache_work(void *p)
{
    cache_worker *w = p;
    const char *u = getenv("TXM_TEST_PGBOUNCER_URL");
    char url[1200];
    txm_conn *c = NULL;
    txm_open_options o;
    int i;
    txm_open_options_init(&o, TXM_OPEN_OPTIONS_VERSION);
    o.log = cache_log;
    o.log_level = TXM_LOG_WARN;
    snprintf(url, sizeof url, "%s%ctxm_statement_cache=on", u, strchr(u, '?') ? '&' : '?');
    if ((w->rc = txm_open(&c, url, &o)) != 0) {
        snprintf(w->err, sizeof w->err, "open: %s", txm_error_last()->message);
        return NULL;
    }
    for (i = 0; i < CACHE_TX && !w->rc; i++) {
        txm_tx *t;
        txm_value v[2] = {txm_int(w->id), txm_int(i)};
        int64_t n = -1;
        if ((w->rc = txm_begin(&t, c, NULL)) == 0) {
            if ((w->rc = txm_exec(c, "INSERT INTO pgb_cache(w, i) VALUES (?, ?)", v, 2, NULL)) == 0)
                w->rc = txm_commit(t);
            else
                txm_rollback(t);
        }
        if (!w->rc && (w->rc = txm_query_i64(c, &n, "SELECT count(*) FROM pgb_cache WHERE w = ?", v, 1)) == 0 &&
            n != i + 1)
            w->rc = -1;
        if (w->rc)
            snprintf(w->err, sizeof w->err, "transaction %d: %s (count %lld)", i, txm_error_last()->message,
                     (long long)n);
    }
    txm_close(c);
    return NULL;
}

Test(pgbouncer, statement_cache_left_on_turns_itself_off_and_nothing_fails, .timeout = 120)
{
    txm_conn *c;
    pthread_t th[CACHE_THREADS];
    cache_worker w[CACHE_THREADS];
    int i;
    NEED_BOUNCER();
    c = open_bouncer();
    OK(txm_exec(c, "DROP TABLE IF EXISTS pgb_cache", NULL, 0, NULL));
    OK(txm_exec(c, "CREATE TABLE pgb_cache (w int NOT NULL, i int NOT NULL)", NULL, 0, NULL));
    atomic_store(&cache_off_warnings, 0);
    for (i = 0; i < CACHE_THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i + 1;
        cr_assert_eq(pthread_create(&th[i], NULL, cache_work, &w[i]), 0);
    }
    for (i = 0; i < CACHE_THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < CACHE_THREADS; i++)
        cr_assert_eq(w[i].rc, 0, "worker %d: %s", i, w[i].err);
    cr_assert_eq(q_i64(c, "SELECT count(*) FROM pgb_cache"), CACHE_THREADS * CACHE_TX);
    fprintf(stderr, "[pgbouncer] statement cache left on: %d of %d connections saw a statement vanish and turned it off\n",
            atomic_load(&cache_off_warnings), CACHE_THREADS);
    txm_close(c);
}
