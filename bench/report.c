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

/* One CSV field (RFC 4180: quotes, doubled quotes, newlines inside quotes) into buf, truncated to
 * size. Returns the character after it: ',', '\n' or EOF. */
static int read_field(FILE *f, char *buf, size_t size)
{
    size_t n = 0;
    int c = getc(f), quoted = c == '"';
    if (quoted)
        c = getc(f);
    for (;; c = getc(f)) {
        if (c == EOF)
            break;
        if (quoted && c == '"') {
            c = getc(f);
            if (c != '"') {
                quoted = 0;
                if (c == ',' || c == '\n' || c == EOF)
                    break;
            }
        } else if (!quoted && (c == ',' || c == '\n'))
            break;
        if (c != '\r' && n + 1 < size)
            buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return c;
}

int bench_read_csv(const char *path, unsigned *nread)
{
    FILE *f = fopen(path, "r");
    char fld[6][512];
    unsigned line = 0;
    *nread = 0;
    if (!f) {
        perror(path);
        return -1;
    }
    for (;;) {
        int k = 0, end = 0;
        char *rest;
        double v;
        while (k < 6 && (end = read_field(f, fld[k], sizeof fld[k])) == ',')
            k++;
        while (end == ',') /* a row with more fields is not one of ours: skipped */
            end = read_field(f, fld[0], sizeof fld[0]);
        if (k == 0 && end == EOF && !fld[0][0])
            break;
        line++;
        if (k == 5 && line > 1 && strcmp(fld[0], "meta") != 0) {
            v = strtod(fld[5], &rest);
            if (rest != fld[5] && !*rest) {
                bench_record(fld[0], fld[1], fld[2], fld[3], fld[4], v);
                (*nread)++;
            }
        }
        if (end == EOF)
            break;
    }
    fclose(f);
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
