/* Raw libmariadb baselines on the same SQL txm sends (text protocol, integer printed into the
 * statement as txm's MySQL driver does).
 *  eager:   one mysql_real_query per statement (START TRANSACTION, SAVEPOINT, INSERT, RELEASE,
 *           COMMIT each wait for their own round trip).
 *  batched: CLIENT_MULTI_STATEMENTS; pending control statements and the next statement travel in
 *           one query packet ("START TRANSACTION;INSERT ..."), COMMIT in the next. */
#include "bench.h"
#include "internal.h" /* txm__url_parse: the same URL parser txm uses */

#include <mysql.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct raw_my {
    MYSQL *m;
    char buf[4096];
} raw_my;

static int my_err(raw_my *r, const char *what, char *err, size_t errsz)
{
    snprintf(err, errsz, "libmariadb %s: %s (%u)", what, mysql_error(r->m), mysql_errno(r->m));
    return -1;
}

static void myr_close(void *st)
{
    raw_my *r = st;
    if (!r)
        return;
    if (r->m)
        mysql_close(r->m);
    free(r);
}

/* Sends one query packet and drains every result of every statement in it. */
static int run_text(raw_my *r, const char *sql, size_t len, char *err, size_t errsz)
{
    int st;
    if (mysql_real_query(r->m, sql, (unsigned long)len) != 0)
        return my_err(r, sql, err, errsz);
    do {
        MYSQL_RES *res = mysql_store_result(r->m);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(r->m) != 0)
            return my_err(r, "store result", err, errsz);
        st = mysql_next_result(r->m);
    } while (st == 0);
    if (st > 0)
        return my_err(r, sql, err, errsz);
    return 0;
}

static int myr_exec(void *st, const char *sql, char *err, size_t errsz)
{
    return run_text(st, sql, strlen(sql), err, errsz);
}

static int myr_open(void **out, bench_engine *e, int batched, char *err, size_t errsz)
{
    raw_my *r = calloc(1, sizeof *r);
    txm_url *u = NULL;
    *out = NULL;
    if (!r) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    if (txm__url_parse(&u, e->url) != 0) {
        snprintf(err, errsz, "bad MySQL URL %s: %s", e->redacted, txm_error_last()->message);
        free(r);
        return -1;
    }
    r->m = mysql_init(NULL);
    if (!r->m || !mysql_real_connect(r->m, u->host[0] ? u->host : "127.0.0.1", u->user, u->password,
                                     u->path[0] ? u->path : NULL, (unsigned)u->port, NULL,
                                     batched ? CLIENT_MULTI_STATEMENTS : 0)) {
        if (r->m)
            my_err(r, "connect", err, errsz);
        else
            snprintf(err, errsz, "mysql_init failed");
        txm__url_free(u);
        myr_close(r);
        return -1;
    }
    txm__url_free(u);
    if (myr_exec(r, e->items_ddl, err, errsz) != 0) {
        myr_close(r);
        return -1;
    }
    if (!e->server_version[0])
        bench_strlcpy(e->server_version, mysql_get_server_info(r->m), sizeof e->server_version);
    *out = r;
    return 0;
}

static int myr_flight(void *st, const raw_stmt *s, size_t n, char *err, size_t errsz)
{
    raw_my *r = st;
    size_t i, len = 0;
    for (i = 0; i < n; i++) {
        int k;
        if (s[i].kind == RAW_INSERT)
            k = snprintf(r->buf + len, sizeof r->buf - len, "%sINSERT INTO txm_bench_items(v) VALUES (%" PRId64 ")",
                         i ? ";" : "", s[i].value);
        else
            k = snprintf(r->buf + len, sizeof r->buf - len, "%s%s", i ? ";" : "",
                         bench_ctl_sql(BENCH_MYSQL, s[i].kind, s[i].level));
        if (k < 0 || (size_t)k >= sizeof r->buf - len) {
            snprintf(err, errsz, "flight too long");
            return -1;
        }
        len += (size_t)k;
    }
    return run_text(r, r->buf, len, err, errsz);
}

const bench_raw bench_raw_mysql = {"libmariadb", myr_open, myr_flight, myr_exec, myr_close};
