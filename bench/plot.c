/*
 * --plot FILE.svg: the contention curves (commits per second against the number of writers) of
 * this run's results, drawn by gnuplot when it is on PATH (skipped with a message when not: a
 * missing plotter never fails a run).
 *
 * Which results: every record whose case is "<name>/w<N>" and whose metric is one of --plot-metric
 * (default "commits_per_s,tx_per_s"; a group that has several uses the first in that list). That
 * is the ledger group ("hot/w8", impl txm, naive, ...) and the contention group ("<policy>/w8",
 * impl txm_retry). One panel per group, engine and case name, one line per impl (the ledger's
 * designs). In a group whose case names are the designs compared (contention and deadlock: retry
 * policies; any group with a single impl) it is the other way round: one panel per group, engine
 * and impl (deadlock: the scenario), one line per case name.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PLOT_MAX_POINTS 4096
#define PLOT_NAME 96

typedef struct point {
    char group[PLOT_NAME], engine[PLOT_NAME], cas[PLOT_NAME], impl[PLOT_NAME], metric[PLOT_NAME];
    int rank; /* position of the metric in the metric list: lower wins within a group */
    unsigned writers;
    double value;
    int by_case;      /* lines are case names (panels per impl), not impls (panels per case name) */
    int single_impl;  /* the group has one impl: the panel title leaves it out */
    size_t panel, line; /* numbered in the order first recorded */
} point;

typedef struct collect {
    const char *metrics;
    point *p;
    size_t n;
    int overflow;
} collect;

/* Rank of `metric` in the comma-separated list, or -1. */
static int metric_rank(const char *list, const char *metric)
{
    size_t n = strlen(metric);
    int rank = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, metric, n) == 0)
            return rank;
        rank++;
        p += len + (p[len] == ',');
    }
    return -1;
}

/* "<name>/w<N>" with N in 1..100000: writes name into out and returns N; 0 otherwise. */
static unsigned split_case(const char *cas, char *out, size_t size)
{
    const char *w = strrchr(cas, '/');
    char *end;
    unsigned long n;
    if (!w || w == cas || w[1] != 'w' || w[2] < '0' || w[2] > '9' || (size_t)(w - cas) >= size)
        return 0;
    errno = 0;
    n = strtoul(w + 2, &end, 10);
    if (*end || errno || n < 1 || n > 100000)
        return 0;
    memcpy(out, cas, (size_t)(w - cas));
    out[w - cas] = '\0';
    return (unsigned)n;
}

static void take(void *ctx, const char *group, const char *engine, const char *cas, const char *impl,
                 const char *metric, double value)
{
    collect *c = ctx;
    point *p;
    int rank = metric_rank(c->metrics, metric);
    if (rank < 0)
        return;
    if (c->n == PLOT_MAX_POINTS) {
        c->overflow = 1;
        return;
    }
    p = &c->p[c->n];
    memset(p, 0, sizeof *p);
    if (!(p->writers = split_case(cas, p->cas, sizeof p->cas)))
        return;
    bench_strlcpy(p->group, group, sizeof p->group);
    bench_strlcpy(p->engine, engine, sizeof p->engine);
    bench_strlcpy(p->impl, impl, sizeof p->impl);
    bench_strlcpy(p->metric, metric, sizeof p->metric);
    p->rank = rank;
    p->value = value;
    c->n++;
}

/* Groups whose case names are the compared designs (retry policies) and whose impl is the setting. */
static int lines_by_case(const char *group)
{
    return strcmp(group, "contention") == 0 || strcmp(group, "deadlock") == 0;
}

static int same_panel(const point *a, const point *b)
{
    return strcmp(a->group, b->group) == 0 && strcmp(a->engine, b->engine) == 0 &&
           strcmp(a->by_case ? a->impl : a->cas, a->by_case ? b->impl : b->cas) == 0;
}

static const char *line_name(const point *p) { return p->by_case ? p->cas : p->impl; }

/* Keeps, per group, only the points of its best-ranked metric; numbers panels and lines. */
static size_t arrange(point *p, size_t n, size_t *npanels)
{
    size_t i, j, kept = 0;
    for (i = 0; i < n; i++) {
        int best = p[i].rank, single = 1;
        for (j = 0; j < n; j++)
            if (strcmp(p[j].group, p[i].group) == 0) {
                if (p[j].rank < best)
                    best = p[j].rank;
                if (strcmp(p[j].impl, p[i].impl) != 0)
                    single = 0;
            }
        if (p[i].rank != best)
            continue;
        p[i].by_case = single || lines_by_case(p[i].group);
        p[i].single_impl = single;
        p[kept++] = p[i];
    }
    *npanels = 0;
    for (i = 0; i < kept; i++) {
        p[i].panel = *npanels;
        p[i].line = i;
        for (j = 0; j < i; j++)
            if (same_panel(&p[j], &p[i])) {
                p[i].panel = p[j].panel;
                break;
            }
        if (j == i)
            (*npanels)++;
        for (j = 0; j < i; j++)
            if (p[j].panel == p[i].panel && strcmp(line_name(&p[j]), line_name(&p[i])) == 0) {
                p[i].line = p[j].line;
                break;
            }
    }
    return kept;
}

static int by_panel_line_writers(const void *a, const void *b)
{
    const point *x = a, *y = b;
    if (x->panel != y->panel)
        return x->panel < y->panel ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return (x->writers > y->writers) - (x->writers < y->writers);
}

/* A name inside a double-quoted gnuplot string: no quote, backslash or control character. */
static void put_name(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '"' || *s == '\\' || *s == '@' || (unsigned char)*s < 0x20 ? '_' : *s, f);
}

/* The gnuplot program: one datablock per line, one panel per (group, engine[, case name]). */
static void write_script(FILE *f, const point *p, size_t n, size_t npanels)
{
    size_t i, j, cols, rows, per_ge = 0;
    for (i = 0; i < n; i++) { /* columns: panels per (group, engine), so each engine gets a row */
        size_t k = 0, last = (size_t)-1;
        for (j = 0; j < n; j++)
            if (strcmp(p[j].group, p[i].group) == 0 && strcmp(p[j].engine, p[i].engine) == 0 &&
                p[j].panel != last) {
                k++;
                last = p[j].panel;
            }
        if (k > per_ge)
            per_ge = k;
    }
    /* one panel per engine (contention): fill rows of up to 3 instead of one tall column */
    cols = per_ge > 1 ? per_ge : npanels;
    cols = cols < 1 ? 1 : cols > 3 ? 3 : cols;
    rows = (npanels + cols - 1) / cols;
    fprintf(f, "set terminal svg size %zu,%zu dynamic noenhanced font \"Sans,11\" background rgb \"white\"\n",
            cols * 640, rows * 380);
    for (i = 0; i < n; i++) {
        if (i == 0 || p[i].line != p[i - 1].line || p[i].panel != p[i - 1].panel)
            fprintf(f, "$l%zu << EOD\n", p[i].line);
        fprintf(f, "%u %.6g\n", p[i].writers, p[i].value);
        if (i + 1 == n || p[i + 1].line != p[i].line || p[i + 1].panel != p[i].panel)
            fprintf(f, "EOD\n");
    }
    fprintf(f, "set multiplot layout %zu,%zu title \"txm-bench: commits per second against writers\"\n", rows, cols);
    fprintf(f, "set grid\nset logscale x 2\nset xlabel \"writers\"\nset key outside right top vertical\nset offsets 0, 0, graph 0.05, 0\n");
    for (i = 0; i < n;) {
        size_t end = i, k;
        unsigned lo = p[i].writers, hi = p[i].writers;
        while (end < n && p[end].panel == p[i].panel)
            end++;
        for (k = i; k < end; k++) {
            lo = p[k].writers < lo ? p[k].writers : lo;
            hi = p[k].writers > hi ? p[k].writers : hi;
        }
        fprintf(f, "set title \"");
        put_name(f, p[i].group);
        fprintf(f, " | ");
        put_name(f, p[i].engine);
        if (!p[i].single_impl) {
            fprintf(f, " | ");
            put_name(f, p[i].by_case ? p[i].impl : p[i].cas);
        }
        fprintf(f, "\"\nset ylabel \"");
        put_name(f, p[i].metric);
        fprintf(f, "\"\nset xrange [%g:%g]\nset yrange [0:*]\nset xtics (", lo / 1.4, hi * 1.4);
        for (k = i; k < end; k++) { /* the writer counts measured, each once */
            size_t m;
            for (m = i; m < k && p[m].writers != p[k].writers; m++)
                ;
            if (m == k)
                fprintf(f, "%s%u", k == i ? "" : ", ", p[k].writers);
        }
        fprintf(f, ")\nplot ");
        for (k = i; k < end; k++) {
            if (k > i && p[k].line == p[k - 1].line)
                continue;
            fprintf(f, "%s$l%zu using 1:2 with linespoints linewidth 2 pointtype 7 title \"", k == i ? "" : ", ",
                    p[k].line);
            put_name(f, line_name(&p[k]));
            fprintf(f, "\"");
        }
        fprintf(f, "\n");
        i = end;
    }
    fprintf(f, "unset multiplot\n");
}

/* gnuplot's path on PATH, or -1. */
static int find_gnuplot(char *out, size_t size)
{
    const char *path = getenv("PATH"), *p;
    struct stat st;
    for (p = path ? path : ""; *p;) {
        size_t len = strcspn(p, ":");
        int w = snprintf(out, size, "%.*s/gnuplot", (int)len, len ? p : ".");
        if (w > 0 && (size_t)w < size && stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 0;
        p += len + (p[len] == ':');
    }
    return -1;
}

/* Runs gnuplot with the script on its standard input and its standard output into `path`. */
static int run_gnuplot(const char *gnuplot, const char *path, const point *p, size_t n, size_t npanels)
{
    int in[2], out, status = 0;
    pid_t pid;
    FILE *f;
    void (*old_pipe)(int);

    out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        printf("# plot: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (pipe(in) != 0) {
        printf("# plot: pipe: %s\n", strerror(errno));
        close(out);
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        char *argv[] = {(char *)"gnuplot", NULL};
        if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
            _exit(127);
        close(in[0]);
        close(in[1]);
        close(out);
        execv(gnuplot, argv);
        _exit(127);
    }
    close(in[0]);
    close(out);
    if (pid < 0) {
        printf("# plot: fork: %s\n", strerror(errno));
        close(in[1]);
        return -1;
    }
    old_pipe = signal(SIGPIPE, SIG_IGN); /* gnuplot may die before reading everything */
    f = fdopen(in[1], "w");
    if (f) {
        write_script(f, p, n, npanels);
        fclose(f);
    } else
        close(in[1]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    signal(SIGPIPE, old_pipe);
    if (!f || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("# plot: %s failed (%s %d); %s not drawn\n", gnuplot, WIFEXITED(status) ? "exit status" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), path);
        unlink(path);
        return -1;
    }
    return 0;
}

int bench_plot(const char *path, const char *metrics)
{
    collect c;
    char gnuplot[4096];
    size_t n, npanels;
    int rc = 0;

    memset(&c, 0, sizeof c);
    c.metrics = metrics && *metrics ? metrics : "commits_per_s,tx_per_s";
    c.p = calloc(PLOT_MAX_POINTS, sizeof *c.p);
    if (!c.p) {
        printf("# plot: out of memory\n");
        return -1;
    }
    bench_results_each(take, &c);
    n = arrange(c.p, c.n, &npanels);
    qsort(c.p, n, sizeof *c.p, by_panel_line_writers);
    if (n == 0)
        printf("\n# plot: nothing to draw (no result with case <name>/w<N> and metric %s: run --group ledger or\n"
               "#   contention); %s not written\n",
               c.metrics, path);
    else if (find_gnuplot(gnuplot, sizeof gnuplot) != 0)
        printf("\n# plot: gnuplot not found on PATH; %s not drawn (install gnuplot, e.g. Debian's gnuplot-nox,\n"
               "#   or plot the --csv file yourself)\n",
               path);
    else if ((rc = run_gnuplot(gnuplot, path, c.p, n, npanels)) == 0)
        printf("\n# plot: %s (%zu panel%s, %zu points%s)\n", path, npanels, npanels == 1 ? "" : "s", n,
               c.overflow ? "; more results than the plot takes, some left out" : "");
    free(c.p);
    return rc;
}
