/* N threads, each with its own connection, doing K read-modify-write increments in txm_retry at
 * SERIALIZABLE (where the driver honours isolation; SQLite is serial): the final count is exact
 * only if conflicts are detected, classified as retryable and retried. A server driver without
 * TXM_CAP_ISOLATION uses an atomic UPDATE n = n + 1 instead. */
#include "harness.h"

#include <pthread.h>

enum { N_THREADS = 4, K_INCREMENTS = 25 };

typedef struct worker {
    txm_conn *c;
    const txm_tx_options *tx;
    bool read_modify_write; /* else an atomic UPDATE n = n + 1 */
    int done;
    int calls;
    int rc;
    char message[256];
} worker;

static int increment(txm_conn *c, void *payload)
{
    worker *w = payload;
    w->calls++;
    if (!w->read_modify_write)
        return txm_exec(c, "UPDATE t_counter SET n = n + 1 WHERE id = 1", NULL, 0, NULL);
    int64_t n = 0;
    int rc = txm_query_i64(c, &n, "SELECT n FROM t_counter WHERE id = 1", NULL, 0);
    if (rc)
        return rc;
    txm_value p = txm_int(n + 1);
    return txm_exec(c, "UPDATE t_counter SET n = ? WHERE id = 1", &p, 1, NULL);
}

static void *run_worker(void *payload)
{
    worker *w = payload;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.retry_on = TXM_RETRY_DEADLOCK | TXM_RETRY_SERIALIZATION | TXM_RETRY_LOCK_TIMEOUT;
    pol.max_attempts = 200;
    pol.base_delay_us = 500;
    pol.max_delay_us = 20000;
    pol.tx = w->tx;
    for (int k = 0; k < K_INCREMENTS; k++) {
        w->rc = txm_retry(w->c, &pol, increment, w);
        if (w->rc) {
            snprintf(w->message, sizeof w->message, "%s", txm_error_last()->message);
            break;
        }
        w->done++;
    }
    return NULL;
}

Test(concurrency, threads_increment_exactly, .init = conf_init_shared, .fini = conf_fini, .timeout = 300)
{
    txm_tx_options opts = TXM_TX_OPTIONS_INIT;
    if (conf_has_cap(TXM_CAP_ISOLATION))
        opts.isolation = TXM_ISOLATION_SERIALIZABLE;
    worker w[N_THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N_THREADS; i++) {
        if (conf_is("sqlite")) {
            char url[2200];
            int rc = txm_open(&w[i].c, conf_url_with(url, sizeof url, "busy_timeout=5000"), NULL);
            cr_assert(rc == 0, "txm_open: %s: %s", txm_err_name(rc), txm_error_last()->message);
        } else {
            w[i].c = conf_open_other();
        }
        w[i].tx = &opts;
        /* SQLite serialises writers; elsewhere read-modify-write is safe only at SERIALIZABLE. */
        w[i].read_modify_write = conf_is("sqlite") || conf_has_cap(TXM_CAP_ISOLATION);
    }
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        cr_assert(pthread_create(&th[i], NULL, run_worker, &w[i]) == 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    int calls = 0;
    for (int i = 0; i < N_THREADS; i++) {
        cr_assert(w[i].rc == 0, "worker %d stopped after %d increments: %s: %s", i, w[i].done,
                  txm_err_name(w[i].rc), w[i].message);
        calls += w[i].calls;
    }
    fprintf(stderr, "[%s] %d threads x %d increments: %d attempts (%d retries)\n", conf.driver, N_THREADS,
            K_INCREMENTS, calls, calls - N_THREADS * K_INCREMENTS);
    cr_assert(conf_counter(conf.c, 1) == 100 + N_THREADS * K_INCREMENTS, "lost updates: counter %lld, expected %d",
              (long long)conf_counter(conf.c, 1), 100 + N_THREADS * K_INCREMENTS);
    for (int i = 0; i < N_THREADS; i++)
        txm_close(w[i].c);
}
