/*
 * txm-bench: microbenchmarks of txm against hand-written client-library code, per engine.
 * Performance is measured here, never asserted in tests. See docs/bench.md.
 *
 *   txm-bench [--quick] [--csv FILE] [--group LIST] [--engine LIST] [--shape LIST]
 *             [--reps N] [--iterations N] [--seconds S] [--dl-seconds S]
 *             [--ct-writers LIST] [--ct-tx N] [--ct-policies LIST]
 *             [--lg-writers LIST] [--lg-seconds S] [--lg-impl LIST]
 *
 * Engines: sqlite-mem (sqlite::memory:), sqlite-file (a temp file, WAL, synchronous=OFF),
 * postgresql (TXM_BENCH_PG_URL or TXM_TEST_PG_URL), mysql (TXM_BENCH_MYSQL_URL or
 * TXM_TEST_MYSQL_URL). An engine without a URL is skipped with the reason printed.
 */
#include "bench.h"
#include "internal.h" /* txm__url_parse for the redacted URL */
#include "txm_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

typedef struct group {
    const char *name;
    const char *about;
    bench_group_fn fn;
} group;

static const group groups[] = {
    {"overhead", "txm vs raw client calls on the same SQL, per transaction shape", bench_group_overhead},
    {"deadlock", "retry policies side by side: 2/4/8 workers, deadlocks and SERIALIZABLE failures", bench_group_deadlock},
    {"contention", "retry policies: N SERIALIZABLE writers on one row, give-ups and attempts", bench_group_contention},
    {"ledger", "running-balance ledger: txm_billing_post vs naive designs and a bare UPDATE, N writers", bench_group_ledger},
    {"depth", "cost per nesting level from depth 10 to 10,000, one INSERT per level, txm vs raw", bench_group_depth},
};

void bench_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n;
    if (!size)
        return;
    n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

int bench_selected(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;
    if (!list || !*list)
        return 1;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

int bench_skip_shared(const bench_engine *e)
{
    if (e->skip[0] || e->no_txm[0]) {
        printf("   %-11s skipped: %s\n", e->name, e->skip[0] ? e->skip : e->no_txm);
        return 1;
    }
    if (!e->shared_db) {
        printf("   %-11s skipped: every :memory: connection is a database of its own\n", e->name);
        return 1;
    }
    return 0;
}

const char *bench_txm_err(char *buf, size_t size)
{
    const txm_error *e = txm_error_last();
    if (e->code == TXM_ETX_ABORTED && e->cause)
        snprintf(buf, size, "%s: %s (cause %s: %s)", txm_err_name(e->code), e->message, txm_err_name(e->cause->code),
                 e->cause->message);
    else
        snprintf(buf, size, "%s: %s", txm_err_name(e->code), e->message);
    return buf;
}

int bench_txm_open(txm_conn **out, const bench_engine *e, char *err, size_t errsz)
{
    char buf[512];
    int rc = txm_open(out, e->url, NULL);
    if (rc != 0) {
        snprintf(err, errsz, "txm_open %s: %s", e->redacted, bench_txm_err(buf, sizeof buf));
        return rc;
    }
    if (e->kind == BENCH_SQLITE && e->shared_db &&
        (rc = txm_exec(*out, "PRAGMA synchronous=OFF", NULL, 0, NULL)) != 0) {
        snprintf(err, errsz, "PRAGMA synchronous=OFF: %s", bench_txm_err(buf, sizeof buf));
        txm_close(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- engines --------------------------------------------------------------------------------- */
static char tmpdir[256];

static void set_url(bench_engine *e, const char *url)
{
    txm_url *u = NULL;
    bench_strlcpy(e->url, url, sizeof e->url);
    if (txm__url_parse(&u, url) == 0) {
        bench_strlcpy(e->redacted, u->redacted, sizeof e->redacted);
        txm__url_free(u);
    } else
        snprintf(e->redacted, sizeof e->redacted, "(unparseable URL)");
}

static const char *env2(const char *a, const char *b, const char **which)
{
    const char *v = getenv(a);
    *which = a;
    if (!v || !*v) {
        v = getenv(b);
        *which = b;
    }
    return v && *v ? v : NULL;
}

static size_t make_engines(bench_engine *es)
{
    size_t n = 0;
    const char *v, *which;
    bench_engine *e;

    /* SQLite, in memory */
    e = &es[n++];
    memset(e, 0, sizeof *e);
    e->name = "sqlite-mem";
    e->kind = BENCH_SQLITE;
    set_url(e, "sqlite::memory:");
    e->items_ddl = "CREATE TABLE IF NOT EXISTS txm_bench_items(v INTEGER NOT NULL)";
    e->items_reset = "DELETE FROM txm_bench_items";
    e->dl_ddl = "CREATE TABLE IF NOT EXISTS txm_bench_dl(id INTEGER PRIMARY KEY, v INTEGER NOT NULL)";
    if (!TXM_HAVE_SQLITE)
        snprintf(e->no_txm, sizeof e->no_txm, "txm built without the sqlite driver");

    /* SQLite, a file in WAL mode with synchronous=OFF */
    e = &es[n++];
    *e = es[0];
    e->name = "sqlite-file";
    e->shared_db = 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/txm-bench.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = '\0';
        snprintf(e->skip, sizeof e->skip, "cannot create a temp directory");
    } else {
        char url[700];
        snprintf(e->file_path, sizeof e->file_path, "%s/bench.db", tmpdir);
        snprintf(url, sizeof url, "sqlite:%s?journal=wal&busy_timeout=5000", e->file_path);
        set_url(e, url);
    }

    /* PostgreSQL */
    e = &es[n++];
    memset(e, 0, sizeof *e);
    e->name = "postgresql";
    e->kind = BENCH_PG;
    e->shared_db = 1;
    e->items_ddl = "CREATE TABLE IF NOT EXISTS txm_bench_items(v bigint NOT NULL)";
    e->items_reset = "TRUNCATE txm_bench_items";
    e->dl_ddl = "CREATE TABLE IF NOT EXISTS txm_bench_dl(id integer PRIMARY KEY, v bigint NOT NULL)";
    if ((v = env2("TXM_BENCH_PG_URL", "TXM_TEST_PG_URL", &which)))
        set_url(e, v);
    else
        snprintf(e->skip, sizeof e->skip, "set TXM_BENCH_PG_URL (or TXM_TEST_PG_URL), e.g. from scripts/pg-server.sh");
    if (!TXM_HAVE_PG)
        snprintf(e->no_txm, sizeof e->no_txm, "txm built without the postgresql driver (drivers/pg.c or libpq missing)");

    /* MySQL / MariaDB */
    e = &es[n++];
    memset(e, 0, sizeof *e);
    e->name = "mysql";
    e->kind = BENCH_MYSQL;
    e->shared_db = 1;
    e->items_ddl = "CREATE TABLE IF NOT EXISTS txm_bench_items(id bigint AUTO_INCREMENT PRIMARY KEY, "
                   "v bigint NOT NULL) ENGINE=InnoDB";
    e->items_reset = "TRUNCATE TABLE txm_bench_items";
    e->dl_ddl = "CREATE TABLE IF NOT EXISTS txm_bench_dl(id int PRIMARY KEY, v bigint NOT NULL) ENGINE=InnoDB";
    if ((v = env2("TXM_BENCH_MYSQL_URL", "TXM_TEST_MYSQL_URL", &which)))
        set_url(e, v);
    else
        snprintf(e->skip, sizeof e->skip,
                 "set TXM_BENCH_MYSQL_URL (or TXM_TEST_MYSQL_URL), e.g. from scripts/mariadb-server.sh");
    if (!TXM_HAVE_MYSQL)
        snprintf(e->no_txm, sizeof e->no_txm,
                 "txm built without the mysql driver (drivers/mysql.c or libmariadb missing)");
    return n;
}

static void remove_tmp(void)
{
    static const char *const suffix[] = {"bench.db", "bench.db-wal", "bench.db-shm", "bench.db-journal"};
    char p[400];
    size_t i;
    if (!tmpdir[0])
        return;
    for (i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, suffix[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

/* "1.23 0.98 0.50" from /proc/loadavg, or "unknown". */
static const char *loadavg(char *buf, size_t size)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
        snprintf(buf, size, "unknown");
    else
        snprintf(buf, size, "%.2f %.2f %.2f", a, b, c);
    if (f)
        fclose(f);
    return buf;
}

/* ---- machine --------------------------------------------------------------------------------- */
static void describe_machine(const bench_opts *o)
{
    char date[64], cpu[256] = "unknown", line[512];
    time_t now = time(NULL);
    struct utsname un;
    FILE *f = fopen("/proc/cpuinfo", "r");

    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ')
                        c++;
                    c[strcspn(c, "\n")] = '\0';
                    bench_strlcpy(cpu, c, sizeof cpu);
                }
                break;
            }
        }
        fclose(f);
    }
    printf("# txm-bench\n");
    bench_meta("date", "%s", date);
    bench_meta("nproc", "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    bench_meta("cpu", "%s", cpu);
    bench_meta("loadavg_start", "%s (1/5/15 min; > nproc means other work competed for the CPUs)",
               loadavg(line, sizeof line));
    if (uname(&un) == 0)
        bench_meta("kernel", "%s %s %s", un.sysname, un.release, un.machine);
    bench_meta("txm", "%s", txm_version());
#if defined(__VERSION__)
    bench_meta("compiler", "%s%s", __VERSION__,
#if defined(__OPTIMIZE__)
               " (optimized)"
#else
               " (NOT optimized: numbers are pessimistic)"
#endif
    );
#endif
    if (o->iterations)
        bench_meta("timing", "%llu iterations per repetition, %u repetitions, median", (unsigned long long)o->iterations,
                   o->reps);
    else
        bench_meta("timing", "warm-up %.2f s, then %u repetitions of ~%.2f s each (interleaved), median%s", o->warm_s,
                   o->reps, o->rep_s, o->quick ? " [--quick]" : "");
}

static void usage(FILE *f)
{
    size_t i;
    fprintf(f, "usage: txm-bench [--quick] [--csv FILE] [--plot FILE.svg] [--progress] [--group LIST] [--engine LIST]\n"
               "                 [--shape LIST] [--impl LIST] [--floor-xid] [--reps N] [--iterations N] [--seconds S]\n"
               "                 [--dl-seconds S]   (also run as `txm bench ...`)\n"
               "  --quick          short runs (smoke test: the counter checks matter, the numbers are noisy)\n"
               "  --csv FILE       also write every number to FILE (group,engine,case,impl,metric,value)\n"
               "  --plot FILE.svg  draw commits/s against writers (groups ledger, contention) with gnuplot,\n"
               "                   if it is on PATH (skipped with a message if not)\n"
               "  --plot-metric L  metrics --plot draws (default commits_per_s,tx_per_s)\n"
               "  --plot-from CSV  with --plot: draw the results of an earlier --csv file, measure nothing\n"
               "  --progress       progress line on stderr even when it is not a terminal (one line per step)\n"
               "  --group LIST     comma-separated groups (default: all)\n"
               "  --engine LIST    sqlite-mem,sqlite-file,postgresql,mysql (default: all)\n"
               "  --shape LIST     overhead shapes: insert1,nested1,nested3,empty-nested,nested-only\n"
               "  --impl LIST      overhead subjects: txm,eager,floor,libzdb (default: all)\n"
               "  --floor-xid      PostgreSQL floor also sends SELECT pg_current_xact_id_if_assigned() with\n"
               "                   COMMIT, as txm's driver does (the price of txm_resolve_outcome)\n"
               "  --reps N         repetitions per cell, median reported (default 3)\n"
               "  --iterations N   fixed iterations per repetition (default: calibrated)\n"
               "  --seconds S      target seconds per repetition (default 0.4)\n"
               "  --dl-seconds S   deadlock group: seconds per repetition (default 1)\n"
               "  --ct-writers L   contention group: writer counts (default 2,4,8)\n"
               "  --ct-tx N        contention group: transactions per configuration (default 1000)\n"
               "  --ct-policies L  contention group: retry policies, each `default` or\n"
               "                   max_attempts/base_delay_us/max_delay_us/deadline_ms (default:\n"
               "                   5/2000/200000/0,default)\n"
               "  --lg-writers L   ledger group: writer counts (default 1,2,4,8,16; --quick 1,4)\n"
               "  --lg-seconds S   ledger group: seconds per configuration (default 1; --quick 0.1)\n"
               "  --lg-impl L      ledger group: txm,naive,lock-last,lock-table,update-floor (default: all)\n"
               "environment: TXM_BENCH_PG_URL / TXM_TEST_PG_URL, TXM_BENCH_MYSQL_URL / TXM_TEST_MYSQL_URL\n"
               "exit status: 0; 1 if a counter check failed (CHECK FAILED lines) or a file could not be written\n"
               "groups:\n");
    for (i = 0; i < sizeof groups / sizeof groups[0]; i++)
        fprintf(f, "  %-10s %s\n", groups[i].name, groups[i].about);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_engine engines[4];
    const char *csv = NULL, *plot = NULL, *plot_metrics = NULL, *plot_from = NULL;
    int progress = 0;
    size_t n, i, ne = 0;
    int a, rc = 0;
    bench_engine chosen[4];

    memset(&o, 0, sizeof o);
    o.warm_s = 0.15;
    o.rep_s = 0.4;
    o.reps = 3;
    o.dl_rep_s = 1.0;
    for (a = 1; a < argc; a++) {
        const char *arg = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(arg, "--quick") == 0) {
            o.quick = 1;
            o.warm_s = 0.01;
            o.rep_s = 0.03;
            o.dl_rep_s = 0.15;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (val && strcmp(arg, "--csv") == 0)
            csv = argv[++a];
        else if (val && strcmp(arg, "--plot") == 0)
            plot = argv[++a];
        else if (val && strcmp(arg, "--plot-from") == 0)
            plot_from = argv[++a];
        else if (val && strcmp(arg, "--plot-metric") == 0)
            plot_metrics = argv[++a];
        else if (strcmp(arg, "--progress") == 0)
            progress = 1;
        else if (val && strcmp(arg, "--group") == 0)
            o.groups = argv[++a];
        else if (val && strcmp(arg, "--engine") == 0)
            o.engines = argv[++a];
        else if (val && strcmp(arg, "--shape") == 0)
            o.shapes = argv[++a];
        else if (strcmp(arg, "--floor-xid") == 0)
            o.floor_xid = 1;
        else if (val && strcmp(arg, "--impl") == 0)
            o.impls = argv[++a];
        else if (val && strcmp(arg, "--reps") == 0) {
            int r = atoi(argv[++a]);
            o.reps = r < 1 ? 1 : r > BENCH_MAX_REPS ? BENCH_MAX_REPS : (unsigned)r;
        } else if (val && strcmp(arg, "--iterations") == 0)
            o.iterations = strtoull(argv[++a], NULL, 10);
        else if (val && strcmp(arg, "--seconds") == 0)
            o.rep_s = atof(argv[++a]);
        else if (val && strcmp(arg, "--dl-seconds") == 0)
            o.dl_rep_s = atof(argv[++a]);
        else if (val && strcmp(arg, "--ct-writers") == 0)
            o.ct_writers = argv[++a];
        else if (val && strcmp(arg, "--ct-tx") == 0)
            o.ct_tx = (unsigned)strtoul(argv[++a], NULL, 10);
        else if (val && strcmp(arg, "--ct-policies") == 0)
            o.ct_policies = argv[++a];
        else if (val && strcmp(arg, "--lg-writers") == 0)
            o.lg_writers = argv[++a];
        else if (val && strcmp(arg, "--lg-seconds") == 0)
            o.lg_seconds = atof(argv[++a]);
        else if (val && strcmp(arg, "--lg-impl") == 0)
            o.lg_impls = argv[++a];
        else {
            fprintf(stderr, "txm-bench: unknown or incomplete option '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (o.groups) {
        /* reject unknown group names rather than silently measuring nothing */
        const char *p = o.groups;
        while (*p) {
            size_t len = strcspn(p, ","), g, found = 0;
            for (g = 0; g < sizeof groups / sizeof groups[0]; g++)
                if (strlen(groups[g].name) == len && strncmp(groups[g].name, p, len) == 0)
                    found = 1;
            if (!found) {
                fprintf(stderr, "txm-bench: unknown group '%.*s'\n", (int)len, p);
                usage(stderr);
                return 2;
            }
            p += len + (p[len] == ',');
        }
    }

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (plot_from) { /* draw an earlier run's CSV; measure nothing */
        unsigned nread;
        if (!plot) {
            fprintf(stderr, "txm-bench: --plot-from needs --plot FILE.svg\n");
            return 2;
        }
        if (bench_read_csv(plot_from, &nread) != 0)
            return 1;
        printf("# %u numbers read from %s\n", nread, plot_from);
        rc = bench_plot(plot, plot_metrics) != 0;
        bench_results_free();
        return rc;
    }
    bench_progress_init(progress);
    describe_machine(&o);
    n = make_engines(engines);
    for (i = 0; i < n; i++) {
        if (!bench_selected(o.engines, engines[i].name))
            continue;
        chosen[ne] = engines[i];
        chosen[ne].floor_xid = o.floor_xid;
        ne++;
        bench_meta("engine", "%s %s%s%s", engines[i].name, engines[i].skip[0] ? "skipped: " : engines[i].redacted,
                   engines[i].skip[0] ? engines[i].skip : "",
                   !engines[i].skip[0] && engines[i].no_txm[0] ? " (txm driver not built: baselines only)" : "");
    }
    for (i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if (!bench_selected(o.groups, groups[i].name))
            continue;
        if (groups[i].fn(&o, chosen, ne) != 0)
            rc = 1;
    }
    for (i = 0; i < ne; i++)
        if (chosen[i].server_version[0])
            bench_meta("server", "%s: %s", chosen[i].name, chosen[i].server_version);
    {
        char la[64];
        bench_meta("loadavg_end", "%s", loadavg(la, sizeof la));
    }
    if (plot && bench_plot(plot, plot_metrics) != 0)
        rc = 1;
    if (bench_checks_report() != 0)
        rc = 1;
    if (csv) {
        if (bench_write_csv(csv) != 0)
            rc = 1;
        else
            printf("\n# CSV written to %s\n", csv);
    }
    bench_results_free();
    remove_tmp();
    return rc;
}
