/* Retrying autocommit statements (txm_open_options.autocommit_retries, URL parameter
 * txm_autocommit_retries; docs/semantics.md "Retrying autocommit statements"), on every driver.
 * The failures are injected by the fault driver around the real one (docs/fault-driver.md), at
 * exactly the statement the test names; the real-contention tests are in tests/pg and
 * tests/mysql (SQLite has no deadlock or serialization failure outside a transaction). */
#include "harness.h"
#include "txm/fault.h"

#include <pthread.h>
#include <stdlib.h>

/* The test's own connection through the fault driver to conf.url (already fault+ when the suite
 * runs through the fault driver), with `param` ("k=v", may be NULL) added to the URL. */
static txm_conn *open_fault(const char *param, const txm_open_options *o)
{
    char url[2300];
    txm_conn *c = NULL;
    const char *base = conf.url;
    int n = snprintf(url, sizeof url, "%s%s", strncmp(base, "fault+", 6) == 0 ? "" : "fault+", base), rc;
    cr_assert(n > 0 && (size_t)n < sizeof url);
    if (param) {
        int m = snprintf(url + n, sizeof url - (size_t)n, "%c%s", strchr(base, '?') ? '&' : '?', param);
        cr_assert(m > 0 && (size_t)m < sizeof url - (size_t)n);
    }
    rc = txm_open(&c, url, o);
    cr_assert(rc == 0, "txm_open(fault+, %s) failed: %s: %s", param ? param : "-", txm_err_name(rc),
              txm_error_last()->message);
    return c;
}

static txm_open_options retries_opt(unsigned n)
{
    txm_open_options o;
    cr_assert(txm_open_options_init(&o, TXM_OPEN_OPTIONS_VERSION) == 0);
    o.autocommit_retries = n;
    return o;
}

static int insert_item(txm_conn *c, int64_t id)
{
    txm_value p[2] = {txm_int(id), txm_text("ac")};
    return txm_exec(c, "INSERT INTO t_item (id, name) VALUES (?, ?)", p, 2, NULL);
}

static uint64_t ac_retries(txm_conn *c)
{
    txm_stats s;
    txm_stats_get(c, &s);
    return s.autocommit_retries;
}

Test(autocommit_retry, off_by_default_returns_raw_error, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *c = open_fault(NULL, NULL);
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement"));
    CONF_RC(TXM_EDEADLOCK, insert_item(c, 1));
    cr_assert(txm_fault_count(c) == 1);
    cr_assert(ac_retries(c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0);
    txm_close(c);
}

Test(autocommit_retry, option_retries_deadlock_until_success, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o = retries_opt(2);
    txm_conn *c = open_fault(NULL, &o);
    txm_stats st;
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement&fault_times=2"));
    CONF_OK(insert_item(c, 1));
    txm_stats_get(c, &st);
    cr_assert(txm_fault_count(c) == 2, "faults injected: %lu", txm_fault_count(c));
    cr_assert(st.autocommit_retries == 2 && st.retries == 0, "autocommit_retries=%llu retries=%llu",
              (unsigned long long)st.autocommit_retries, (unsigned long long)st.retries);
    cr_assert(conf_count(conf.c, "t_item") == 1, "the statement must take effect exactly once");
    cr_assert(txm_depth(c) == 0);
    txm_close(c);
}

Test(autocommit_retry, url_param_retries_queries_on_serialization, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *c = open_fault("txm_autocommit_retries=3", NULL);
    txm_rows *r = NULL;
    int64_t v = -1;
    CONF_OK(insert_item(c, 7));
    CONF_OK(txm_fault_set(c, "fault=serialization&fault_at=statement&fault_times=2"));
    CONF_OK(txm_query_i64(c, &v, "SELECT id FROM t_item WHERE id = 7", NULL, 0));
    cr_assert(v == 7);
    cr_assert(ac_retries(c) == 2);
    CONF_OK(txm_fault_set(c, "fault=serialization&fault_at=statement&fault_times=3"));
    CONF_OK(txm_query(&r, c, "SELECT id, name FROM t_item ORDER BY id", NULL, 0));
    cr_assert(txm_rows_count(r) == 1 && txm_rows_next(r) && txm_rows_get_i64(r, 0) == 7,
              "a retried query returns exactly the rows of its successful attempt");
    txm_rows_free(r);
    cr_assert(ac_retries(c) == 5 && txm_fault_count(c) == 5); /* the count is cumulative */
    txm_close(c);
}

Test(autocommit_retry, url_param_wins_over_option, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options five = retries_opt(5), none = retries_opt(0);
    txm_conn *off = open_fault("txm_autocommit_retries=0", &five);
    txm_conn *on = open_fault("txm_autocommit_retries=1", &none);
    CONF_OK(txm_fault_set(off, "fault=deadlock&fault_at=statement"));
    CONF_RC(TXM_EDEADLOCK, insert_item(off, 1));
    cr_assert(ac_retries(off) == 0);
    CONF_OK(txm_fault_set(on, "fault=deadlock&fault_at=statement"));
    CONF_OK(insert_item(on, 2));
    cr_assert(ac_retries(on) == 1);
    txm_close(off);
    txm_close(on);
}

Test(autocommit_retry, gives_up_after_the_budget_with_the_raw_error, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o = retries_opt(2);
    txm_conn *c = open_fault(NULL, &o);
    conf_err e;
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement&fault_times=always"));
    CONF_RC(TXM_EDEADLOCK, insert_item(c, 1));
    e = conf_last_err();
    cr_assert(conf_contains(e.message, "injected by the fault driver"), "message: %s", e.message);
    cr_assert(txm_fault_count(c) == 3, "1 attempt + 2 retries, got %lu", txm_fault_count(c));
    cr_assert(ac_retries(c) == 2);
    cr_assert(conf_count(conf.c, "t_item") == 0);
    txm_close(c);
}

Test(autocommit_retry, never_inside_a_transaction, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o = retries_opt(3);
    txm_conn *c = open_fault(NULL, &o);
    txm_tx *t = conf_begin(c);
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement"));
    CONF_RC(TXM_EDEADLOCK, insert_item(c, 1));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    CONF_RC(TXM_ETX_ABORTED, insert_item(c, 2)); /* still poisoned: nothing was retried */
    CONF_OK(txm_rollback(t));
    cr_assert(txm_fault_count(c) == 1 && ac_retries(c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0);
    txm_close(c);
}

Test(autocommit_retry, never_under_a_test_baseline, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o = retries_opt(3);
    txm_conn *c = open_fault(NULL, &o);
    CONF_OK(txm_test_baseline(c));
    cr_assert(txm_depth(c) == 0);
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement"));
    CONF_RC(TXM_EDEADLOCK, insert_item(c, 1));
    cr_assert(txm_fault_count(c) == 1 && ac_retries(c) == 0);
    txm_test_end(c);
    txm_close(c);
}

Test(autocommit_retry, never_a_lost_connection_or_lock_timeout, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o = retries_opt(3);
    txm_conn *c = open_fault(NULL, &o);
    CONF_OK(txm_fault_set(c, "fault=lock_timeout&fault_at=statement"));
    CONF_RC(TXM_ELOCK_TIMEOUT, insert_item(c, 1));
    cr_assert(txm_fault_count(c) == 1 && ac_retries(c) == 0);
    /* The statement may have run before the connection died: running it again could apply it twice. */
    CONF_OK(txm_fault_set(c, "fault=disconnect&fault_at=statement"));
    CONF_RC(TXM_ECONNECTION, insert_item(c, 2));
    cr_assert(txm_fault_count(c) == 2 && ac_retries(c) == 0); /* the count is cumulative */
    CONF_RC(TXM_ECONNECTION, insert_item(c, 3)); /* lost until txm_reconnect */
    txm_close(c);
}

Test(autocommit_retry, batch_is_not_an_autocommit_statement, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o = retries_opt(3);
    txm_conn *c = open_fault(NULL, &o);
    txm_value p[2] = {txm_int(1), txm_text("b")};
    txm_batch_stmt s;
    memset(&s, 0, sizeof s);
    s.sql = "INSERT INTO t_item (id, name) VALUES (?, ?)";
    s.params = p;
    s.nparams = 2;
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement"));
    CONF_RC(TXM_EDEADLOCK, txm_batch(c, &s, 1, NULL)); /* its own transaction: its own retry option */
    cr_assert(txm_fault_count(c) == 1 && ac_retries(c) == 0);
    txm_close(c);
}

typedef struct log_seen {
    int retry_lines;
    int password_lines;
    char first[600];
} log_seen;

static void collect_log(txm_log_level level, const char *msg, void *payload)
{
    log_seen *s = payload;
    (void)level;
    if (strstr(msg, "txm_exec") && strstr(msg, "TXM_EDEADLOCK") && s->retry_lines++ == 0)
        snprintf(s->first, sizeof s->first, "%s", msg);
    if (strstr(msg, "txm-secret"))
        s->password_lines++;
}

Test(autocommit_retry, logs_each_retry_without_secrets, .init = conf_init_shared, .fini = conf_fini)
{
    log_seen seen = {0, 0, ""};
    txm_open_options o = retries_opt(2);
    txm_conn *c;
    o.log = collect_log;
    o.log_payload = &seen;
    o.log_level = TXM_LOG_DEBUG;
    c = open_fault(NULL, &o);
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement&fault_times=2"));
    CONF_OK(insert_item(c, 1));
    fprintf(stderr, "[%s] retry log line: %s\n", conf.driver, seen.first);
    cr_assert(seen.retry_lines == 2, "one INFO line per retry, got %d", seen.retry_lines);
    cr_assert(seen.password_lines == 0);
    txm_close(c);
}

Test(autocommit_retry, version_1_options_leave_it_off, .init = conf_init_shared, .fini = conf_fini)
{
    txm_open_options o;
    txm_conn *c;
    CONF_OK(txm_open_options_init(&o, 1));
    cr_assert(o.version == 1);
    o.autocommit_retries = 9; /* beyond a version 1 struct: a v1 caller has other bytes there */
    c = open_fault(NULL, &o);
    CONF_OK(txm_fault_set(c, "fault=deadlock&fault_at=statement"));
    CONF_RC(TXM_EDEADLOCK, insert_item(c, 1));
    cr_assert(ac_retries(c) == 0, "a version 1 struct has no autocommit_retries field");
    txm_close(c);
}

/* Every driver refuses URL parameters it does not know (libpq: "invalid URI query parameter"):
 * this open succeeds only if txm removed its own parameter before the driver saw the URL. */
Test(autocommit_retry, url_param_never_reaches_the_driver, .init = conf_init_shared, .fini = conf_fini)
{
    char url[2300];
    txm_conn *c = NULL;
    int rc = txm_open(&c, conf_url_with(url, sizeof url, "txm_autocommit_retries=4"), NULL);
    cr_assert(rc == 0, "open with txm_autocommit_retries failed: %s: %s", txm_err_name(rc),
              txm_error_last()->message);
    CONF_OK(insert_item(c, 1));
    txm_close(c);
    c = NULL;
    rc = txm_open(&c, conf_url_with(url, sizeof url, "txm_no_such_parameter=4"), NULL);
    cr_assert(rc != 0, "the %s driver accepted an unknown parameter: the test above proves nothing", conf.driver);
    CONF_RC(TXM_EINVALID, txm_open(&c, conf_url_with(url, sizeof url, "txm_autocommit_retries=101"), NULL));
    cr_assert(conf_contains(txm_error_last()->message, "txm_autocommit_retries"));
    cr_assert(conf.c != NULL && conf_count(conf.c, "t_item") == 1);
}

/* ---- real deadlocks between single autocommit statements (servers) -------------------------- */

/* One statement that locks row `first`, waits 20 ms, then changes row `second` (and, on
 * MySQL/MariaDB, `first` too): two sessions running it with the rows swapped deadlock inside
 * their single autocommit statements. */
#define AC_ROUNDS 12

typedef struct ac_worker {
    int first, second;
    unsigned retries_opt;
    pthread_barrier_t *bar;
    int ok, deadlocks, other_failures, other_code;
    uint64_t autocommit_retries;
    char other_msg[300];
} ac_worker;

static int ac_statement(txm_conn *c, int first, int second)
{
    if (conf_is("postgresql")) {
        txm_value p[2] = {txm_int(second), txm_int(first)};
        return txm_exec(c,
                        "UPDATE t_counter SET n = n + 1 WHERE id = ? AND (SELECT count(*) FROM (SELECT id FROM "
                        "t_counter WHERE id = ? FOR UPDATE) l, pg_sleep(0.02)) > 0",
                        p, 2, NULL);
    }
    /* InnoDB locks each row as the scan reads it, in the ORDER BY's index order, and the WHERE
     * clause (with its SLEEP) runs before the scan moves on to the next row. */
    return txm_exec(c,
                    first < second ? "UPDATE t_counter SET n = n + 1 WHERE id IN (1, 2) AND SLEEP(0.02) = 0 ORDER BY id"
                                   : "UPDATE t_counter SET n = n + 1 WHERE id IN (1, 2) AND SLEEP(0.02) = 0 ORDER BY "
                                     "id DESC",
                    NULL, 0, NULL);
}

static void *ac_main(void *arg)
{
    ac_worker *w = arg;
    txm_open_options o;
    txm_conn *c = NULL;
    int i, rc;
    txm_stats st;
    txm_open_options_init(&o, TXM_OPEN_OPTIONS_VERSION);
    o.autocommit_retries = w->retries_opt;
    rc = txm_open(&c, conf.url, &o);
    for (i = 0; i < AC_ROUNDS; i++) {
        pthread_barrier_wait(w->bar);
        if (rc != 0)
            continue;
        int r = ac_statement(c, w->first, w->second);
        if (r == TXM_EDEADLOCK || r == TXM_ESERIALIZATION)
            w->deadlocks++;
        else if (r != 0 && w->other_failures++ == 0) {
            w->other_code = r;
            snprintf(w->other_msg, sizeof w->other_msg, "%s", txm_error_last()->message);
        }
    }
    if (rc == 0) {
        txm_stats_get(c, &st);
        w->autocommit_retries = st.autocommit_retries;
        txm_close(c);
        w->ok = 1;
    }
    return NULL;
}

/* Runs the two workers; returns the rows' total change. */
static int64_t ac_run(unsigned retries_opt, ac_worker w[2])
{
    pthread_barrier_t bar;
    pthread_t th[2];
    int64_t before = conf_counter(conf.c, 1) + conf_counter(conf.c, 2);
    int k;
    pthread_barrier_init(&bar, NULL, 2);
    memset(w, 0, 2 * sizeof *w);
    for (k = 0; k < 2; k++) {
        w[k].first = k == 0 ? 1 : 2;
        w[k].second = k == 0 ? 2 : 1;
        w[k].retries_opt = retries_opt;
        w[k].bar = &bar;
        pthread_create(&th[k], NULL, ac_main, &w[k]);
    }
    for (k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&bar);
    for (k = 0; k < 2; k++) {
        cr_assert(w[k].ok, "worker %d could not open its connection", k);
        cr_assert(w[k].other_failures == 0, "worker %d: unexpected %s: %s", k, txm_err_name(w[k].other_code),
                  w[k].other_msg);
    }
    return conf_counter(conf.c, 1) + conf_counter(conf.c, 2) - before;
}

Test(autocommit_retry, real_deadlocks_between_autocommit_statements, .init = conf_init_shared, .fini = conf_fini,
     .timeout = 120)
{
    ac_worker w[2];
    int64_t per_ok = conf_is("postgresql") ? 1 : 2, changed;
    int raw;
    if (conf_is_embedded())
        CONF_SKIP("SQLite has no deadlock or serialization failure outside a transaction (busy_timeout waits)");
    if (!conf_is("postgresql") && !conf_is("mysql"))
        CONF_SKIP("no deadlocking single statement known for the %s driver", conf.driver);

    /* Off (the default): the deadlock victim's statement fails with the raw error. */
    changed = ac_run(0, w);
    raw = w[0].deadlocks + w[1].deadlocks;
    fprintf(stderr, "[%s] retries off: %d of %d autocommit statements failed with a deadlock\n", conf.driver, raw,
            2 * AC_ROUNDS);
    cr_assert(raw > 0, "no deadlock in %d rounds: the workload no longer deadlocks", AC_ROUNDS);
    cr_assert(w[0].autocommit_retries + w[1].autocommit_retries == 0);
    cr_assert(changed == per_ok * (2 * AC_ROUNDS - raw), "a failed statement changed rows: %lld",
              (long long)changed);

    /* On: every statement succeeds, each exactly once. */
    changed = ac_run(TXM_AUTOCOMMIT_RETRIES_MAX, w);
    fprintf(stderr, "[%s] retries on: %llu autocommit retries, %d failures in %d statements\n", conf.driver,
            (unsigned long long)(w[0].autocommit_retries + w[1].autocommit_retries), w[0].deadlocks + w[1].deadlocks,
            2 * AC_ROUNDS);
    cr_assert(w[0].deadlocks + w[1].deadlocks == 0, "a statement still failed");
    cr_assert(w[0].autocommit_retries + w[1].autocommit_retries > 0, "no statement was retried");
    cr_assert(changed == per_ok * 2 * AC_ROUNDS, "every statement must take effect exactly once: %lld",
              (long long)changed);
}
