/* Raw libpq baselines on the same SQL txm sends (unnamed statements, text parameters).
 *  eager:      one PQexecParams per statement: BEGIN, SAVEPOINT, INSERT, RELEASE, COMMIT each wait
 *              for their own round trip (what Django and psycopg do).
 *  two-flight: pipeline mode; the pending BEGIN/SAVEPOINT travel with the next statement in one
 *              flight (one PQpipelineSync), COMMIT in the next: the floor for a synchronous API. */
#include "bench.h"

#include <libpq-fe.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct raw_pg {
    PGconn *pg;
    int pipeline;
    int xid; /* --floor-xid: the COMMIT flight starts with XID_SQL, as txm's driver does */
} raw_pg;

static const char XID_SQL[] = "SELECT pg_current_xact_id_if_assigned()";

static const char INSERT_SQL[] = "INSERT INTO txm_bench_items(v) VALUES ($1)";

static int pg_err(raw_pg *r, const char *what, const PGresult *res, char *err, size_t errsz)
{
    const char *m = res ? PQresultErrorMessage(res) : "";
    if (!m || !*m)
        m = PQerrorMessage(r->pg);
    snprintf(err, errsz, "libpq %s: %s", what, m);
    return -1;
}

static void pgr_close(void *st)
{
    raw_pg *r = st;
    if (!r)
        return;
    PQfinish(r->pg);
    free(r);
}

static int pgr_exec(void *st, const char *sql, char *err, size_t errsz)
{
    raw_pg *r = st;
    PGresult *res;
    int ok;
    if (r->pipeline && PQexitPipelineMode(r->pg) != 1)
        return pg_err(r, "exit pipeline mode", NULL, err, errsz);
    res = PQexec(r->pg, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        pg_err(r, sql, res, err, errsz);
    PQclear(res);
    if (r->pipeline && PQenterPipelineMode(r->pg) != 1)
        return pg_err(r, "enter pipeline mode", NULL, err, errsz);
    return ok ? 0 : -1;
}

static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation already exists, skipping" and the like */
}

/* The URL without txm's own query parameters (txm_resolve_outcome=...), which txm strips before
 * libpq sees the URL and libpq would reject. */
static void libpq_url(const char *url, char *out, size_t size)
{
    const char *q = strchr(url, '?'), *p;
    size_t n = q ? (size_t)(q - url) : strlen(url);
    char sep = '?';
    if (n >= size)
        n = size - 1;
    memcpy(out, url, n);
    out[n] = '\0';
    for (p = q; p && *p;) {
        const char *start = p + 1, *end = strchr(start, '&');
        size_t len = end ? (size_t)(end - start) : strlen(start), used = strlen(out);
        if (len && strncmp(start, "txm_", 4) != 0 && used + len + 2 < size) {
            out[used] = sep;
            memcpy(out + used + 1, start, len);
            out[used + 1 + len] = '\0';
            sep = '&';
        }
        p = end;
    }
}

static int pgr_open(void **out, bench_engine *e, int batched, char *err, size_t errsz)
{
    raw_pg *r = calloc(1, sizeof *r);
    char url[sizeof e->url];
    *out = NULL;
    if (!r) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    libpq_url(e->url, url, sizeof url);
    r->pg = PQconnectdb(url);
    if (PQstatus(r->pg) != CONNECTION_OK) {
        pg_err(r, "connect", NULL, err, errsz);
        pgr_close(r);
        return -1;
    }
    PQsetNoticeProcessor(r->pg, quiet_notice, NULL);
    if (pgr_exec(r, e->items_ddl, err, errsz) != 0) {
        pgr_close(r);
        return -1;
    }
    if (batched) {
        if (PQenterPipelineMode(r->pg) != 1) {
            pg_err(r, "enter pipeline mode", NULL, err, errsz);
            pgr_close(r);
            return -1;
        }
        r->pipeline = 1;
        r->xid = e->floor_xid;
    }
    if (!e->server_version[0]) {
        const char *v = PQparameterStatus(r->pg, "server_version");
        snprintf(e->server_version, sizeof e->server_version, "PostgreSQL %s", v ? v : "?");
    }
    *out = r;
    return 0;
}

static const char *stmt_sql(const raw_stmt *s) { return s->kind == RAW_INSERT ? INSERT_SQL : bench_ctl_sql(BENCH_PG, s->kind, s->level); }

static int pgr_flight(void *st, const raw_stmt *s, size_t n, char *err, size_t errsz)
{
    raw_pg *r = st;
    char val[24];
    const char *vals[1] = {val};
    size_t i;
    int rc = 0, xid;

    if (!r->pipeline) { /* eager: one statement, one round trip */
        PGresult *res;
        if (n != 1) {
            snprintf(err, errsz, "eager connection given %zu statements in one flight", n);
            return -1;
        }
        snprintf(val, sizeof val, "%" PRId64, s->value);
        res = PQexecParams(r->pg, stmt_sql(s), s->kind == RAW_INSERT ? 1 : 0, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = pg_err(r, stmt_sql(s), res, err, errsz);
        PQclear(res);
        return rc;
    }
    xid = r->xid && n == 1 && s[0].kind == RAW_COMMIT;
    if (xid && PQsendQueryParams(r->pg, XID_SQL, 0, NULL, NULL, NULL, NULL, 0) != 1)
        return pg_err(r, "PQsendQueryParams", NULL, err, errsz);
    for (i = 0; i < n; i++) {
        snprintf(val, sizeof val, "%" PRId64, s[i].value); /* libpq copies parameters when sending */
        if (PQsendQueryParams(r->pg, stmt_sql(&s[i]), s[i].kind == RAW_INSERT ? 1 : 0, NULL, vals, NULL, NULL, 0) != 1)
            return pg_err(r, "PQsendQueryParams", NULL, err, errsz);
    }
    if (PQpipelineSync(r->pg) != 1)
        return pg_err(r, "PQpipelineSync", NULL, err, errsz);
    if (xid) {
        PGresult *res = PQgetResult(r->pg);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = pg_err(r, XID_SQL, res, err, errsz);
        PQclear(res);
        PQclear(PQgetResult(r->pg));
    }
    for (i = 0; i < n; i++) {
        PGresult *res = PQgetResult(r->pg);
        ExecStatusType t = PQresultStatus(res);
        if (t != PGRES_COMMAND_OK && !rc)
            rc = pg_err(r, stmt_sql(&s[i]), res, err, errsz);
        PQclear(res);
        if (t == PGRES_PIPELINE_SYNC) /* the server aborted the pipeline early */
            return rc ? rc : -1;
        res = PQgetResult(r->pg); /* NULL ends each query's results */
        PQclear(res);
    }
    {
        PGresult *res = PQgetResult(r->pg);
        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC && !rc)
            rc = pg_err(r, "pipeline sync", res, err, errsz);
        PQclear(res);
    }
    return rc;
}

const bench_raw bench_raw_pg = {"libpq", pgr_open, pgr_flight, pgr_exec, pgr_close};
