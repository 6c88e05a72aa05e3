/* Raw sqlite3 baseline: every statement (control statements too) prepared once and kept across
 * iterations, as a careful hand-written program would do. A "flight" steps its statements in
 * order; there is no network, so batching changes nothing but the count. */
#include "bench.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct raw_sq {
    sqlite3 *db;
    sqlite3_stmt *ins, *begin, *commit, *rollback;
    sqlite3_stmt *sp[BENCH_MAX_LEVEL + 1], *rel[BENCH_MAX_LEVEL + 1];
} raw_sq;

static int sq_err(raw_sq *r, const char *what, char *err, size_t errsz)
{
    snprintf(err, errsz, "sqlite3 %s: %s (%d)", what, r->db ? sqlite3_errmsg(r->db) : "no handle",
             r->db ? sqlite3_extended_errcode(r->db) : 0);
    return -1;
}

static void sq_close(void *st)
{
    raw_sq *r = st;
    unsigned i;
    if (!r)
        return;
    sqlite3_finalize(r->ins);
    sqlite3_finalize(r->begin);
    sqlite3_finalize(r->commit);
    sqlite3_finalize(r->rollback);
    for (i = 0; i <= BENCH_MAX_LEVEL; i++) {
        sqlite3_finalize(r->sp[i]);
        sqlite3_finalize(r->rel[i]);
    }
    sqlite3_close(r->db);
    free(r);
}

static int sq_exec(void *st, const char *sql, char *err, size_t errsz)
{
    raw_sq *r = st;
    if (sqlite3_exec(r->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sq_err(r, sql, err, errsz);
    return 0;
}

static int sq_open(void **out, bench_engine *e, int batched, char *err, size_t errsz)
{
    raw_sq *r = calloc(1, sizeof *r);
    (void)batched;
    *out = NULL;
    err[0] = '\0';
    if (!r) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    if (sqlite3_open_v2(e->shared_db ? e->file_path : ":memory:", &r->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sq_err(r, "open", err, errsz);
        sq_close(r);
        return -1;
    }
    sqlite3_busy_timeout(r->db, 5000);
    if ((e->shared_db && sq_exec(r, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF", err, errsz)) ||
        sq_exec(r, e->items_ddl, err, errsz) ||
        sqlite3_prepare_v2(r->db, "INSERT INTO txm_bench_items(v) VALUES (?)", -1, &r->ins, NULL) != SQLITE_OK) {
        if (!*err)
            sq_err(r, "prepare", err, errsz);
        sq_close(r);
        return -1;
    }
    if (!e->server_version[0])
        snprintf(e->server_version, sizeof e->server_version, "SQLite %s", sqlite3_libversion());
    *out = r;
    return 0;
}

static sqlite3_stmt **slot(raw_sq *r, const raw_stmt *s)
{
    unsigned l = s->level > BENCH_MAX_LEVEL ? BENCH_MAX_LEVEL : s->level;
    switch (s->kind) {
    case RAW_BEGIN: return &r->begin;
    case RAW_COMMIT: return &r->commit;
    case RAW_ROLLBACK: return &r->rollback;
    case RAW_SAVEPOINT: return &r->sp[l];
    case RAW_RELEASE: return &r->rel[l];
    case RAW_INSERT: return &r->ins;
    }
    return &r->ins;
}

static int sq_flight(void *st, const raw_stmt *s, size_t n, char *err, size_t errsz)
{
    raw_sq *r = st;
    size_t i;
    for (i = 0; i < n; i++) {
        sqlite3_stmt **p = slot(r, &s[i]);
        int rc;
        if (!*p) { /* first use: prepare once (happens during warm-up) */
            const char *sql = bench_ctl_sql(BENCH_SQLITE, s[i].kind, s[i].level);
            if (sqlite3_prepare_v2(r->db, sql, -1, p, NULL) != SQLITE_OK)
                return sq_err(r, sql, err, errsz);
        }
        if (s[i].kind == RAW_INSERT)
            sqlite3_bind_int64(*p, 1, s[i].value);
        rc = sqlite3_step(*p);
        sqlite3_reset(*p);
        if (rc != SQLITE_DONE)
            return sq_err(r, s[i].kind == RAW_INSERT ? "INSERT" : bench_ctl_sql(BENCH_SQLITE, s[i].kind, s[i].level),
                          err, errsz);
    }
    return 0;
}

const bench_raw bench_raw_sqlite = {"sqlite3", sq_open, sq_flight, sq_exec, sq_close};
