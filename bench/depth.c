/*
 * Group "depth": the cost of one nesting level as the nesting grows. One transaction of depth d
 * opens d levels (the outermost and d - 1 nested ones), runs one INSERT in each as it opens them,
 * then ends them innermost first (commit) and commits. Reported: µs per level (transaction time
 * / d). txm's bookkeeping must be O(1) per operation, so its column should stay flat from d = 10
 * up; the raw column shows what the engine itself does with that many savepoints.
 *
 * Subjects:
 *   txm  txm_begin / txm_exec / txm_commit (the SAVEPOINTs travel with the INSERTs, the RELEASEs
 *        are dropped by the COMMIT)
 *   raw  the client library by hand: prepared BEGIN / INSERT / COMMIT, and SAVEPOINT dsp_<k> /
 *        RELEASE SAVEPOINT dsp_<k> as text (a distinct name per level), one call each
 *
 * Depths: 10, 100, 1000, 10000 on SQLite; 10, 100, 1000 on the servers (10,000 subtransactions
 * take the servers, not the client, into their slow paths: PostgreSQL overflows its 64-entry
 * subtransaction cache at depth 65 already; that is the engine's cost, not txm's).
 * Timing: one untimed warm-up transaction per subject and depth, then o->reps repetitions of
 * ~o->rep_s seconds (at least one transaction), interleaved txm / raw; the median is reported.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned sqlite_depths[] = {10, 100, 1000, 10000};
static const unsigned server_depths[] = {10, 100, 1000};
static const unsigned quick_depths[] = {10, 100};

typedef struct depth_subject {
    const char *name;
    int (*iter)(void *ctx, unsigned depth, int64_t v);
    void *ctx;
    uint64_t (*round_trips)(void *ctx);
    int failed;
    char why[700];
    double us[BENCH_MAX_REPS], cpu[BENCH_MAX_REPS]; /* µs per level, per repetition */
    unsigned nreps;
    uint64_t tx_per_rep;
    double rt_per_level;
} depth_subject;

/* ---- txm ------------------------------------------------------------------------------------ */
typedef struct dtxm {
    txm_conn *c;
    txm_tx **stack;
    char err[600];
} dtxm;

static int dtxm_iter(void *ctx, unsigned depth, int64_t v)
{
    dtxm *x = ctx;
    unsigned d;
    txm_value val = txm_int(v);
    char buf[512];
    for (d = 0; d < depth; d++) {
        if (txm_begin(&x->stack[d], x->c, NULL) != 0 ||
            txm_exec(x->c, "INSERT INTO txm_bench_items(v) VALUES (?)", &val, 1, NULL) != 0)
            goto fail;
    }
    while (d > 0) {
        if (txm_commit(x->stack[d - 1]) != 0)
            goto fail;
        d--;
    }
    return 0;
fail:
    snprintf(x->err, sizeof x->err, "depth %u, level %u: %s", depth, d + 1, bench_txm_err(buf, sizeof buf));
    while (txm_depth(x->c) > 0)
        txm_rollback(x->stack[txm_depth(x->c) - 1]);
    return -1;
}

static uint64_t dtxm_rts(void *ctx)
{
    txm_stats s;
    txm_stats_get(((dtxm *)ctx)->c, &s);
    return s.round_trips;
}

/* ---- raw ------------------------------------------------------------------------------------ */
typedef struct draw {
    const bench_raw *raw;
    void *st;
    uint64_t calls;
    char err[600];
} draw;

static int draw_flight(draw *x, raw_kind kind, int64_t v)
{
    raw_stmt s = {kind, 0, v};
    x->calls++;
    return x->raw->flight(x->st, &s, 1, x->err, sizeof x->err);
}

static int draw_sp(draw *x, const char *verb, unsigned level)
{
    char sql[64];
    snprintf(sql, sizeof sql, "%s dsp_%u", verb, level);
    x->calls++;
    return x->raw->exec(x->st, sql, x->err, sizeof x->err);
}

static int draw_iter(void *ctx, unsigned depth, int64_t v)
{
    draw *x = ctx;
    unsigned d;
    if (draw_flight(x, RAW_BEGIN, 0) != 0)
        return -1;
    for (d = 0; d < depth; d++) {
        if ((d > 0 && draw_sp(x, "SAVEPOINT", d) != 0) || draw_flight(x, RAW_INSERT, v) != 0)
            goto fail;
    }
    for (d = depth - 1; d > 0; d--)
        if (draw_sp(x, "RELEASE SAVEPOINT", d) != 0)
            goto fail;
    if (draw_flight(x, RAW_COMMIT, 0) == 0)
        return 0;
fail: {
    char keep[sizeof x->err];
    memcpy(keep, x->err, sizeof keep);
    (void)draw_flight(x, RAW_ROLLBACK, 0); /* best effort */
    memcpy(x->err, keep, sizeof keep);
    return -1;
}
}

static uint64_t draw_rts(void *ctx) { return ((draw *)ctx)->calls; }

/* ---- measurement ---------------------------------------------------------------------------- */
static int reset_items(const bench_engine *e, dtxm *t, draw *r, depth_subject *s)
{
    char buf[512];
    if (!s->failed && s->ctx == t && txm_exec(t->c, e->items_reset, NULL, 0, NULL) != 0) {
        snprintf(s->why, sizeof s->why, "reset: %s", bench_txm_err(buf, sizeof buf));
        s->failed = 1;
    }
    if (!s->failed && s->ctx == r && r->raw->exec(r->st, e->items_reset, r->err, sizeof r->err) != 0) {
        snprintf(s->why, sizeof s->why, "reset: %s", r->err);
        s->failed = 1;
    }
    return s->failed ? -1 : 0;
}

static const char *subject_err(const depth_subject *s, const dtxm *t, const draw *r)
{
    return s->ctx == (const void *)t ? t->err : r->err;
}

static void measure_depth(const bench_opts *o, const bench_engine *e, unsigned depth, depth_subject *subj, size_t n,
                          dtxm *t, draw *r)
{
    unsigned reps = o->reps ? o->reps : 3, rep;
    int64_t v = 1;
    size_t j;
    if (reps > BENCH_MAX_REPS)
        reps = BENCH_MAX_REPS;
    for (j = 0; j < n; j++) { /* warm-up and calibration: one transaction */
        depth_subject *s = &subj[j];
        double t0, per;
        s->nreps = 0;
        s->rt_per_level = -1;
        if (s->failed || reset_items(e, t, r, s))
            continue;
        t0 = bench_now();
        if (s->iter(s->ctx, depth, v++) != 0) {
            s->failed = 1;
            snprintf(s->why, sizeof s->why, "warm-up: %s", subject_err(s, t, r));
            continue;
        }
        per = bench_now() - t0;
        s->tx_per_rep = o->iterations ? o->iterations : per > 0 && o->rep_s / per > 1 ? (uint64_t)(o->rep_s / per) : 1;
    }
    for (rep = 0; rep < reps; rep++) {
        for (j = 0; j < n; j++) {
            depth_subject *s = &subj[j];
            uint64_t k, rt0;
            double t0, c0, el, cel, levels = (double)depth * (double)s->tx_per_rep;
            if (s->failed || reset_items(e, t, r, s))
                continue;
            rt0 = s->round_trips(s->ctx);
            c0 = bench_cpu_now();
            t0 = bench_now();
            for (k = 0; k < s->tx_per_rep; k++)
                if (s->iter(s->ctx, depth, v++) != 0)
                    break;
            el = bench_now() - t0;
            cel = bench_cpu_now() - c0;
            if (k < s->tx_per_rep) {
                s->failed = 1;
                snprintf(s->why, sizeof s->why, "timed run: %s", subject_err(s, t, r));
                continue;
            }
            s->rt_per_level = (double)(s->round_trips(s->ctx) - rt0) / levels;
            s->us[s->nreps] = el * 1e6 / levels;
            s->cpu[s->nreps++] = cel * 1e6 / levels;
        }
    }
}

static void report_depth(const bench_engine *e, unsigned depth, depth_subject *subj, size_t n)
{
    char cas[32];
    double med[2] = {0, 0};
    size_t j;
    unsigned k;
    snprintf(cas, sizeof cas, "depth%u", depth);
    printf("   %7u", depth);
    for (j = 0; j < n; j++) {
        depth_subject *s = &subj[j];
        double sorted[BENCH_MAX_REPS], m, lo, hi, cpu;
        char metric[32];
        if (s->failed || !s->nreps) {
            printf(" %9s %17s %9s %6s", "fail", "", "", "");
            bench_record("depth", e->name, cas, s->name, "failed", 1);
            continue;
        }
        memcpy(sorted, s->us, s->nreps * sizeof *sorted);
        m = bench_median(sorted, s->nreps);
        lo = sorted[0];
        hi = sorted[s->nreps - 1];
        memcpy(sorted, s->cpu, s->nreps * sizeof *sorted);
        cpu = bench_median(sorted, s->nreps);
        med[j] = m;
        printf(" %9.2f %8.2f-%-8.2f %9.2f %6.2f", m, lo, hi, cpu, s->rt_per_level);
        bench_record("depth", e->name, cas, s->name, "us_per_level", m);
        bench_record("depth", e->name, cas, s->name, "us_min", lo);
        bench_record("depth", e->name, cas, s->name, "us_max", hi);
        for (k = 0; k < s->nreps; k++) {
            snprintf(metric, sizeof metric, "us_rep%u", k + 1);
            bench_record("depth", e->name, cas, s->name, metric, s->us[k]);
        }
        bench_record("depth", e->name, cas, s->name, "cpu_us_per_level", cpu);
        bench_record("depth", e->name, cas, s->name, "round_trips_per_level", s->rt_per_level);
        bench_record("depth", e->name, cas, s->name, "tx_per_rep", (double)s->tx_per_rep);
    }
    if (n == 2 && med[0] > 0 && med[1] > 0) {
        printf(" %8.3f", med[0] / med[1]);
        bench_record("depth", e->name, cas, "txm", "ratio_vs_raw", med[0] / med[1]);
    }
    printf("\n");
    fflush(stdout);
    for (j = 0; j < n; j++)
        if (subj[j].failed)
            printf("           %s: %s\n", subj[j].name, subj[j].why);
}

static void run_engine(const bench_opts *o, bench_engine *e)
{
    const bench_raw *raw = bench_raw_for(e->kind);
    const unsigned *depths = o->quick ? quick_depths : e->kind == BENCH_SQLITE ? sqlite_depths : server_depths;
    size_t nd = o->quick ? sizeof quick_depths / sizeof *quick_depths
                : e->kind == BENCH_SQLITE ? sizeof sqlite_depths / sizeof *sqlite_depths
                                          : sizeof server_depths / sizeof *server_depths;
    dtxm t;
    draw r;
    depth_subject subj[2], run[2];
    size_t i;
    char err[600];

    memset(&t, 0, sizeof t);
    memset(&r, 0, sizeof r);
    memset(subj, 0, sizeof subj);
    subj[0].name = "txm";
    subj[0].iter = dtxm_iter;
    subj[0].ctx = &t;
    subj[0].round_trips = dtxm_rts;
    subj[1].name = "raw";
    subj[1].iter = draw_iter;
    subj[1].ctx = &r;
    subj[1].round_trips = draw_rts;
    printf("\n== depth | %s | %s\n", e->name, e->redacted);
    t.stack = malloc(depths[nd - 1] * sizeof *t.stack);
    if (!t.stack) {
        subj[0].failed = 1;
        bench_strlcpy(subj[0].why, "out of memory", sizeof subj[0].why);
    } else if (e->no_txm[0]) {
        subj[0].failed = 1;
        bench_strlcpy(subj[0].why, e->no_txm, sizeof subj[0].why);
    } else if (bench_txm_open(&t.c, e, err, sizeof err) != 0) {
        subj[0].failed = 1;
        bench_strlcpy(subj[0].why, err, sizeof subj[0].why);
    } else if (txm_exec(t.c, e->items_ddl, NULL, 0, NULL) != 0) {
        subj[0].failed = 1;
        snprintf(subj[0].why, sizeof subj[0].why, "create table: %s", bench_txm_err(err, sizeof err));
    }
    r.raw = raw;
    if (!raw) {
        subj[1].failed = 1;
        bench_strlcpy(subj[1].why, "client library not found at build time", sizeof subj[1].why);
    } else if (raw->open(&r.st, e, 0, err, sizeof err) != 0) {
        subj[1].failed = 1;
        bench_strlcpy(subj[1].why, err, sizeof subj[1].why);
    }
    if (e->server_version[0])
        printf("   server: %s\n", e->server_version);
    printf("   raw = %s: prepared BEGIN/INSERT/COMMIT, SAVEPOINT/RELEASE dsp_<k> as text, one call each\n",
           raw ? raw->client : "-");
    for (i = 0; i < 2; i++)
        if (subj[i].failed)
            printf("   %s not measured: %s\n", subj[i].name, subj[i].why);
    printf("   %7s %9s %17s %9s %6s %9s %17s %9s %6s %8s\n", "depth", "txm us", "(min-max)", "cpu us", "rt", "raw us",
           "(min-max)", "cpu us", "rt", "txm/raw");
    fflush(stdout);
    for (i = 0; i < nd; i++) {
        memcpy(run, subj, sizeof run);
        fprintf(stderr, "[depth] %s depth %u ...\n", e->name, depths[i]);
        measure_depth(o, e, depths[i], run, 2, &t, &r);
        report_depth(e, depths[i], run, 2);
    }
    txm_close(t.c);
    free(t.stack);
    if (r.st)
        raw->close(r.st);
}

int bench_group_depth(const bench_opts *o, bench_engine *engines, size_t n)
{
    size_t i;
    printf("\n# depth: us per nesting level (transaction time / depth; median of %u), one INSERT per level;\n",
           o->reps);
    printf("#   cpu us = this thread's CPU per level; rt = round trips (txm) or client calls (raw) per level\n");
    for (i = 0; i < n; i++) {
        if (engines[i].skip[0]) {
            printf("\n== depth | %s | skipped: %s\n", engines[i].name, engines[i].skip);
            continue;
        }
        run_engine(o, &engines[i]);
    }
    return 0;
}
