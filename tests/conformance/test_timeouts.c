/* Per-transaction timeouts (txm_tx_options lock_timeout_ms / statement_timeout_ms,
 * TXM_CAP_TX_TIMEOUTS; docs/semantics.md "Per-transaction timeouts"): a lock wait past the limit
 * fails with TXM_ELOCK_TIMEOUT and a statement past its limit with TXM_ECANCELED on every engine;
 * they cost no round trip; they end with the transaction (the session's own values are back
 * afterwards, however it ended); outermost level only; version-1 option structs still work.
 * Lock waits use two real connections; every wait that the timeout should end is also bounded by
 * the test itself (a holder that lets go after a few seconds), so a broken timeout fails instead of
 * hanging. No wall-clock assertions: outcomes and categories only (measured times are printed). */
#include "harness.h"

#include <pthread.h>
#include <time.h>

static void need_timeouts(void)
{
    if (!conf_has_cap(TXM_CAP_TX_TIMEOUTS)) {
        txm_tx *t = NULL;
        txm_tx_options o = TXM_TX_OPTIONS_INIT;
        o.lock_timeout_ms = 100;
        CONF_RC(TXM_ENOTSUPPORTED, txm_begin(&t, conf.c, &o));
        CONF_SKIP("driver lacks TXM_CAP_TX_TIMEOUTS (txm_begin with a timeout returns TXM_ENOTSUPPORTED, checked)");
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The holder's transaction, ended by another thread after `ms`: bounds every wait of a test. */
typedef struct holder {
    txm_tx *tx;
    int ms;
    int rc;
} holder;

static void *release_later(void *arg)
{
    holder *h = arg;
    struct timespec ts = {h->ms / 1000, (long)(h->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    h->rc = txm_rollback(h->tx);
    return NULL;
}

/* conf.c takes the row lock of t_counter id 1 (SQLite: the database write lock) in a transaction
 * that a thread rolls back after `ms`. */
static void hold_row_lock(holder *h, pthread_t *th, int ms)
{
    h->tx = conf_begin(conf.c);
    h->ms = ms;
    h->rc = -1;
    conf_exec(conf.c, "UPDATE t_counter SET n = n + 1 WHERE id = 1");
    cr_assert(pthread_create(th, NULL, release_later, h) == 0);
}

static void join_holder(holder *h, pthread_t th)
{
    pthread_join(th, NULL);
    cr_assert(h->rc == 0, "the holder's rollback failed: %s", txm_err_name(h->rc));
}

/* Another connection whose own lock wait outlasts every holder of these tests, so that only the
 * transaction's lock_timeout_ms can end a wait early: SQLite ?busy_timeout=30000, MySQL/MariaDB
 * a 30 s session innodb_lock_wait_timeout (the test server's default is 1 s), PostgreSQL the
 * default lock_timeout 0 (forever; no session SET, so this works behind a transaction pooler). */
static txm_conn *open_patient(void)
{
    txm_conn *b = NULL;
    if (conf_is("sqlite")) {
        char url[2200];
        CONF_OK(txm_open(&b, conf_url_with(url, sizeof url, "busy_timeout=30000"), NULL));
        return b;
    }
    b = conf_open_other();
    if (conf_is("mysql"))
        conf_exec(b, "SET SESSION innodb_lock_wait_timeout = 30");
    return b;
}

/* Per engine: a statement that runs for a few seconds unless stopped, and the queries that read
 * the session's own lock-wait and statement limits (NULL: not readable by SQL, i.e. SQLite, whose
 * busy timeout lives in the driver). */
static const struct engine_sql {
    const char *driver;
    const char *long_statement;
    const char *lock_setting;
    const char *statement_setting;
} engines[] = {
    {"postgresql", "SELECT pg_sleep(3)", "SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'",
     "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'"},
    {"mysql", "SELECT SLEEP(3)", "SELECT @@SESSION.innodb_lock_wait_timeout",
     "SELECT CAST(@@SESSION.max_statement_time * 1000 AS SIGNED)"},
    /* SQLite: no sleep function; a recursive count of ten million rows (seconds). */
    {"sqlite",
     "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10000000) SELECT COUNT(*) FROM r",
     NULL, NULL},
};

static const struct engine_sql *engine(void)
{
    for (size_t i = 0; i < sizeof engines / sizeof engines[0]; i++)
        if (conf_is(engines[i].driver))
            return &engines[i];
    return &engines[2]; /* another embedded driver: plain SQL only */
}

static const char *long_statement(void) { return engine()->long_statement; }
static const char *session_lock_setting_sql(void) { return engine()->lock_setting; }
static const char *session_statement_setting_sql(void) { return engine()->statement_setting; }

Test(timeouts, lock_timeout_fires_with_lock_category, .init = conf_init_shared, .fini = conf_fini, .timeout = 120)
{
    need_timeouts();
    txm_conn *b = open_patient();
    holder h;
    pthread_t th;
    txm_tx *t;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    double t0;
    /* The holder lets go after 8 s: beyond MySQL's 1 s (whole seconds, rounded up) with margin,
     * and far below every engine's default (SQLite URL 5 s busy timeout is the nearest). */
    hold_row_lock(&h, &th, 8000);
    o.lock_timeout_ms = 300;
    CONF_OK(txm_begin(&t, b, &o));
    t0 = now_ms();
    int rc = txm_exec(b, "UPDATE t_counter SET n = n + 10 WHERE id = 1", NULL, 0, NULL);
    double waited = now_ms() - t0;
    conf_err e = conf_last_err();
    fprintf(stderr, "[%s] lock_timeout_ms=300: the waiter gave up after %.0f ms (%s)\n", conf.driver, waited,
            txm_err_name(rc));
    cr_assert(rc == TXM_ELOCK_TIMEOUT, "expected TXM_ELOCK_TIMEOUT, got %s: %s", txm_err_name(rc), e.message);
    txm_rollback(t);
    join_holder(&h, th);
    cr_assert(conf_counter(b, 1) == 100, "nothing was committed");
    txm_close(b);
}

Test(timeouts, lock_timeout_holds_in_nested_levels, .init = conf_init_shared, .fini = conf_fini, .timeout = 120)
{
    need_timeouts();
    if (conf_is_embedded())
        CONF_SKIP("SQLite takes the database write lock at BEGIN IMMEDIATE: no lock wait inside a nested level");
    txm_conn *b = open_patient();
    holder h;
    pthread_t th;
    txm_tx *t, *n1;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    hold_row_lock(&h, &th, 8000);
    o.lock_timeout_ms = 300;
    CONF_OK(txm_begin(&t, b, &o));
    CONF_OK(txm_exec(b, "UPDATE t_counter SET n = n + 1 WHERE id = 2", NULL, 0, NULL));
    CONF_OK(txm_begin(&n1, b, NULL));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_exec(b, "UPDATE t_counter SET n = n + 10 WHERE id = 1", NULL, 0, NULL));
    txm_rollback(n1);
    txm_rollback(t);
    join_holder(&h, th);
    txm_close(b);
}

/* After a transaction with a short lock timeout, the session's own (longer) wait is back: a
 * transaction without options waits for the holder (who lets go after 1.5 s) and succeeds. */
Test(timeouts, lock_timeout_ends_with_the_transaction, .init = conf_init_shared, .fini = conf_fini, .timeout = 120)
{
    need_timeouts();
    txm_conn *b = open_patient();
    holder h;
    pthread_t th;
    txm_tx *t;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    const char *q = session_lock_setting_sql();
    int64_t before = q ? conf_i64(b, q) : 0;

    o.lock_timeout_ms = 200;
    CONF_OK(txm_begin(&t, b, &o));
    if (q)
        cr_assert(conf_i64(b, q) != before, "the transaction's lock timeout is not in force inside it");
    CONF_OK(txm_exec(b, "UPDATE t_counter SET n = n + 1 WHERE id = 2", NULL, 0, NULL));
    CONF_OK(txm_commit(t));
    if (q)
        cr_assert(conf_i64(b, q) == before, "after COMMIT the session setting is %lld, was %lld",
                  (long long)conf_i64(b, q), (long long)before);

    CONF_OK(txm_begin(&t, b, &o));
    CONF_OK(txm_exec(b, "UPDATE t_counter SET n = n + 1 WHERE id = 2", NULL, 0, NULL));
    CONF_OK(txm_rollback(t));
    if (q)
        cr_assert(conf_i64(b, q) == before, "after ROLLBACK the session setting is %lld, was %lld",
                  (long long)conf_i64(b, q), (long long)before);

    /* The transaction ended by a failure (the lock wait timed out, then rolled back). */
    hold_row_lock(&h, &th, 1500);
    CONF_OK(txm_begin(&t, b, &o));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_exec(b, "UPDATE t_counter SET n = n + 10 WHERE id = 1", NULL, 0, NULL));
    txm_rollback(t);
    if (q)
        cr_assert(conf_i64(b, q) == before, "after a lock timeout the session setting is %lld, was %lld",
                  (long long)conf_i64(b, q), (long long)before);
    /* Still held for a while: now b waits with the session's own limit and gets the row. */
    CONF_OK(txm_begin(&t, b, NULL));
    CONF_OK(txm_exec(b, "UPDATE t_counter SET n = n + 10 WHERE id = 1", NULL, 0, NULL));
    CONF_OK(txm_commit(t));
    join_holder(&h, th);
    cr_assert(conf_counter(b, 1) == 110);
    txm_close(b);
}

Test(timeouts, statement_timeout_cancels_long_statement, .init = conf_init, .fini = conf_fini, .timeout = 120)
{
    need_timeouts();
    txm_tx *t;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    const char *q = session_statement_setting_sql();
    int64_t before = q ? conf_i64(conf.c, q) : 0;
    double t0;
    o.statement_timeout_ms = 150;
    CONF_OK(txm_begin(&t, conf.c, &o));
    CONF_OK(txm_exec(conf.c, "UPDATE t_counter SET n = n + 1 WHERE id = 2", NULL, 0, NULL));
    t0 = now_ms();
    int rc = txm_exec(conf.c, long_statement(), NULL, 0, NULL);
    conf_err e = conf_last_err();
    fprintf(stderr, "[%s] statement_timeout_ms=150: the statement was stopped after %.0f ms (%s)\n", conf.driver,
            now_ms() - t0, txm_err_name(rc));
    cr_assert(rc == TXM_ECANCELED, "expected TXM_ECANCELED, got %s: %s", txm_err_name(rc), e.message);
    txm_rollback(t);
    cr_assert(conf_counter(conf.c, 2) == 100, "the transaction was rolled back");
    if (q)
        cr_assert(conf_i64(conf.c, q) == before, "after the transaction statement timeout is %lld, was %lld",
                  (long long)conf_i64(conf.c, q), (long long)before);
    /* Outside the transaction the limit is gone: a statement longer than 150 ms completes. */
    if (conf_is("postgresql"))
        conf_exec(conf.c, "SELECT pg_sleep(0.4)");
    else if (conf_is("mysql"))
        conf_exec(conf.c, "SELECT SLEEP(0.4)");
}

/* The settings travel in the BEGIN flight (PostgreSQL, MySQL) and the restore with COMMIT
 * (MySQL): a transaction with timeouts costs exactly the round trips of one without. */
Test(timeouts, no_extra_round_trip, .init = conf_init, .fini = conf_fini)
{
    need_timeouts();
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    txm_stats s0, plain, timed;
    txm_tx *t;
    o.lock_timeout_ms = 1000;
    o.statement_timeout_ms = 5000;

    s0 = conf_stats(conf.c);
    CONF_OK(txm_begin(&t, conf.c, NULL));
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    plain = conf_delta(conf.c, &s0);

    s0 = conf_stats(conf.c);
    CONF_OK(txm_begin(&t, conf.c, &o));
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(t));
    timed = conf_delta(conf.c, &s0);

    fprintf(stderr, "[%s] begin + insert + commit: %llu round trips without timeouts, %llu with both\n", conf.driver,
            (unsigned long long)plain.round_trips, (unsigned long long)timed.round_trips);
    cr_assert(timed.round_trips == plain.round_trips, "timeouts cost %llu round trips instead of %llu",
              (unsigned long long)timed.round_trips, (unsigned long long)plain.round_trips);
    cr_assert(timed.statements == plain.statements && timed.control == plain.control,
              "the settings are not counted as statements or control ops");

    /* A batch sends BEGIN, its statements and COMMIT together: the save/set and the restore
     * must ride in that same flight. */
    {
        txm_value p3[] = {txm_int(3)}, p4[] = {txm_int(4)};
        txm_batch_stmt st[2] = {{"INSERT INTO t_item (id) VALUES (?)", p3, 1, NULL, 0, 0},
                                {"INSERT INTO t_item (id) VALUES (?)", p4, 1, NULL, 0, 0}};
        txm_batch_options bo = TXM_BATCH_OPTIONS_INIT;
        txm_stats bplain, btimed;
        const char *q = session_lock_setting_sql();
        int64_t before = q ? conf_i64(conf.c, q) : 0;
        s0 = conf_stats(conf.c);
        CONF_OK(txm_batch(conf.c, st, 1, NULL));
        bplain = conf_delta(conf.c, &s0);
        bo.tx = &o;
        s0 = conf_stats(conf.c);
        CONF_OK(txm_batch(conf.c, st + 1, 1, &bo));
        btimed = conf_delta(conf.c, &s0);
        fprintf(stderr, "[%s] one-statement batch: %llu round trips without timeouts, %llu with both\n", conf.driver,
                (unsigned long long)bplain.round_trips, (unsigned long long)btimed.round_trips);
        cr_assert(btimed.round_trips == bplain.round_trips, "a timed batch cost %llu round trips instead of %llu",
                  (unsigned long long)btimed.round_trips, (unsigned long long)bplain.round_trips);
        cr_assert(conf_count(conf.c, "t_item") == 4);
        if (q)
            cr_assert(conf_i64(conf.c, q) == before, "the session's lock timeout was not put back after the batch");
    }
}

Test(timeouts, outermost_only_and_validated, .init = conf_init, .fini = conf_fini)
{
    need_timeouts();
    txm_tx *t, *n1 = NULL;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    CONF_OK(txm_begin(&t, conf.c, NULL));
    o.lock_timeout_ms = 100;
    CONF_RC(TXM_EMISUSE, txm_begin(&n1, conf.c, &o));
    cr_assert(conf_contains(txm_error_last()->message, "outermost"), "%s", txm_error_last()->message);
    o.lock_timeout_ms = 0;
    o.statement_timeout_ms = 100;
    CONF_RC(TXM_EMISUSE, txm_begin(&n1, conf.c, &o));
    cr_assert(txm_depth(conf.c) == 1, "a refused level is not opened");
    {
        /* A batch inside a transaction is a nested level: the same rule, never ignored. */
        txm_value p1[] = {txm_int(1)};
        txm_batch_stmt st = {"INSERT INTO t_item (id) VALUES (?)", p1, 1, NULL, 0, 0};
        txm_batch_options bo = TXM_BATCH_OPTIONS_INIT;
        txm_tx_options iso = TXM_TX_OPTIONS_INIT;
        txm_stats s0 = conf_stats(conf.c), d;
        bo.tx = &o;
        CONF_RC(TXM_EMISUSE, txm_batch(conf.c, &st, 1, &bo));
        cr_assert(conf_contains(txm_error_last()->message, "txm_batch") &&
                      conf_contains(txm_error_last()->message, "outermost"),
                  "%s", txm_error_last()->message);
        cr_assert(st.status == TXM_ECANCELED, "the statement ran (status %d)", st.status);
        iso.isolation = TXM_ISOLATION_SERIALIZABLE;
        bo.tx = &iso;
        CONF_RC(TXM_EMISUSE, txm_batch(conf.c, &st, 1, &bo));
        d = conf_delta(conf.c, &s0);
        cr_assert(d.round_trips == 0, "a refused batch sent something");
        CONF_OK(conf_item(conf.c, 5)); /* the caller's transaction is not poisoned */
    }
    CONF_OK(txm_rollback(t));

    o.statement_timeout_ms = TXM_TX_TIMEOUT_MAX_MS + 1u;
    CONF_RC(TXM_EINVALID, txm_begin(&t, conf.c, &o));
    o.statement_timeout_ms = 0;
    o.lock_timeout_ms = 0xFFFFFFFFu;
    CONF_RC(TXM_EINVALID, txm_begin(&t, conf.c, &o));
    cr_assert(txm_depth(conf.c) == 0);

    /* The largest value is accepted and works (it is formatted by txm, never taken from a string). */
    o.lock_timeout_ms = TXM_TX_TIMEOUT_MAX_MS;
    o.statement_timeout_ms = TXM_TX_TIMEOUT_MAX_MS;
    CONF_OK(txm_begin(&t, conf.c, &o));
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 1);

    /* Under a test baseline the outermost user level is a savepoint: refused, not ignored. */
    CONF_OK(txm_test_baseline(conf.c));
    o.lock_timeout_ms = 100;
    CONF_RC(TXM_ENOTSUPPORTED, txm_begin(&t, conf.c, &o));
    CONF_OK(txm_test_end(conf.c));
}

/* A caller compiled against version 1 of the struct (three fields) is still served. */
Test(timeouts, version_1_options_accepted, .init = conf_init, .fini = conf_fini)
{
    struct v1_options {
        unsigned version;
        unsigned flags;
        txm_isolation isolation;
    } v1 = {1, 0, TXM_ISOLATION_DEFAULT};
    txm_tx *t;
    CONF_OK(txm_begin(&t, conf.c, (const txm_tx_options *)(const void *)&v1));
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

/* txm_batch at depth 0 carries the options of its own transaction. */
Test(timeouts, batch_carries_timeouts, .init = conf_init, .fini = conf_fini, .timeout = 120)
{
    need_timeouts();
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    txm_batch_options bo;
    txm_batch_stmt st[2];
    memset(st, 0, sizeof st);
    o.statement_timeout_ms = 150;
    CONF_OK(txm_batch_options_init(&bo, TXM_BATCH_OPTIONS_VERSION));
    bo.tx = &o;
    st[0].sql = "UPDATE t_counter SET n = n + 1 WHERE id = 2";
    st[1].sql = long_statement();
    int rc = txm_batch(conf.c, st, 2, &bo);
    cr_assert(rc == TXM_ECANCELED, "expected TXM_ECANCELED, got %s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert(conf_counter(conf.c, 2) == 100, "the batch was rolled back");
}

/* A transaction with timeouts that the engine ends by itself (deadlock victim: the server rolled
 * it back, no COMMIT/ROLLBACK carries the restore) still leaves the session's own values behind. */
typedef struct waiter {
    txm_conn *c;
    int rc;
} waiter;

static void *update_row_2(void *arg)
{
    waiter *w = arg;
    w->rc = txm_exec(w->c, "UPDATE t_counter SET n = n + 1 WHERE id = 2", NULL, 0, NULL);
    return NULL;
}

Test(timeouts, session_values_back_after_deadlock, .init = conf_init_shared, .fini = conf_fini, .timeout = 120)
{
    need_timeouts();
    if (conf_is_embedded())
        CONF_SKIP("SQLite has no row locks to deadlock on (BEGIN IMMEDIATE serializes writers)");
    txm_conn *a = open_patient();
    txm_conn *b = open_patient();
    const char *q = session_lock_setting_sql();
    int64_t before = conf_i64(b, q);
    txm_tx *ta, *tb;
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    waiter w = {a, -1};
    pthread_t th;
    int rc;

    o.lock_timeout_ms = 20000; /* long: the deadlock detector, not the timeout, ends the wait */
    CONF_OK(txm_begin(&tb, b, &o));
    CONF_OK(txm_exec(b, "UPDATE t_counter SET n = n + 1 WHERE id = 2", NULL, 0, NULL));
    CONF_OK(txm_begin(&ta, a, NULL));
    CONF_OK(txm_exec(a, "UPDATE t_counter SET n = n + 1 WHERE id = 1", NULL, 0, NULL));
    /* a changes more rows: InnoDB rolls back the lighter transaction, b. */
    for (int i = 1; i <= 20; i++)
        CONF_OK(conf_item(a, i));
    cr_assert(pthread_create(&th, NULL, update_row_2, &w) == 0); /* a waits for b */
    {
        struct timespec ts = {0, 300000000L}; /* let a's wait begin (the outcome holds either way) */
        nanosleep(&ts, NULL);
    }
    rc = txm_exec(b, "UPDATE t_counter SET n = n + 1 WHERE id = 1", NULL, 0, NULL); /* b waits for a */
    if (rc == 0) {
        CONF_OK(txm_commit(tb));
    } else {
        cr_assert(rc == TXM_EDEADLOCK, "expected a deadlock, got %s: %s", txm_err_name(rc),
                  txm_error_last()->message);
        txm_rollback(tb);
    }
    pthread_join(th, NULL);
    fprintf(stderr, "[%s] deadlock: b (with timeouts) %s\n", conf.driver, rc ? "was the victim" : "won");
    if (w.rc == 0)
        CONF_OK(txm_commit(ta));
    else
        txm_rollback(ta);
    cr_assert(rc != 0 || w.rc != 0, "one of the two was the deadlock victim");
    cr_assert(conf_i64(b, q) == before, "after the deadlock the session setting is %lld, was %lld",
              (long long)conf_i64(b, q), (long long)before);
    txm_close(a);
    txm_close(b);
}
