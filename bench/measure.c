/* Timing loop: warm-up/calibration, interleaved repetitions, median. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static void fail(bench_subject *s, const char *stage)
{
    s->failed = 1;
    snprintf(s->why, sizeof s->why, "%s: %s", stage, s->error ? s->error(s->ctx) : "failed");
    bench_progress_clear();
    fprintf(stderr, "  %s failed during %s\n", s->name, s->why);
}

static int do_reset(bench_subject *s, const char *stage)
{
    if (s->reset && s->reset(s->ctx) != 0) {
        fail(s, stage);
        return -1;
    }
    return 0;
}

/* Runs iterations until warm_s has passed (at least 20); returns seconds per iteration. */
static double warm_up(const bench_opts *o, bench_subject *s, uint64_t *next_i)
{
    double t0 = bench_now(), el;
    uint64_t k = 0;
    do {
        if (s->iter(s->ctx, (*next_i)++) != 0) {
            fail(s, "warm-up");
            return 0.0;
        }
        k++;
        el = bench_now() - t0;
    } while (k < 20 || el < o->warm_s);
    return el / (double)k;
}

void bench_measure(const bench_opts *o, bench_subject *subj, size_t n)
{
    unsigned reps = o->reps ? o->reps : 3, r;
    uint64_t next_i = 1;
    size_t j;

    if (reps > BENCH_MAX_REPS)
        reps = BENCH_MAX_REPS;
    for (j = 0; j < n; j++) {
        bench_subject *s = &subj[j];
        double per;
        s->nreps = 0;
        s->rt_per_tx = -1.0;
        s->rt_sum = 0;
        if (s->failed || do_reset(s, "reset"))
            continue;
        bench_progress_step("warm-up %s", s->name);
        per = warm_up(o, s, &next_i);
        if (s->failed)
            continue;
        if (o->iterations)
            s->iters = o->iterations;
        else {
            double want = o->rep_s / (per > 0 ? per : 1e-6);
            s->iters = want < 5 ? 5 : want > 1e8 ? (uint64_t)1e8 : (uint64_t)want;
        }
    }
    for (r = 0; r < reps; r++) {
        bench_progress_step("rep %u/%u", r + 1, reps);
        for (j = 0; j < n; j++) {
            bench_subject *s = &subj[j];
            uint64_t k, rt0 = 0;
            double t0, el, c0, cel;
            if (s->failed || do_reset(s, "reset"))
                continue;
            if (s->round_trips)
                rt0 = s->round_trips(s->ctx);
            c0 = bench_cpu_now();
            t0 = bench_now();
            for (k = 0; k < s->iters; k++) {
                if (s->iter(s->ctx, next_i++) != 0)
                    break;
            }
            el = bench_now() - t0;
            cel = bench_cpu_now() - c0;
            if (k < s->iters) {
                fail(s, "timed run");
                continue;
            }
            if (s->round_trips)
                s->rt_sum += s->round_trips(s->ctx) - rt0;
            s->cpu[s->nreps] = cel * 1e6 / (double)s->iters;
            s->us[s->nreps++] = el * 1e6 / (double)s->iters;
        }
    }
    for (j = 0; j < n; j++) {
        bench_subject *s = &subj[j];
        double sorted[BENCH_MAX_REPS];
        if (s->failed || s->nreps == 0) {
            s->failed = 1;
            continue;
        }
        memcpy(sorted, s->us, s->nreps * sizeof *sorted);
        s->us_median = bench_median(sorted, s->nreps);
        s->us_min = sorted[0];
        s->us_max = sorted[s->nreps - 1];
        memcpy(sorted, s->cpu, s->nreps * sizeof *sorted);
        s->cpu_median = bench_median(sorted, s->nreps);
        if (s->round_trips)
            s->rt_per_tx = (double)s->rt_sum / ((double)s->iters * s->nreps);
    }
    bench_progress_clear();
}
