/* Result records and the CSV file (long format, one number per line). */
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rec {
    char *group, *engine, *cas, *impl, *metric, *text;
    double value;
} rec;

static rec *recs;
static size_t nrecs, caprecs;

static char *dup(const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s ? s : "", n);
    return p;
}

static rec *push(void)
{
    if (nrecs == caprecs) {
        size_t cap = caprecs ? caprecs * 2 : 64;
        rec *r = realloc(recs, cap * sizeof *r);
        if (!r)
            return NULL;
        recs = r;
        caprecs = cap;
    }
    memset(&recs[nrecs], 0, sizeof recs[nrecs]);
    return &recs[nrecs++];
}

void bench_record(const char *group, const char *engine, const char *cas, const char *impl, const char *metric,
                  double value)
{
    rec *r = push();
    if (!r)
        return;
    r->group = dup(group);
    r->engine = dup(engine);
    r->cas = dup(cas);
    r->impl = dup(impl);
    r->metric = dup(metric);
    r->value = value;
}

void bench_meta(const char *key, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    rec *r;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("# %-16s %s\n", key, buf);
    r = push();
    if (!r)
        return;
    r->group = dup("meta");
    r->engine = dup("");
    r->cas = dup("");
    r->impl = dup("");
    r->metric = dup(key);
    r->text = dup(buf);
}

/* RFC 4180 quoting when needed. */
static void field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else
        fputs(s, f);
    fputc(last ? '\n' : ',', f);
}

int bench_write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    size_t i;
    if (!f) {
        perror(path);
        return -1;
    }
    fputs("group,engine,case,impl,metric,value\n", f);
    for (i = 0; i < nrecs; i++) {
        rec *r = &recs[i];
        field(f, r->group, 0);
        field(f, r->engine, 0);
        field(f, r->cas, 0);
        field(f, r->impl, 0);
        field(f, r->metric, 0);
        if (r->text)
            field(f, r->text, 1);
        else
            fprintf(f, "%.4f\n", r->value);
    }
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

void bench_results_each(bench_result_fn fn, void *ctx)
{
    size_t i;
    for (i = 0; i < nrecs; i++)
        if (!recs[i].text)
            fn(ctx, recs[i].group, recs[i].engine, recs[i].cas, recs[i].impl, recs[i].metric, recs[i].value);
}

void bench_results_free(void)
{
    size_t i;
    for (i = 0; i < nrecs; i++) {
        free(recs[i].group);
        free(recs[i].engine);
        free(recs[i].cas);
        free(recs[i].impl);
        free(recs[i].metric);
        free(recs[i].text);
    }
    free(recs);
    recs = NULL;
    nrecs = caprecs = 0;
}
