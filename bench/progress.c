/* The progress line (stderr) and the counter checks that make a run's exit status mean something. */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- progress ------------------------------------------------------------------------------ */
enum { PROGRESS_OFF, PROGRESS_TTY, PROGRESS_LINES };
static int progress_mode;
static int progress_shown; /* a TTY line is on the screen and must be erased before stdout prints */
static char stage[256];
static double t_start;

void bench_progress_init(int forced)
{
    /* A terminal gets one line rewritten in place; --progress into a file or pipe gets one line
     * per step (carriage returns would garble a log). */
    progress_mode = isatty(STDERR_FILENO) ? PROGRESS_TTY : forced ? PROGRESS_LINES : PROGRESS_OFF;
    t_start = bench_now();
}

static void show(const char *step)
{
    double el = bench_now() - t_start;
    unsigned s = el > 0 ? (unsigned)el : 0;
    if (progress_mode == PROGRESS_OFF)
        return;
    fflush(stdout); /* whatever the table printed so far comes first */
    if (progress_mode == PROGRESS_TTY) {
        /* Clear the row, write the line, and put the cursor back at column 0: should stdout print
         * before bench_progress_clear(), it overwrites the line instead of continuing it. */
        fprintf(stderr, "\r\033[K%s%s%s (%u:%02u)\r", stage, step[0] ? " " : "", step, s / 60, s % 60);
        progress_shown = 1;
    } else
        fprintf(stderr, "%s%s%s (%u:%02u)\n", stage, step[0] ? " " : "", step, s / 60, s % 60);
    fflush(stderr);
}

void bench_progress(const char *group, const char *fmt, ...)
{
    size_t len;
    va_list ap;
    snprintf(stage, sizeof stage, "[group %s] ", group);
    len = strlen(stage);
    va_start(ap, fmt);
    vsnprintf(stage + len, sizeof stage - len, fmt, ap);
    va_end(ap);
    show("");
}

void bench_progress_step(const char *fmt, ...)
{
    char step[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(step, sizeof step, fmt, ap);
    va_end(ap);
    show(step);
}

void bench_progress_clear(void)
{
    if (!progress_shown)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress_shown = 0;
}

/* ---- counter checks ------------------------------------------------------------------------ */
static unsigned checks_passed, checks_failed;

int bench_check(const char *group, const char *engine, const char *cas, const char *impl, const char *what,
                double got, double expected)
{
    /* TXM_BENCH_BREAK_CHECKS=1 (tests/bench only): every check expects one more than the right
     * value, so the test can show that a failing check fails the run. */
    const char *brk = getenv("TXM_BENCH_BREAK_CHECKS");
    char metric[96];
    int ok;
    if (brk && strcmp(brk, "1") == 0)
        expected += 1;
    ok = got == expected;
    snprintf(metric, sizeof metric, "check:%s", what);
    bench_record(group, engine, cas, impl, metric, ok);
    if (ok) {
        checks_passed++;
        return 0;
    }
    checks_failed++;
    bench_progress_clear();
    printf("   CHECK FAILED: %s | %s | %s | %s: %s is %g, expected %g\n", group, engine, cas, impl, what, got,
           expected);
    fflush(stdout);
    return -1;
}

unsigned bench_checks_report(void)
{
    bench_meta("checks", "%u passed, %u failed%s", checks_passed, checks_failed,
               checks_failed ? " (CHECK FAILED lines above; the exit status is 1)" : "");
    return checks_failed;
}
