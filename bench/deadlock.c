/*
 * Group "deadlock": the retry path under real lock conflicts. Two threads, each with its own
 * connection, update the same two rows in a loop, each transaction inside txm_retry.
 *   opposite-order  thread A updates row 1 then row 2, thread B row 2 then row 1: deadlocks
 *                   (PostgreSQL detects them after deadlock_timeout, 20 ms on the test server;
 *                   InnoDB at once). SQLite takes the write lock at BEGIN IMMEDIATE, so there it
 *                   is plain lock waiting (busy timeout), never a deadlock.
 *   same-order      both threads update row 1 then row 2: lock waiting only (the reference).
 * Reported: committed transactions per second (both threads), retries per 1000 committed
 * transactions, transactions that gave up, and the error categories that caused the retries.
 */
#include "bench.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define DL_MAX_ATTEMPTS 100

enum { C_DEADLOCK, C_SERIAL, C_LOCKTO, C_OTHER, C_N };
static const char *const cause_names[C_N] = {"deadlock", "serialization", "lock_timeout", "other"};

typedef struct dl_thread {
    const bench_engine *e;
    int64_t first, second;
    double seconds;
    pthread_barrier_t *bar;
    int ok;
    char err[512];
    uint64_t commits, retries, gave_up, cause[C_N];
    double elapsed;
} dl_thread;

static const char UPDATE_SQL[] = "UPDATE txm_bench_dl SET v = v + 1 WHERE id = ?";

static int dl_body(txm_conn *c, void *payload)
{
    dl_thread *t = payload;
    txm_value a = txm_int(t->first), b = txm_int(t->second);
    int rc = txm_exec(c, UPDATE_SQL, &a, 1, NULL);
    return rc ? rc : txm_exec(c, UPDATE_SQL, &b, 1, NULL);
}

static void dl_before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    dl_thread *t = payload;
    int code = err->code == TXM_ETX_ABORTED && err->cause ? err->cause->code : err->code;
    (void)attempt;
    t->cause[code == TXM_EDEADLOCK ? C_DEADLOCK : code == TXM_ESERIALIZATION ? C_SERIAL
             : code == TXM_ELOCK_TIMEOUT ? C_LOCKTO : C_OTHER]++;
}

static void *dl_main(void *arg)
{
    dl_thread *t = arg;
    txm_conn *c = NULL;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    txm_stats st;
    double t0, now;
    int rc = bench_txm_open(&c, t->e, t->err, sizeof t->err);

    pol.max_attempts = DL_MAX_ATTEMPTS;
    pol.retry_on = TXM_RETRY_DEFAULT | TXM_RETRY_LOCK_TIMEOUT;
    pol.before_retry = dl_before_retry;
    pol.payload = t;
    pthread_barrier_wait(t->bar);
    if (rc != 0)
        return NULL;
    t0 = now = bench_now();
    while (now - t0 < t->seconds) {
        rc = txm_retry(c, &pol, dl_body, t);
        if (rc == 0)
            t->commits++;
        else {
            t->gave_up++;
            bench_txm_err(t->err, sizeof t->err);
            if (rc == TXM_ECONNECTION || rc == TXM_EMISUSE || rc == TXM_ESYNTAX)
                break;
        }
        now = bench_now();
    }
    t->elapsed = now - t0;
    txm_stats_get(c, &st);
    t->retries = st.retries;
    t->ok = 1;
    txm_close(c);
    return NULL;
}

static int setup(const bench_engine *e, char *err, size_t errsz)
{
    txm_conn *c = NULL;
    char buf[512];
    int rc = bench_txm_open(&c, e, err, errsz);
    if (rc)
        return rc;
    if ((rc = txm_exec(c, e->dl_ddl, NULL, 0, NULL)) || (rc = txm_exec(c, "DELETE FROM txm_bench_dl", NULL, 0, NULL)) ||
        (rc = txm_exec(c, "INSERT INTO txm_bench_dl(id, v) VALUES (1, 0), (2, 0)", NULL, 0, NULL)))
        snprintf(err, errsz, "setup: %s", bench_txm_err(buf, sizeof buf));
    txm_close(c);
    return rc;
}

static void run_case(const bench_opts *o, const bench_engine *e, const char *cas, int opposite)
{
    unsigned reps = o->reps ? o->reps : 3, r, k;
    double tps[BENCH_MAX_REPS];
    uint64_t commits = 0, retries = 0, gave_up = 0, cause[C_N] = {0};
    char last_err[512] = "";
    unsigned done = 0;

    if (reps > BENCH_MAX_REPS)
        reps = BENCH_MAX_REPS;
    bench_progress("deadlock", "%s %s", e->name, cas);
    for (r = 0; r < reps; r++) {
        pthread_barrier_t bar;
        pthread_t th[2];
        dl_thread t[2];
        double el = 0;
        memset(t, 0, sizeof t);
        bench_progress_step("rep %u/%u", r + 1, reps);
        pthread_barrier_init(&bar, NULL, 2);
        for (k = 0; k < 2; k++) {
            t[k].e = e;
            t[k].seconds = o->dl_rep_s;
            t[k].bar = &bar;
            t[k].first = (opposite && k == 1) ? 2 : 1;
            t[k].second = (opposite && k == 1) ? 1 : 2;
            pthread_create(&th[k], NULL, dl_main, &t[k]);
        }
        for (k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
        pthread_barrier_destroy(&bar);
        bench_progress_clear();
        if (!t[0].ok || !t[1].ok) {
            printf("   %-12s %-15s failed: %s\n", e->name, cas, t[0].ok ? t[1].err : t[0].err);
            bench_record("deadlock", e->name, cas, "txm_retry", "failed", 1);
            return;
        }
        for (k = 0; k < 2; k++) {
            unsigned j;
            commits += t[k].commits;
            retries += t[k].retries;
            gave_up += t[k].gave_up;
            for (j = 0; j < C_N; j++)
                cause[j] += t[k].cause[j];
            if (t[k].elapsed > el)
                el = t[k].elapsed;
            if (t[k].gave_up)
                bench_strlcpy(last_err, t[k].err, sizeof last_err);
        }
        tps[done++] = el > 0 ? (double)(t[0].commits + t[1].commits) / el : 0;
    }
    {
        double sorted[BENCH_MAX_REPS], med, per1000 = commits ? 1000.0 * (double)retries / (double)commits : 0;
        char causes[128] = "";
        size_t len = 0;
        unsigned j;
        memcpy(sorted, tps, done * sizeof *sorted);
        med = bench_median(sorted, done);
        for (j = 0; j < C_N; j++)
            if (cause[j] && len < sizeof causes) {
                int w = snprintf(causes + len, sizeof causes - len, "%s%s %llu", len ? ", " : "", cause_names[j],
                                 (unsigned long long)cause[j]);
                if (w > 0)
                    len += (size_t)w;
            }
        printf("   %-12s %-15s %10.1f %15.1f %8llu %10llu  %s\n", e->name, cas, med, per1000,
               (unsigned long long)gave_up, (unsigned long long)commits, len ? causes : "-");
        if (last_err[0])
            printf("   %-12s %-15s last give-up: %s\n", "", "", last_err);
        fflush(stdout);
        bench_record("deadlock", e->name, cas, "txm_retry", "tx_per_s", med);
        bench_record("deadlock", e->name, cas, "txm_retry", "tx_per_s_min", sorted[0]);
        bench_record("deadlock", e->name, cas, "txm_retry", "tx_per_s_max", sorted[done - 1]);
        bench_record("deadlock", e->name, cas, "txm_retry", "retries_per_1000_tx", per1000);
        bench_record("deadlock", e->name, cas, "txm_retry", "gave_up", (double)gave_up);
        bench_record("deadlock", e->name, cas, "txm_retry", "committed", (double)commits);
        for (j = 0; j < C_N; j++) {
            char m[48];
            snprintf(m, sizeof m, "retry_cause_%s", cause_names[j]);
            bench_record("deadlock", e->name, cas, "txm_retry", m, (double)cause[j]);
        }
    }
}

int bench_group_deadlock(const bench_opts *o, bench_engine *engines, size_t n)
{
    size_t i;
    txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    printf("\n# deadlock: 2 threads x own connection, UPDATE txm_bench_dl SET v = v + 1 WHERE id = ? on rows 1 and 2,\n");
    printf("#   each transaction in txm_retry (max_attempts %u, backoff base %u us, cap %u us, retry on deadlock,\n",
           DL_MAX_ATTEMPTS, def.base_delay_us, def.max_delay_us);
    printf("#   serialization, lock timeout); %.2f s per repetition, median of %u; tx/s counts committed\n",
           o->dl_rep_s, o->reps);
    printf("#   transactions of both threads; retries per 1000 committed transactions.\n");
    printf("   %-12s %-15s %10s %15s %8s %10s  %s\n", "engine", "case", "tx/s", "retries/1000tx", "gave-up",
           "committed", "retry causes");
    for (i = 0; i < n; i++) {
        bench_engine *e = &engines[i];
        char err[512];
        if (e->skip[0] || e->no_txm[0]) {
            printf("   %-12s skipped: %s\n", e->name, e->skip[0] ? e->skip : e->no_txm);
            continue;
        }
        if (!e->shared_db) {
            printf("   %-12s skipped: every :memory: connection is a database of its own\n", e->name);
            continue;
        }
        if (setup(e, err, sizeof err) != 0) {
            printf("   %-12s skipped: %s\n", e->name, err);
            continue;
        }
        run_case(o, e, "opposite-order", 1);
        run_case(o, e, "same-order", 0);
    }
    return 0;
}
