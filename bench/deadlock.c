/*
 * Group "deadlock": retry policies side by side under real lock conflicts. N workers (2, 4, 8;
 * --quick: 2), each with its own connection, loop for --dl-seconds over two rows, each
 * transaction inside txm_retry (max_attempts 100, retry on deadlock, serialization failure and
 * lock timeout), in three scenarios:
 *   opposite-order  even workers update row 1 then row 2, odd workers row 2 then row 1:
 *                   deadlocks (PostgreSQL detects them after deadlock_timeout, 20 ms on the test
 *                   server; InnoDB at once).
 *   serializable    SERIALIZABLE: read both rows (SELECT SUM), then update row 1 and row 2 in
 *                   the same order. PostgreSQL fails the later writer with a serialization
 *                   failure (40001); InnoDB's SERIALIZABLE makes the SELECT take shared locks,
 *                   so two writers' upgrades deadlock (1213).
 *   same-order      every worker updates row 1 then row 2: lock waiting only (the reference;
 *                   default policy only, it never retries).
 * Policies (TXM_RETRY_POLICY_INIT otherwise: base 2 ms, cap 200 ms):
 *   none         base_delay_us 0: the next attempt starts at once;
 *   exponential  TXM_RETRY_JITTER_NONE: sleep min(cap, base * 2^(attempt-1)) exactly;
 *   full-jitter  TXM_RETRY_JITTER_FULL (txm's default): sleep rand(0, that bound).
 *   full-jitter-x2  full jitter with base and cap doubled (4 ms, 400 ms): the same MEAN sleep as
 *                exponential, so that the two differ in the randomness alone.
 * SQLite (file) takes the write lock at BEGIN IMMEDIATE, so its workers only wait and never
 * retry: it runs full-jitter only. The repetitions are interleaved (repetition 1 of every policy
 * and worker count, then repetition 2, ...) so drift hits every policy alike. Reported per
 * policy and worker count: committed transactions per second, retries per committed transaction
 * (the wasted work), p50 and p99 latency of one txm_retry call (attempts and backoff included),
 * each the median over the repetitions with the range, transactions that gave up, the retry
 * causes, and COUNTER MISMATCH if row 1 did not grow by exactly the number of commits.
 */
#include "bench.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL_MAX_ATTEMPTS 100
#define DL_MAX_WORKERS 8

enum { C_DEADLOCK, C_SERIAL, C_LOCKTO, C_OTHER, C_N };
static const char *const cause_names[C_N] = {"deadlock", "serialization", "lock_timeout", "other"};

enum { P_NONE, P_EXP, P_FULL, P_FULL2, P_N };
static const char *const policy_names[P_N] = {"none", "exponential", "full-jitter", "full-jitter-x2"};

typedef enum { S_OPPOSITE, S_SERIAL, S_SAME, S_N } dl_scenario;
static const char *const scenario_names[S_N] = {"opposite-order", "serializable", "same-order"};

static const unsigned worker_counts[] = {2, 4, 8};
#define DL_NW (sizeof worker_counts / sizeof worker_counts[0])

typedef struct dl_thread {
    const bench_engine *e;
    dl_scenario sc;
    int64_t first, second;
    const txm_retry_policy *pol;
    double seconds;
    pthread_barrier_t *bar;
    int ok;
    char err[512];
    uint64_t commits, retries, gave_up, cause[C_N];
    double *lat_ms; /* one per txm_retry call, grown by doubling */
    size_t nlat, cap;
    double elapsed;
} dl_thread;

/* One configuration's repetition. */
typedef struct dl_rep {
    int done, failed;
    double commits_per_s, retries_per_commit, p50_ms, p99_ms;
    uint64_t commits, retries, gave_up, cause[C_N];
    int counter_ok;
    char err[512];
} dl_rep;

static const char UPDATE_SQL[] = "UPDATE txm_bench_dl SET v = v + 1 WHERE id = ?";

static int dl_body(txm_conn *c, void *payload)
{
    dl_thread *t = payload;
    txm_value a = txm_int(t->first), b = txm_int(t->second);
    int rc;
    if (t->sc == S_SERIAL) {
        int64_t sum;
        if ((rc = txm_query_i64(c, &sum, "SELECT SUM(v) FROM txm_bench_dl WHERE id IN (1, 2)", NULL, 0)) != 0)
            return rc;
    }
    rc = txm_exec(c, UPDATE_SQL, &a, 1, NULL);
    return rc ? rc : txm_exec(c, UPDATE_SQL, &b, 1, NULL);
}

static void dl_before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    dl_thread *t = payload;
    int code = err->code == TXM_ETX_ABORTED && err->cause ? err->cause->code : err->code;
    (void)attempt;
    t->retries++;
    t->cause[code == TXM_EDEADLOCK ? C_DEADLOCK : code == TXM_ESERIALIZATION ? C_SERIAL
             : code == TXM_ELOCK_TIMEOUT ? C_LOCKTO : C_OTHER]++;
}

static int push_latency(dl_thread *t, double ms)
{
    if (t->nlat == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        double *p = realloc(t->lat_ms, cap * sizeof *p);
        if (!p)
            return -1;
        t->lat_ms = p;
        t->cap = cap;
    }
    t->lat_ms[t->nlat++] = ms;
    return 0;
}

static void *dl_main(void *arg)
{
    dl_thread *t = arg;
    txm_conn *c = NULL;
    txm_retry_policy pol = *t->pol;
    double t0, now;
    int rc = bench_txm_open(&c, t->e, t->err, sizeof t->err);

    pol.before_retry = dl_before_retry;
    pol.payload = t;
    pthread_barrier_wait(t->bar);
    if (rc != 0)
        return NULL;
    t0 = now = bench_now();
    while (now - t0 < t->seconds) {
        double start = now;
        rc = txm_retry(c, &pol, dl_body, t);
        now = bench_now();
        if (rc == 0)
            t->commits++;
        else {
            t->gave_up++;
            bench_txm_err(t->err, sizeof t->err);
        }
        if (push_latency(t, (now - start) * 1e3) != 0) {
            snprintf(t->err, sizeof t->err, "out of memory");
            break;
        }
        if (rc == TXM_ECONNECTION || rc == TXM_EMISUSE || rc == TXM_ESYNTAX || rc == TXM_EINVALID)
            break;
    }
    t->elapsed = now - t0;
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

/* Row 1's value (every committed transaction adds 1 to it), or -1. */
static int64_t row1(const bench_engine *e)
{
    txm_conn *c = NULL;
    char err[512];
    int64_t v = -1;
    if (bench_txm_open(&c, e, err, sizeof err) != 0)
        return -1;
    if (txm_query_i64(c, &v, "SELECT v FROM txm_bench_dl WHERE id = 1", NULL, 0) != 0)
        v = -1;
    txm_close(c);
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, unsigned p)
{
    size_t i = n * p / 100;
    return n ? sorted[i < n ? i : n - 1] : 0;
}

static void policy_of(unsigned p, dl_scenario sc, txm_retry_policy *out)
{
    static const txm_tx_options serializable = {.version = TXM_TX_OPTIONS_VERSION,
                                                .isolation = TXM_ISOLATION_SERIALIZABLE};
    txm_retry_policy_init(out, TXM_RETRY_POLICY_VERSION);
    out->max_attempts = DL_MAX_ATTEMPTS;
    out->retry_on = TXM_RETRY_DEFAULT | TXM_RETRY_LOCK_TIMEOUT;
    if (p == P_NONE)
        out->base_delay_us = 0;
    else if (p == P_EXP)
        out->jitter = TXM_RETRY_JITTER_NONE;
    else if (p == P_FULL2) {
        out->base_delay_us *= 2;
        out->max_delay_us *= 2;
    }
    if (sc == S_SERIAL)
        out->tx = &serializable;
}

/* One repetition of one configuration: `workers` threads for o->dl_rep_s seconds. */
static void run_rep(const bench_opts *o, const bench_engine *e, dl_scenario sc, unsigned p, unsigned workers,
                    dl_rep *r)
{
    pthread_barrier_t bar;
    pthread_t th[DL_MAX_WORKERS];
    dl_thread t[DL_MAX_WORKERS];
    txm_retry_policy pol;
    double el = 0, *lat = NULL;
    size_t nlat = 0, k, j;
    int64_t before = row1(e), after;

    memset(r, 0, sizeof *r);
    memset(t, 0, sizeof t);
    policy_of(p, sc, &pol);
    pthread_barrier_init(&bar, NULL, workers);
    for (k = 0; k < workers; k++) {
        int flip = sc == S_OPPOSITE && k % 2 == 1;
        t[k].e = e;
        t[k].sc = sc;
        t[k].pol = &pol;
        t[k].seconds = o->dl_rep_s;
        t[k].bar = &bar;
        t[k].first = flip ? 2 : 1;
        t[k].second = flip ? 1 : 2;
        pthread_create(&th[k], NULL, dl_main, &t[k]);
    }
    for (k = 0; k < workers; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&bar);
    r->done = 1;
    for (k = 0; k < workers; k++) {
        nlat += t[k].nlat;
        if (!t[k].ok) {
            r->failed = 1;
            bench_strlcpy(r->err, t[k].err, sizeof r->err);
        }
    }
    lat = nlat ? malloc(nlat * sizeof *lat) : NULL;
    if (nlat && !lat) {
        r->failed = 1;
        bench_strlcpy(r->err, "out of memory", sizeof r->err);
    }
    nlat = 0;
    for (k = 0; k < workers; k++) {
        r->commits += t[k].commits;
        r->retries += t[k].retries;
        r->gave_up += t[k].gave_up;
        for (j = 0; j < C_N; j++)
            r->cause[j] += t[k].cause[j];
        if (t[k].elapsed > el)
            el = t[k].elapsed;
        if (t[k].gave_up && !r->failed)
            bench_strlcpy(r->err, t[k].err, sizeof r->err);
        if (lat && t[k].nlat)
            memcpy(lat + nlat, t[k].lat_ms, t[k].nlat * sizeof *lat);
        nlat += lat ? t[k].nlat : 0;
        free(t[k].lat_ms);
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    r->commits_per_s = el > 0 ? (double)r->commits / el : 0;
    r->retries_per_commit = r->commits ? (double)r->retries / (double)r->commits : 0;
    r->p50_ms = pct(lat, nlat, 50);
    r->p99_ms = pct(lat, nlat, 99);
    after = row1(e);
    r->counter_ok = before >= 0 && after - before == (int64_t)r->commits;
    free(lat);
}

/* Median of the repetitions' field at `off`, with the range. */
static double stat_of(const dl_rep *reps, unsigned n, size_t off, double *lo, double *hi)
{
    double v[BENCH_MAX_REPS];
    unsigned i, m = 0;
    for (i = 0; i < n; i++)
        if (reps[i].done && !reps[i].failed)
            v[m++] = *(const double *)(const void *)((const char *)&reps[i] + off);
    if (!m) {
        *lo = *hi = 0;
        return 0;
    }
    qsort(v, m, sizeof *v, cmp_double);
    *lo = v[0];
    *hi = v[m - 1];
    return bench_median(v, m);
}

static void report(const bench_engine *e, dl_scenario sc, unsigned p, unsigned workers, const dl_rep *reps,
                   unsigned n)
{
    static const struct {
        const char *metric;
        size_t off;
    } m[] = {{"commits_per_s", offsetof(dl_rep, commits_per_s)},
             {"retries_per_commit", offsetof(dl_rep, retries_per_commit)},
             {"p50_ms", offsetof(dl_rep, p50_ms)},
             {"p99_ms", offsetof(dl_rep, p99_ms)}};
    double med[4], lo[4], hi[4];
    uint64_t commits = 0, gave_up = 0, cause[C_N] = {0};
    char cas[64], causes[160] = "", err[512] = "";
    size_t len = 0;
    unsigned i, j, ok = 1, failed = 0;

    for (i = 0; i < n; i++) {
        if (reps[i].failed) {
            failed = 1;
            bench_strlcpy(err, reps[i].err, sizeof err);
            continue;
        }
        commits += reps[i].commits;
        gave_up += reps[i].gave_up;
        ok &= (unsigned)reps[i].counter_ok;
        for (j = 0; j < C_N; j++)
            cause[j] += reps[i].cause[j];
        if (reps[i].gave_up && !err[0])
            bench_strlcpy(err, reps[i].err, sizeof err);
    }
    snprintf(cas, sizeof cas, "%s/w%u", policy_names[p], workers);
    if (failed && !commits) {
        printf("   %-11s %-14s %-18s failed: %s\n", e->name, scenario_names[sc], cas, err);
        bench_record("deadlock", e->name, cas, scenario_names[sc], "failed", 1);
        bench_check("deadlock", e->name, cas, scenario_names[sc], "ran", 0, 1);
        return;
    }
    for (i = 0; i < 4; i++)
        med[i] = stat_of(reps, n, m[i].off, &lo[i], &hi[i]);
    for (j = 0; j < C_N; j++)
        if (cause[j] && len < sizeof causes) {
            int w = snprintf(causes + len, sizeof causes - len, "%s%s %llu", len ? ", " : "", cause_names[j],
                             (unsigned long long)cause[j]);
            if (w > 0)
                len += (size_t)w;
        }
    printf("   %-11s %-14s %-18s %8.0f %5.0f-%-6.0f %7.3f %5.3f-%-6.3f %7.2f %8.1f %5.1f-%-6.1f %5llu %7llu  %s%s\n",
           e->name, scenario_names[sc], cas, med[0], lo[0], hi[0], med[1], lo[1], hi[1], med[2], med[3], lo[3], hi[3],
           (unsigned long long)gave_up, (unsigned long long)commits, len ? causes : "-",
           ok ? "" : "  COUNTER MISMATCH");
    if (err[0])
        printf("   %-11s %-14s %-18s last give-up: %s\n", "", "", "", err);
    for (i = 0; i < 4; i++) {
        char name[48];
        bench_record("deadlock", e->name, cas, scenario_names[sc], m[i].metric, med[i]);
        snprintf(name, sizeof name, "%s_min", m[i].metric);
        bench_record("deadlock", e->name, cas, scenario_names[sc], name, lo[i]);
        snprintf(name, sizeof name, "%s_max", m[i].metric);
        bench_record("deadlock", e->name, cas, scenario_names[sc], name, hi[i]);
    }
    bench_record("deadlock", e->name, cas, scenario_names[sc], "gave_up", (double)gave_up);
    bench_record("deadlock", e->name, cas, scenario_names[sc], "committed", (double)commits);
    bench_record("deadlock", e->name, cas, scenario_names[sc], "counter_ok", ok);
    bench_check("deadlock", e->name, cas, scenario_names[sc], "counter_ok", ok, 1);
    for (j = 0; j < C_N; j++) {
        char name[48];
        snprintf(name, sizeof name, "retry_cause_%s", cause_names[j]);
        bench_record("deadlock", e->name, cas, scenario_names[sc], name, (double)cause[j]);
    }
    fflush(stdout);
}

/* Every policy and worker count of one scenario, repetitions interleaved. */
static void run_scenario(const bench_opts *o, const bench_engine *e, dl_scenario sc)
{
    static dl_rep reps[P_N][DL_NW][BENCH_MAX_REPS];
    unsigned nreps = o->reps ? o->reps : 3, nw = o->quick ? 1 : (unsigned)DL_NW, r, w, p;
    int one_policy = sc == S_SAME || e->kind == BENCH_SQLITE;

    if (nreps > BENCH_MAX_REPS)
        nreps = BENCH_MAX_REPS;
    memset(reps, 0, sizeof reps);
    for (r = 0; r < nreps; r++)
        for (w = 0; w < nw; w++)
            for (p = 0; p < P_N; p++) {
                if (one_policy && p != P_FULL)
                    continue;
                bench_progress("deadlock", "%s %s %s/w%u rep %u/%u", e->name, scenario_names[sc], policy_names[p],
                               worker_counts[w], r + 1, nreps);
                run_rep(o, e, sc, p, worker_counts[w], &reps[p][w][r]);
            }
    bench_progress_clear();
    for (w = 0; w < nw; w++)
        for (p = 0; p < P_N; p++)
            if (!one_policy || p == P_FULL)
                report(e, sc, p, worker_counts[w], reps[p][w], nreps);
}

int bench_group_deadlock(const bench_opts *o, bench_engine *engines, size_t n)
{
    size_t i;
    unsigned s;
    txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    printf("\n# deadlock: N workers x own connection on rows 1 and 2 of txm_bench_dl, each transaction in txm_retry\n");
    printf("#   (max_attempts %u; retry on deadlock, serialization, lock timeout). opposite-order: half the\n",
           DL_MAX_ATTEMPTS);
    printf("#   workers update row 2 first; serializable: SERIALIZABLE, SELECT SUM(v) of both rows, then update\n");
    printf("#   both in order; same-order: lock waiting only. Policies: none (base 0), exponential (no jitter,\n");
    printf("#   base %u us, cap %u us), full-jitter (txm's default), full-jitter-x2 (base and cap doubled: the\n",
           def.base_delay_us, def.max_delay_us);
    printf("#   mean sleep of exponential). %.2f s per repetition, %u repetitions\n", o->dl_rep_s, o->reps);
    printf("#   interleaved: median and range (lo-hi). retries/commit = wasted attempts per committed transaction;\n");
    printf("#   latency = one txm_retry call, in ms.\n");
    printf("   %-11s %-14s %-18s %8s %12s %7s %12s %7s %8s %12s %5s %7s  %s\n", "engine", "scenario", "policy/workers",
           "commit/s", "range", "retr/c", "range", "p50 ms", "p99 ms", "range", "gaveup", "commits", "retry causes");
    for (i = 0; i < n; i++) {
        bench_engine *e = &engines[i];
        char err[512];
        if (bench_skip_shared(e))
            continue;
        if (setup(e, err, sizeof err) != 0) {
            printf("   %-11s skipped: %s\n", e->name, err);
            continue;
        }
        for (s = 0; s < S_N; s++)
            run_scenario(o, e, (dl_scenario)s);
    }
    return 0;
}
