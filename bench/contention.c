/*
 * Group "contention": how many attempts a retry policy needs when N writers fight over ONE row.
 * N threads (--ct-writers, default 2,4,8), each with its own connection, run together
 * --ct-tx transactions in all (default 1000, split evenly), each a SERIALIZABLE read-modify-write
 * of the same row inside txm_retry:
 *     SELECT v FROM txm_bench_dl WHERE id = 1;  UPDATE txm_bench_dl SET v = ? WHERE id = 1
 * PostgreSQL answers the conflict with serialization failures (40001), InnoDB's SERIALIZABLE
 * turns the SELECT into a shared lock and the two upgrades into deadlocks (1213), SQLite takes
 * the write lock at BEGIN IMMEDIATE and makes the others wait (busy_timeout), never failing.
 * Each policy of --ct-policies (max_attempts/base_delay_us/max_delay_us/deadline_ms; "default"
 * is TXM_RETRY_POLICY_INIT) is measured for every writer count. Reported: transactions that gave
 * up, the attempts histogram, p50/p99/max latency of a txm_retry call (attempts and backoff
 * included), and the final counter check (committed increments == v).
 */
#include "bench.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CT_MAX_WRITERS 64
#define CT_HIST 33 /* attempts 1..32; the last bucket holds 33 and more */

typedef struct ct_policy {
    char name[64];
    txm_retry_policy p;
} ct_policy;

typedef struct ct_thread {
    const bench_engine *e;
    const txm_retry_policy *pol;
    unsigned tx;
    pthread_barrier_t *bar;
    int ok;
    char err[512];
    unsigned attempts; /* of the current txm_retry call */
    uint64_t committed, gave_up, hist[CT_HIST + 1];
    double *lat_us; /* one per transaction */
    unsigned cause_deadlock, cause_serial, cause_other;
    double t_start, t_end; /* bench_now() around the thread's transactions */
} ct_thread;

static int ct_body(txm_conn *c, void *payload)
{
    ct_thread *t = payload;
    txm_value v;
    int64_t cur;
    int rc;
    t->attempts++;
    rc = txm_query_i64(c, &cur, "SELECT v FROM txm_bench_dl WHERE id = 1", NULL, 0);
    if (rc)
        return rc;
    v = txm_int(cur + 1);
    return txm_exec(c, "UPDATE txm_bench_dl SET v = ? WHERE id = 1", &v, 1, NULL);
}

static void ct_before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    ct_thread *t = payload;
    int code = err->code == TXM_ETX_ABORTED && err->cause ? err->cause->code : err->code;
    (void)attempt;
    if (code == TXM_EDEADLOCK)
        t->cause_deadlock++;
    else if (code == TXM_ESERIALIZATION)
        t->cause_serial++;
    else
        t->cause_other++;
}

static void *ct_main(void *arg)
{
    ct_thread *t = arg;
    txm_conn *c = NULL;
    txm_retry_policy pol = *t->pol;
    unsigned i;
    int rc = bench_txm_open(&c, t->e, t->err, sizeof t->err);
    pol.before_retry = ct_before_retry;
    pol.payload = t;
    pthread_barrier_wait(t->bar);
    if (rc != 0)
        return NULL;
    t->t_start = bench_now();
    for (i = 0; i < t->tx; i++) {
        double t0 = bench_now();
        t->attempts = 0;
        rc = txm_retry(c, &pol, ct_body, t);
        t->lat_us[i] = (bench_now() - t0) * 1e6;
        if (rc == 0) {
            t->committed++;
            t->hist[t->attempts < CT_HIST ? t->attempts : CT_HIST]++;
        } else {
            t->gave_up++;
            bench_txm_err(t->err, sizeof t->err);
            if (rc == TXM_ECONNECTION || rc == TXM_EMISUSE || rc == TXM_ESYNTAX)
                break;
        }
    }
    t->t_end = bench_now();
    t->ok = 1;
    txm_close(c);
    return NULL;
}

static int reset_row(const bench_engine *e, int64_t *final_v, char *err, size_t errsz)
{
    txm_conn *c = NULL;
    char buf[512];
    int rc = bench_txm_open(&c, e, err, errsz);
    if (rc)
        return rc;
    if (final_v)
        rc = txm_query_i64(c, final_v, "SELECT v FROM txm_bench_dl WHERE id = 1", NULL, 0);
    else if ((rc = txm_exec(c, e->dl_ddl, NULL, 0, NULL)) == 0 &&
             (rc = txm_exec(c, "DELETE FROM txm_bench_dl", NULL, 0, NULL)) == 0)
        rc = txm_exec(c, "INSERT INTO txm_bench_dl(id, v) VALUES (1, 0)", NULL, 0, NULL);
    if (rc)
        snprintf(err, errsz, "%s: %s", final_v ? "check" : "setup", bench_txm_err(buf, sizeof buf));
    txm_close(c);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_hist(const uint64_t *hist, char *out, size_t size)
{
    size_t len = 0;
    unsigned k;
    out[0] = '\0';
    for (k = 1; k <= CT_HIST && len < size; k++) {
        int w;
        if (!hist[k])
            continue;
        w = snprintf(out + len, size - len, "%s%u%s:%llu", len ? " " : "", k, k == CT_HIST ? "+" : "",
                     (unsigned long long)hist[k]);
        if (w > 0)
            len += (size_t)w;
    }
}

static void run_config(const bench_engine *e, const ct_policy *pol, unsigned writers, unsigned total)
{
    pthread_barrier_t bar;
    pthread_t th[CT_MAX_WRITERS];
    ct_thread t[CT_MAX_WRITERS];
    unsigned per = (total + writers - 1) / writers, k, i;
    uint64_t committed = 0, gave_up = 0, hist[CT_HIST + 1] = {0}, deadlocks = 0, serial = 0, other = 0;
    double *lat = calloc((size_t)per * writers, sizeof *lat), first = 0, last = 0, wall;
    size_t nlat = 0;
    int64_t final_v = -1;
    char err[512] = "", hs[256], cas[96];

    snprintf(cas, sizeof cas, "%s/w%u", pol->name, writers);
    if (!lat || reset_row(e, NULL, err, sizeof err) != 0) {
        printf("   %-11s %-22s %2u  failed: %s\n", e->name, pol->name, writers, lat ? err : "out of memory");
        bench_check("contention", e->name, cas, "txm_retry", "setup_ran", 0, 1);
        free(lat);
        return;
    }
    bench_progress("contention", "%s %s %u writers", e->name, pol->name, writers);
    memset(t, 0, sizeof t);
    pthread_barrier_init(&bar, NULL, writers + 1);
    for (k = 0; k < writers; k++) {
        t[k].e = e;
        t[k].pol = &pol->p;
        t[k].tx = per;
        t[k].bar = &bar;
        t[k].lat_us = lat + (size_t)k * per;
        pthread_create(&th[k], NULL, ct_main, &t[k]);
    }
    pthread_barrier_wait(&bar);
    for (k = 0; k < writers; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&bar);
    bench_progress_clear();
    for (k = 0; k < writers; k++) {
        if (!t[k].ok) {
            printf("   %-11s %-22s %2u  failed: %s\n", e->name, pol->name, writers, t[k].err);
            bench_check("contention", e->name, cas, "txm_retry", "every_writer_ran", 0, 1);
            free(lat);
            return;
        }
        if (k == 0 || t[k].t_start < first)
            first = t[k].t_start;
        if (t[k].t_end > last)
            last = t[k].t_end;
        committed += t[k].committed;
        gave_up += t[k].gave_up;
        deadlocks += t[k].cause_deadlock;
        serial += t[k].cause_serial;
        other += t[k].cause_other;
        for (i = 0; i <= CT_HIST; i++)
            hist[i] += t[k].hist[i];
        for (i = 0; i < t[k].committed + t[k].gave_up; i++)
            lat[nlat++] = t[k].lat_us[i];
        if (t[k].gave_up)
            bench_strlcpy(err, t[k].err, sizeof err);
    }
    wall = last - first;
    {
        char cerr[512];
        if (reset_row(e, &final_v, cerr, sizeof cerr) != 0)
            printf("   %-11s %-22s %2u  counter check failed: %s\n", e->name, pol->name, writers, cerr);
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    print_hist(hist, hs, sizeof hs);
    printf("   %-11s %-22s %2u %6llu %7llu %8.1f %9.1f %9.1f %7.1f  %s%s\n", e->name, pol->name, writers,
           (unsigned long long)committed, (unsigned long long)gave_up, nlat ? lat[nlat / 2] / 1000 : 0,
           nlat ? lat[(nlat * 99) / 100 < nlat ? (nlat * 99) / 100 : nlat - 1] / 1000 : 0,
           nlat ? lat[nlat - 1] / 1000 : 0, wall > 0 ? (double)committed / wall : 0, hs,
           final_v == (int64_t)committed ? "" : "  COUNTER MISMATCH");
    if (deadlocks || serial || other)
        printf("   %-11s %-22s    retry causes: deadlock %llu, serialization %llu, other %llu\n", "", "",
               (unsigned long long)deadlocks, (unsigned long long)serial, (unsigned long long)other);
    if (gave_up)
        printf("   %-11s %-22s    last give-up: %s\n", "", "", err);
    fflush(stdout);
    bench_record("contention", e->name, cas, "txm_retry", "committed", (double)committed);
    bench_record("contention", e->name, cas, "txm_retry", "gave_up", (double)gave_up);
    bench_record("contention", e->name, cas, "txm_retry", "p50_ms", nlat ? lat[nlat / 2] / 1000 : 0);
    bench_record("contention", e->name, cas, "txm_retry", "p99_ms", nlat ? lat[(nlat * 99) / 100] / 1000 : 0);
    bench_record("contention", e->name, cas, "txm_retry", "tx_per_s", wall > 0 ? (double)committed / wall : 0);
    bench_record("contention", e->name, cas, "txm_retry", "counter_ok", final_v == (int64_t)committed);
    /* every commit txm reported is in the row, and nothing else */
    bench_check("contention", e->name, cas, "txm_retry", "row_value_eq_commits", (double)final_v,
                (double)committed);
    free(lat);
}

/* "default" or "A/B/C/D" (max_attempts/base_delay_us/max_delay_us/deadline_ms). */
static int parse_policy(const char *s, size_t len, ct_policy *out)
{
    static const txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    static const txm_tx_options serializable = {.version = TXM_TX_OPTIONS_VERSION,
                                                .isolation = TXM_ISOLATION_SERIALIZABLE};
    unsigned a, b, c, d;
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    out->p = def;
    if (strcmp(buf, "default") == 0) {
        snprintf(out->name, sizeof out->name, "default(%u/%u/%u/%u)", def.max_attempts, def.base_delay_us,
                 def.max_delay_us, def.deadline_ms);
    } else {
        if (sscanf(buf, "%u/%u/%u/%u", &a, &b, &c, &d) != 4 || a == 0)
            return -1;
        out->p.max_attempts = a;
        out->p.base_delay_us = b;
        out->p.max_delay_us = c;
        out->p.deadline_ms = d;
        bench_strlcpy(out->name, buf, sizeof out->name);
    }
    out->p.tx = &serializable;
    return 0;
}

int bench_group_contention(const bench_opts *o, bench_engine *engines, size_t n)
{
    const char *pols = o->ct_policies ? o->ct_policies : "5/2000/200000/0,default";
    const char *ws = o->ct_writers ? o->ct_writers : "2,4,8";
    unsigned total = o->ct_tx ? o->ct_tx : (o->quick ? 40 : 1000);
    ct_policy pv[16];
    unsigned wv[8];
    size_t np = 0, nw = 0, i, j, k;
    const char *p;

    for (p = pols; *p && np < 16;) {
        size_t len = strcspn(p, ",");
        if (parse_policy(p, len, &pv[np]) != 0) {
            printf("# contention: bad policy '%.*s' (expected default or A/B/C/D)\n", (int)len, p);
            return 1;
        }
        np++;
        p += len + (p[len] == ',');
    }
    for (p = ws; *p && nw < 8;) {
        long w = strtol(p, NULL, 10);
        if (w < 1 || w > CT_MAX_WRITERS) {
            printf("# contention: writers must be 1..%d\n", CT_MAX_WRITERS);
            return 1;
        }
        wv[nw++] = (unsigned)w;
        p += strcspn(p, ",");
        p += *p == ',';
    }
    printf("\n# contention: N writers x own connection, %u SERIALIZABLE read-modify-write transactions of ONE row\n",
           total);
    printf("#   in all (SELECT v; UPDATE v = v + 1), each in txm_retry with the policy shown\n");
    printf("#   (max_attempts/base_delay_us/max_delay_us/deadline_ms); latency of one txm_retry call in ms;\n");
    printf("#   attempts histogram of committed transactions (attempts:count).\n");
    printf("   %-11s %-22s %2s %6s %7s %8s %9s %9s %7s  %s\n", "engine", "policy", "N", "commit", "gave-up", "p50 ms",
           "p99 ms", "max ms", "tx/s", "attempts");
    for (i = 0; i < n; i++) {
        bench_engine *e = &engines[i];
        if (bench_skip_shared(e))
            continue;
        for (j = 0; j < np; j++)
            for (k = 0; k < nw; k++)
                run_config(e, &pv[j], wv[k], total);
    }
    return 0;
}
