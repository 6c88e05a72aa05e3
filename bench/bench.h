/*
 * txm-bench: shared definitions. bench.c owns options, engines, machine description and the
 * group table; report.c the result records (table helpers, CSV); measure.c the timing loop;
 * overhead.c and deadlock.c are groups; raw_*.c are hand-written client-library baselines.
 *
 * Adding a group (e.g. "ledger" once the billing layer lands): write bench/ledger.c with
 *   int bench_group_ledger(const bench_opts *o, bench_engine *engines, size_t n);
 * measure with bench_measure() (interleaved repetitions, median) or your own loop, print its
 * table to stdout, call bench_record() for every number (it ends up in the CSV), then add one
 * line to `groups[]` in bench.c and the file to bench/meson.build. Call bench_progress() when a
 * case starts, bench_check() for every counter that must hold (it sets the exit status), and
 * record commits/s as case "<name>/w<N>" to appear in --plot (progress.c, plot.c).
 */
#ifndef TXM_BENCH_H
#define TXM_BENCH_H

#include "txm.h"

#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_REPS 15

typedef struct bench_opts {
    int quick;
    double warm_s;       /* warm-up (and calibration) seconds per subject */
    double rep_s;        /* target seconds of one timed repetition */
    unsigned reps;       /* repetitions; the median is reported */
    uint64_t iterations; /* fixed iterations per repetition; 0 = calibrate to rep_s */
    double dl_rep_s;     /* deadlock group: seconds per repetition */
    const char *groups;  /* comma-separated group names; NULL = all */
    const char *engines; /* comma-separated engine names; NULL = all */
    const char *shapes;  /* overhead group: comma-separated shape names; NULL = all */
    int floor_xid;       /* --floor-xid: see bench_engine.floor_xid */
    const char *impls;   /* overhead group: comma-separated subjects (txm,eager,floor,libzdb); NULL = all */
    const char *ct_policies; /* contention group: policies (default, A/B/C/D); NULL = built-in list */
    const char *ct_writers;  /* contention group: writer counts, e.g. "2,4,8"; NULL = 2,4,8 */
    unsigned ct_tx;          /* contention group: transactions per configuration; 0 = 1000 */
    const char *lg_writers;  /* ledger group: writer counts; NULL = 1,2,4,8,16 (--quick: 1,4) */
    double lg_seconds;       /* ledger group: seconds per configuration; 0 = 1 (--quick: 0.1) */
    const char *lg_impls;    /* ledger group: implementations (txm,naive,...); NULL = all */
} bench_opts;

typedef enum bench_kind { BENCH_SQLITE = 0, BENCH_PG = 1, BENCH_MYSQL = 2 } bench_kind;

typedef struct bench_engine {
    const char *name;        /* sqlite-mem, sqlite-file, postgresql, mysql */
    bench_kind kind;
    char url[1024];          /* txm URL; the raw clients connect to the same database */
    char redacted[1024];     /* for printing */
    char skip[256];          /* non-empty: why the engine is not measured at all */
    char no_txm[256];        /* non-empty: why txm itself cannot run here (driver not built) */
    int shared_db;           /* every connection sees the same database (not :memory:) */
    char file_path[512];     /* sqlite-file: database file (raw clients open it directly) */
    const char *items_ddl;   /* CREATE TABLE IF NOT EXISTS txm_bench_items ... */
    const char *items_reset; /* empties it (untimed, between repetitions) */
    const char *dl_ddl;      /* CREATE TABLE IF NOT EXISTS txm_bench_dl ... */
    char server_version[64]; /* filled by the first raw connection, "" if unknown */
    int floor_xid;           /* PostgreSQL floor also asks pg_current_xact_id_if_assigned() in the
                              * COMMIT flight, as txm's driver does for txm_resolve_outcome */
} bench_engine;

/* ---- raw baselines (raw_sqlite.c, raw_pg.c, raw_mysql.c) -------------------------------- */
typedef enum raw_kind { RAW_BEGIN, RAW_SAVEPOINT, RAW_RELEASE, RAW_COMMIT, RAW_ROLLBACK, RAW_INSERT } raw_kind;
typedef struct raw_stmt {
    raw_kind kind;
    unsigned level; /* SAVEPOINT/RELEASE: savepoint number (txm's names: txm_sp_<level>) */
    int64_t value;  /* INSERT: the inserted value */
} raw_stmt;

typedef struct bench_raw {
    const char *client; /* "sqlite3", "libpq", "libmariadb" */
    /* Connects to e's database and creates the items table. `batched`: the connection will be
     * given multi-statement flights (PostgreSQL: pipeline mode; MariaDB: multi-statements). */
    int (*open)(void **out, bench_engine *e, int batched, char *err, size_t errsz);
    /* Runs s[0..n) as ONE flight (one network round trip) and waits for every result. n > 1 only
     * on batched connections. Returns 0 or -1 with err filled. */
    int (*flight)(void *st, const raw_stmt *s, size_t n, char *err, size_t errsz);
    /* Runs untimed SQL (reset, setup). */
    int (*exec)(void *st, const char *sql, char *err, size_t errsz);
    void (*close)(void *st);
} bench_raw;

#if BENCH_HAVE_SQLITE3
extern const bench_raw bench_raw_sqlite;
#endif
#if BENCH_HAVE_PQ
extern const bench_raw bench_raw_pg;
#endif
#if BENCH_HAVE_MARIADB
extern const bench_raw bench_raw_mysql;
#endif
/* The libzdb subject (raw_zdb.c, built when libzdb is found: BENCH_HAVE_ZDB). open returns 0,
 * 1 when libzdb cannot run on e (why in err: the subject is skipped) or -1 on failure. iter runs
 * one transaction of an overhead shape program; a failure is rolled back and described in err. */
typedef struct bench_zdb bench_zdb;
int bench_zdb_open(bench_zdb **out, bench_engine *e, char *err, size_t errsz);
int bench_zdb_iter(bench_zdb *z, const char *prog, uint64_t i, char *err, size_t errsz);
int bench_zdb_exec(bench_zdb *z, const char *sql, char *err, size_t errsz);
uint64_t bench_zdb_calls(const bench_zdb *z); /* statements sent (one round trip each) */
void bench_zdb_close(bench_zdb *z);
const char *bench_zdb_version(void);
/* The raw baseline client for an engine kind, or NULL if its client library was not found. */
const bench_raw *bench_raw_for(bench_kind k);
/* Control statement text as txm's drivers spell it (static storage, levels 1..BENCH_MAX_LEVEL). */
#define BENCH_MAX_LEVEL 8
const char *bench_ctl_sql(bench_kind k, raw_kind kind, unsigned level);

/* ---- measurement (measure.c) ---------------------------------------------------------------- */
typedef struct bench_subject {
    const char *name;                    /* "txm", "eager", "floor", ... */
    void *ctx;
    int (*iter)(void *ctx, uint64_t i);  /* one transaction; 0 or non-zero on failure */
    int (*reset)(void *ctx);             /* untimed, before warm-up and each repetition; may be NULL */
    uint64_t (*round_trips)(void *ctx);  /* cumulative count; may be NULL */
    const char *(*error)(void *ctx);     /* text of the last failure */
    int off;                             /* not selected (--impl): shown as "-", implies failed */
    /* results */
    int failed;
    char why[1024];                      /* failure text */
    uint64_t iters;                      /* per repetition */
    unsigned nreps;
    double us[BENCH_MAX_REPS];           /* µs per transaction of each repetition */
    double us_median, us_min, us_max;
    double cpu[BENCH_MAX_REPS];          /* this thread's CPU µs per transaction of each repetition */
    double cpu_median;                   /* client-side cost alone: robust when the machine is busy */
    double rt_per_tx;                    /* -1 if unknown */
    uint64_t rt_sum;                     /* internal: round trips over the timed repetitions */
} bench_subject;

/* Warms up and calibrates each subject, then runs o->reps repetitions, interleaved across the
 * subjects (rep 1 of every subject, then rep 2, ...) so drift hits them alike. Subjects that fail
 * are marked (failed, why) and skipped from then on. */
void bench_measure(const bench_opts *o, bench_subject *s, size_t n);
double bench_now(void); /* monotonic seconds */
double bench_cpu_now(void); /* the calling thread's CPU seconds */
double bench_median(double *v, size_t n); /* sorts v */

/* ---- results (report.c) ------------------------------------------------------------------- */
/* Records one number for the CSV (long format: group,engine,case,impl,metric,value). */
void bench_record(const char *group, const char *engine, const char *cas, const char *impl, const char *metric,
                  double value);
/* Records a descriptive key/value (machine, versions); printed as "# key: value" too. */
void bench_meta(const char *key, const char *fmt, ...) TXM_PRINTF(2, 3);
int bench_write_csv(const char *path);
void bench_results_free(void);
/* Calls fn for every number recorded so far (not the meta rows), in recording order. */
typedef void (*bench_result_fn)(void *ctx, const char *group, const char *engine, const char *cas, const char *impl,
                                const char *metric, double value);
void bench_results_each(bench_result_fn fn, void *ctx);
/* Records every number of a CSV written by --csv (meta rows skipped), for --plot-from. */
int bench_read_csv(const char *path, unsigned *nread);

/* ---- progress line, counter checks (progress.c), --plot (plot.c) ---------------------------- */
/* The progress line on stderr: rewritten in place on a terminal, one line per step with
 * --progress (`forced`) otherwise, nothing else. A group calls bench_progress() when it starts a
 * case ("[group G] engine case"); bench_measure() adds the steps ("rep 2/3"). Call
 * bench_progress_clear() before printing to stdout after a bench_progress() outside bench_measure. */
void bench_progress_init(int forced);
void bench_progress(const char *group, const char *fmt, ...) TXM_PRINTF(2, 3);
void bench_progress_step(const char *fmt, ...) TXM_PRINTF(1, 2);
void bench_progress_clear(void);
/* A counter check (never a time): records metric "check:<what>" (1 passed, 0 failed) and prints
 * CHECK FAILED when got != expected; any failed check makes the run exit 1. Returns 0 or -1. */
int bench_check(const char *group, const char *engine, const char *cas, const char *impl, const char *what,
                double got, double expected);
unsigned bench_checks_report(void); /* prints the totals; returns the number failed */
/* --plot: commits/s against writers (cases "<name>/w<N>", metrics in the comma-separated list,
 * NULL = commits_per_s,tx_per_s) drawn by gnuplot; a missing gnuplot is a message, not a failure.
 * Returns -1 only if gnuplot ran and failed or the file could not be written. */
int bench_plot(const char *path, const char *metrics);

/* ---- groups --------------------------------------------------------------------------------- */
typedef int (*bench_group_fn)(const bench_opts *o, bench_engine *engines, size_t n);
int bench_group_overhead(const bench_opts *o, bench_engine *engines, size_t n);
int bench_group_deadlock(const bench_opts *o, bench_engine *engines, size_t n);
int bench_group_contention(const bench_opts *o, bench_engine *engines, size_t n);
int bench_group_ledger(const bench_opts *o, bench_engine *engines, size_t n);
int bench_group_depth(const bench_opts *o, bench_engine *engines, size_t n);

/* Copies src (NULL = "") into dst, truncating; always NUL-terminates. */
void bench_strlcpy(char *dst, const char *src, size_t size);
/* 1 if `name` is in the comma-separated `list` (NULL list = everything). */
int bench_selected(const char *list, const char *name);
/* Opens a txm connection to e (and runs sqlite-file's PRAGMA synchronous=OFF). Returns 0 or a
 * txm code with err filled. */
int bench_txm_open(txm_conn **out, const bench_engine *e, char *err, size_t errsz);
/* For groups that need several connections to one database: prints why e is skipped (not
 * measured, no txm driver, or :memory:, where every connection is a database of its own) and
 * returns 1; 0 if e can run. */
int bench_skip_shared(const bench_engine *e);
/* "CODE: message" of the calling thread's last txm error. */
const char *bench_txm_err(char *buf, size_t size);

#endif /* TXM_BENCH_H */
