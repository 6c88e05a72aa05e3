/*
 * Group "overhead": µs per transaction of txm against hand-written client-library calls on the
 * same SQL, for a few transaction shapes, per engine. Subjects:
 *   txm    txm_begin / txm_exec / txm_commit
 *   eager  raw client, one call (round trip) per statement, every SAVEPOINT and RELEASE sent
 *   floor  raw client, the best a synchronous API can do: pending BEGIN/SAVEPOINT travel in the
 *          flight of the next statement, a RELEASE that COMMIT makes redundant is not sent, an
 *          empty level sends nothing (PostgreSQL: pipeline mode, "two-flight"; MariaDB:
 *          multi-statement packets; SQLite: the same statements minus the redundant ones).
 *   libzdb what a libzdb 3.1 user writes (raw_zdb.c): Connection_beginTransaction, a prepared
 *          INSERT, Connection_commit, nested levels as SAVEPOINT/RELEASE via Connection_execute;
 *          skipped with the reason when libzdb was not found at build time or cannot reach the engine.
 * A shape is a little program: B = begin, ( = nested level, I = insert, ) = end of nested level
 * (commit/release), C = commit. Every subject interprets the same program.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    const char *name;
    const char *prog;
    const char *about;
} shape;

static const shape shapes[] = {
    {"insert1", "BIC", "(a) BEGIN; INSERT; COMMIT"},
    {"nested1", "BI(I)C", "(b) outer INSERT, then a nested level with one INSERT"},
    {"nested3", "BI(I(I(I)))C", "(c) outer INSERT and 3 nested levels, one INSERT each"},
    {"empty-nested", "BI()C", "(d) 1-insert transaction with an empty nested level"},
    {"nested-only", "B(I)C", "nested level holding the only INSERT (the shape of docs/design.md's targets)"},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])
#define NSUBJ 4 /* txm, eager, floor, libzdb */
#define ZDB 3   /* index of the libzdb subject */

/* ---- txm subject ----------------------------------------------------------------------------- */
typedef struct txm_ctx {
    txm_conn *c;
    const char *prog;
    const char *insert_sql;
    const bench_engine *e;
    char err[600];
} txm_ctx;

static int txm_fail(txm_ctx *x, const char *what, txm_tx **stack, int d)
{
    char buf[512];
    snprintf(x->err, sizeof x->err, "%s: %s", what, bench_txm_err(buf, sizeof buf));
    while (d > 0)
        txm_rollback(stack[--d]);
    return -1;
}

static int txm_iter(void *ctx, uint64_t i)
{
    txm_ctx *x = ctx;
    txm_tx *stack[BENCH_MAX_LEVEL + 2];
    int d = 0;
    const char *p;
    for (p = x->prog; *p; p++) {
        switch (*p) {
        case 'B':
        case '(':
            if (txm_begin(&stack[d], x->c, NULL) != 0)
                return txm_fail(x, "txm_begin", stack, d);
            d++;
            break;
        case 'I': {
            txm_value v = txm_int((int64_t)i);
            if (txm_exec(x->c, x->insert_sql, &v, 1, NULL) != 0)
                return txm_fail(x, "txm_exec INSERT", stack, d);
            break;
        }
        case ')':
        case 'C':
            if (txm_commit(stack[--d]) != 0)
                return txm_fail(x, "txm_commit", stack, d);
            break;
        default:
            break;
        }
    }
    return 0;
}

static int txm_reset(void *ctx)
{
    txm_ctx *x = ctx;
    if (txm_exec(x->c, x->e->items_reset, NULL, 0, NULL) != 0) {
        char buf[512];
        snprintf(x->err, sizeof x->err, "reset: %s", bench_txm_err(buf, sizeof buf));
        return -1;
    }
    return 0;
}

static uint64_t txm_rts(void *ctx)
{
    txm_stats s;
    txm_stats_get(((txm_ctx *)ctx)->c, &s);
    return s.round_trips;
}

static const char *txm_errtext(void *ctx) { return ((txm_ctx *)ctx)->err; }

/* ---- raw subjects ---------------------------------------------------------------------------- */
typedef struct raw_ctx {
    const bench_raw *raw;
    void *st;
    int floor;
    const char *prog;
    const bench_engine *e;
    uint64_t flights;
    char err[600];
} raw_ctx;

static int raw_send(raw_ctx *x, const raw_stmt *s, size_t n)
{
    x->flights++;
    return x->raw->flight(x->st, s, n, x->err, sizeof x->err);
}

static int raw_abort(raw_ctx *x)
{
    raw_stmt rb = {RAW_ROLLBACK, 0, 0};
    char keep[sizeof x->err];
    memcpy(keep, x->err, sizeof keep);
    (void)x->raw->flight(x->st, &rb, 1, x->err, sizeof x->err); /* best effort */
    memcpy(x->err, keep, sizeof keep);
    return -1;
}

static int raw_iter(void *ctx, uint64_t i)
{
    raw_ctx *x = ctx;
    raw_stmt pend[2 * BENCH_MAX_LEVEL + 4];
    size_t np = 0;
    int sent[BENCH_MAX_LEVEL + 2] = {0}; /* sent[level]: its BEGIN/SAVEPOINT reached the server */
    unsigned depth = 0; /* savepoint level of the innermost open nested level (0 = outermost) */
    int open_tx = 0;
    const char *p;

    for (p = x->prog; *p; p++) {
        raw_stmt s = {RAW_INSERT, 0, (int64_t)i};
        switch (*p) {
        case 'B':
        case '(':
            if (*p == '(')
                depth++;
            s.kind = *p == 'B' ? RAW_BEGIN : RAW_SAVEPOINT;
            s.level = depth;
            sent[depth] = !x->floor;
            if (x->floor)
                pend[np++] = s;
            else if (raw_send(x, &s, 1) != 0)
                return open_tx ? raw_abort(x) : -1;
            open_tx = 1;
            break;
        case 'I':
            if (x->floor) {
                size_t k;
                pend[np++] = s;
                if (raw_send(x, pend, np) != 0)
                    return raw_abort(x);
                for (k = 0; k < np; k++)
                    if (pend[k].kind == RAW_BEGIN || pend[k].kind == RAW_SAVEPOINT)
                        sent[pend[k].level] = 1;
                np = 0;
            } else if (raw_send(x, &s, 1) != 0)
                return raw_abort(x);
            break;
        case ')':
            s.kind = RAW_RELEASE;
            s.level = depth;
            if (!x->floor) {
                if (raw_send(x, &s, 1) != 0)
                    return raw_abort(x);
            } else if (sent[depth])
                pend[np++] = s; /* travels with the next statement, or is dropped by COMMIT */
            else
                np--; /* empty level: its SAVEPOINT (the last pending op) is never sent */
            depth--;
            break;
        case 'C':
            s.kind = RAW_COMMIT;
            np = 0; /* floor: only RELEASEs can be pending here, and COMMIT makes them redundant */
            if (raw_send(x, &s, 1) != 0)
                return raw_abort(x);
            open_tx = 0;
            break;
        default:
            break;
        }
    }
    return 0;
}

static int raw_reset(void *ctx)
{
    raw_ctx *x = ctx;
    return x->raw->exec(x->st, x->e->items_reset, x->err, sizeof x->err);
}

static uint64_t raw_rts(void *ctx) { return ((raw_ctx *)ctx)->flights; }
static const char *raw_errtext(void *ctx) { return ((raw_ctx *)ctx)->err; }

/* ---- libzdb subject (raw_zdb.c) ----------------------------------------------------------------- */
typedef struct zdb_ctx {
    bench_zdb *z;
    const char *prog;
    const bench_engine *e;
    char err[600];
} zdb_ctx;

static const char *zdb_errtext(void *ctx) { return ((zdb_ctx *)ctx)->err; }

#if BENCH_HAVE_ZDB
static int zdb_iter(void *ctx, uint64_t i)
{
    zdb_ctx *x = ctx;
    return bench_zdb_iter(x->z, x->prog, i, x->err, sizeof x->err);
}

static int zdb_reset(void *ctx)
{
    zdb_ctx *x = ctx;
    return bench_zdb_exec(x->z, x->e->items_reset, x->err, sizeof x->err);
}

static uint64_t zdb_rts(void *ctx) { return bench_zdb_calls(((zdb_ctx *)ctx)->z); }
#endif

/* Opens the libzdb subject on e. When libzdb is missing or cannot reach e, the subject is
 * skipped (off, shown as "-") with the reason in why; when it fails, it is marked failed. */
static void zdb_open_subject(bench_subject *s, zdb_ctx *x, bench_engine *e)
{
    s->ctx = x;
    s->error = zdb_errtext;
    x->e = e;
    if (s->off)
        return;
#if BENCH_HAVE_ZDB
    {
        char err[600];
        int rc = bench_zdb_open(&x->z, e, err, sizeof err);
        s->iter = zdb_iter;
        s->reset = zdb_reset;
        s->round_trips = zdb_rts;
        if (rc != 0) {
            s->failed = 1;
            s->off = rc > 0;
            bench_strlcpy(s->why, err, sizeof s->why);
        }
    }
#else
    s->failed = s->off = 1;
    bench_strlcpy(s->why, "txm-bench was built without libzdb (install libzdb-dev and reconfigure; meson option -Dlibzdb)",
                  sizeof s->why);
#endif
}

static void zdb_close_subject(zdb_ctx *x)
{
#if BENCH_HAVE_ZDB
    if (x->z)
        bench_zdb_close(x->z);
#endif
    x->z = NULL;
}

/* ---- the group ------------------------------------------------------------------------------- */
static const char *floor_name(bench_kind k)
{
    return k == BENCH_PG ? "two-flight (libpq pipeline)" : k == BENCH_MYSQL ? "batched (multi-statement)"
                                                                             : "minimal statements";
}
static const char *eager_name(bench_kind k)
{
    return k == BENCH_PG ? "PQexecParams per statement" : k == BENCH_MYSQL ? "mysql_real_query per statement"
                                                                            : "prepared, every statement";
}

/* "libzdb/3.1" (ConnectionPool_version() goes on with a copyright notice). */
static const char *zdb_version(char *buf, size_t size)
{
#if BENCH_HAVE_ZDB
    bench_strlcpy(buf, bench_zdb_version(), size);
    buf[strcspn(buf, " ")] = '\0';
#else
    bench_strlcpy(buf, "libzdb", size);
#endif
    return buf;
}

static void cell(const bench_subject *s)
{
    if (s->off)
        printf(" %9s %5s", "-", "");
    else if (s->failed)
        printf(" %9s %5s", "fail", "");
    else if (s->rt_per_tx >= 0)
        printf(" %9.2f %5.2f", s->us_median, s->rt_per_tx);
    else
        printf(" %9.2f %5s", s->us_median, "");
}

static void ratio(const bench_subject *a, const bench_subject *b, int cpu)
{
    double x = cpu ? a->cpu_median : a->us_median, y = cpu ? b->cpu_median : b->us_median;
    if (a->failed || b->failed || y <= 0)
        printf(" %9s", "-");
    else
        printf(" %9.3f", x / y);
}

static void record_subject(const bench_engine *e, const shape *sh, const bench_subject *s)
{
    unsigned r;
    char m[32];
    if (s->off)
        return;
    if (s->failed) {
        bench_record("overhead", e->name, sh->name, s->name, "failed", 1);
        return;
    }
    bench_record("overhead", e->name, sh->name, s->name, "us_per_tx", s->us_median);
    bench_record("overhead", e->name, sh->name, s->name, "us_min", s->us_min);
    bench_record("overhead", e->name, sh->name, s->name, "us_max", s->us_max);
    for (r = 0; r < s->nreps; r++) {
        snprintf(m, sizeof m, "us_rep%u", r + 1);
        bench_record("overhead", e->name, sh->name, s->name, m, s->us[r]);
    }
    bench_record("overhead", e->name, sh->name, s->name, "cpu_us_per_tx", s->cpu_median);
    bench_record("overhead", e->name, sh->name, s->name, "iterations", (double)s->iters);
    if (s->rt_per_tx >= 0)
        bench_record("overhead", e->name, sh->name, s->name, "round_trips_per_tx", s->rt_per_tx);
}

/* Round trips a transaction of `prog` costs txm by design: each INSERT is one flight that also
 * carries the pending BEGIN/SAVEPOINTs and RELEASEs, COMMIT one more; an empty transaction none. */
static double expected_round_trips(const char *prog)
{
    const char *p;
    unsigned inserts = 0;
    for (p = prog; *p; p++)
        inserts += *p == 'I';
    return inserts ? inserts + 1.0 : 0.0;
}

/* The counter checks of every run (--quick's point, never a time): txm ran, at its round trips. */
static void check_txm(const bench_engine *e, const shape *sh, const bench_subject *s)
{
    if (s->failed)
        bench_check("overhead", e->name, sh->name, s->name, "ran", 0, 1);
    else
        bench_check("overhead", e->name, sh->name, s->name, "round_trips_per_tx", s->rt_per_tx,
                    expected_round_trips(sh->prog));
}

static void run_engine(const bench_opts *o, bench_engine *e)
{
    const bench_raw *raw = bench_raw_for(e->kind);
    txm_ctx tx;
    raw_ctx rx[2];
    zdb_ctx zx;
    bench_subject subj[NSUBJ];
    bench_subject results[NSHAPES][NSUBJ];
    int measured[NSHAPES] = {0};
    size_t si, k;
    char err[600];

    memset(&tx, 0, sizeof tx);
    memset(rx, 0, sizeof rx);
    memset(&zx, 0, sizeof zx);
    memset(subj, 0, sizeof subj);
    subj[0].name = "txm";
    subj[1].name = "eager";
    subj[2].name = "floor";
    subj[ZDB].name = "libzdb";
    for (k = 0; k < NSUBJ; k++)
        if (!bench_selected(o->impls, subj[k].name))
            subj[k].off = subj[k].failed = 1;

    printf("\n== overhead | %s | %s\n", e->name, e->redacted);
    /* txm */
    if (subj[0].off)
        ;
    else if (e->no_txm[0]) {
        subj[0].failed = 1;
        bench_strlcpy(subj[0].why, e->no_txm, sizeof subj[0].why);
    } else if (bench_txm_open(&tx.c, e, err, sizeof err) != 0) {
        subj[0].failed = 1;
        bench_strlcpy(subj[0].why, err, sizeof subj[0].why);
    } else if (txm_exec(tx.c, e->items_ddl, NULL, 0, NULL) != 0) {
        subj[0].failed = 1;
        snprintf(subj[0].why, sizeof subj[0].why, "create table: %s", bench_txm_err(err, sizeof err));
    }
    tx.e = e;
    tx.insert_sql = "INSERT INTO txm_bench_items(v) VALUES (?)";
    subj[0].ctx = &tx;
    subj[0].iter = txm_iter;
    subj[0].reset = txm_reset;
    subj[0].round_trips = txm_rts;
    subj[0].error = txm_errtext;
    /* raw */
    for (k = 0; k < 2; k++) {
        bench_subject *s = &subj[1 + k];
        rx[k].raw = raw;
        rx[k].floor = (int)k;
        rx[k].e = e;
        s->ctx = &rx[k];
        s->iter = raw_iter;
        s->reset = raw_reset;
        s->round_trips = raw_rts;
        s->error = raw_errtext;
        if (s->off)
            ;
        else if (!raw) {
            s->failed = 1;
            snprintf(s->why, sizeof s->why, "client library not found at build time");
        } else if (raw->open(&rx[k].st, e, (int)k, err, sizeof err) != 0) {
            s->failed = 1;
            bench_strlcpy(s->why, err, sizeof s->why);
        }
    }
    zdb_open_subject(&subj[ZDB], &zx, e);
    if (e->server_version[0])
        printf("   server: %s\n", e->server_version);
    printf("   eager = %s; floor = %s%s\n", eager_name(e->kind), floor_name(e->kind),
           e->kind == BENCH_PG && e->floor_xid ? " + SELECT pg_current_xact_id_if_assigned() before COMMIT" : "");
    if (!subj[ZDB].off || subj[ZDB].why[0])
        printf("   libzdb = %s: begin, prepared INSERT, commit, SAVEPOINT/RELEASE by hand\n", zdb_version(err, sizeof err));
    for (k = 0; k < NSUBJ; k++)
        if (subj[k].failed && (!subj[k].off || subj[k].why[0]))
            printf("   %s not measured: %s\n", subj[k].name, subj[k].why);
    printf("   %-13s %9s %5s %9s %5s %9s %5s %9s %5s %9s %9s %10s\n", "shape", "txm us", "rt", "eager us", "rt",
           "floor us", "rt", "libzdb us", "rt", "txm/eager", "txm/floor", "txm/libzdb");
    fflush(stdout);

    for (si = 0; si < NSHAPES; si++) {
        const shape *sh = &shapes[si];
        bench_subject *run = results[si];
        if (!bench_selected(o->shapes, sh->name))
            continue;
        measured[si] = 1;
        memcpy(run, subj, sizeof subj);
        tx.prog = rx[0].prog = rx[1].prog = zx.prog = sh->prog;
        bench_progress("overhead", "%s %s", e->name, sh->name);
        bench_measure(o, run, NSUBJ);
        printf("   %-13s", sh->name);
        for (k = 0; k < NSUBJ; k++)
            cell(&run[k]);
        ratio(&run[0], &run[1], 0);
        ratio(&run[0], &run[2], 0);
        printf(" "); /* the txm/libzdb column is one wider */
        ratio(&run[0], &run[ZDB], 0);
        printf("\n");
        fflush(stdout);
        if (!run[0].off && !e->no_txm[0])
            check_txm(e, sh, &run[0]);
        for (k = 0; k < NSUBJ; k++) {
            record_subject(e, sh, &run[k]);
            if (run[k].failed && !subj[k].failed) { /* a subject that broke stays out of later shapes */
                subj[k].failed = 1;
                bench_strlcpy(subj[k].why, run[k].why, sizeof subj[k].why);
            }
        }
        if (!run[0].failed && !run[1].failed)
            bench_record("overhead", e->name, sh->name, "txm", "ratio_vs_eager", run[0].us_median / run[1].us_median);
        if (!run[0].failed && !run[2].failed)
            bench_record("overhead", e->name, sh->name, "txm", "ratio_vs_floor", run[0].us_median / run[2].us_median);
        if (!run[0].failed && !run[1].failed)
            bench_record("overhead", e->name, sh->name, "txm", "cpu_ratio_vs_eager", run[0].cpu_median / run[1].cpu_median);
        if (!run[0].failed && !run[2].failed)
            bench_record("overhead", e->name, sh->name, "txm", "cpu_ratio_vs_floor", run[0].cpu_median / run[2].cpu_median);
        if (!run[0].failed && !run[ZDB].failed) {
            bench_record("overhead", e->name, sh->name, "txm", "ratio_vs_libzdb", run[0].us_median / run[ZDB].us_median);
            bench_record("overhead", e->name, sh->name, "txm", "cpu_ratio_vs_libzdb",
                         run[0].cpu_median / run[ZDB].cpu_median);
        }
    }
    /* This process's CPU time per transaction: the client-side cost alone (for SQLite, all of it).
     * Unlike wall time it barely moves when other processes compete for the CPUs. */
    printf("   client CPU us per transaction (this thread only; robust to a busy machine):\n");
    printf("   %-13s %9s %9s %9s %9s %9s %9s %10s\n", "shape", "txm", "eager", "floor", "libzdb", "txm/eager", "txm/floor",
           "txm/libzdb");
    for (si = 0; si < NSHAPES; si++) {
        bench_subject *run = results[si];
        if (!measured[si])
            continue;
        printf("   %-13s", shapes[si].name);
        for (k = 0; k < NSUBJ; k++) {
            if (run[k].off)
                printf(" %9s", "-");
            else if (run[k].failed)
                printf(" %9s", "fail");
            else
                printf(" %9.2f", run[k].cpu_median);
        }
        ratio(&run[0], &run[1], 1);
        ratio(&run[0], &run[2], 1);
        printf(" ");
        ratio(&run[0], &run[ZDB], 1);
        printf("\n");
    }
    zdb_close_subject(&zx);
    txm_close(tx.c);
    for (k = 0; k < 2; k++)
        if (rx[k].st)
            raw->close(rx[k].st);
}

int bench_group_overhead(const bench_opts *o, bench_engine *engines, size_t n)
{
    size_t i;
    printf("\n# overhead: us per transaction (median of %u), rt = round trips per transaction\n", o->reps);
    printf("#   (txm: txm_stats round_trips; raw: flights sent). Shapes:\n");
    for (i = 0; i < NSHAPES; i++)
        printf("#   %-13s %-14s %s\n", shapes[i].name, shapes[i].prog, shapes[i].about);
    printf("#   (B begin, ( nested level, I INSERT INTO txm_bench_items(v) VALUES (?), ) end level, C commit)\n");
    for (i = 0; i < n; i++) {
        if (engines[i].skip[0]) {
            printf("\n== overhead | %s | skipped: %s\n", engines[i].name, engines[i].skip);
            continue;
        }
        run_engine(o, &engines[i]);
    }
    return 0;
}
