/* The libzdb subject of the overhead group: what a libzdb 3.1 user writes for the same
 * transaction. One connection from a ConnectionPool of one, Connection_beginTransaction,
 * a PreparedStatement INSERT prepared once and executed with PreparedStatement_setLLong /
 * PreparedStatement_execute, Connection_commit; nested levels as hand-written
 * Connection_execute("SAVEPOINT txm_sp_%u") / ("RELEASE SAVEPOINT txm_sp_%u"), every statement
 * sent when the program reaches it (libzdb has no batching). Every libzdb call runs inside
 * TRY/ELSE: an SQLException (or any other) marks the subject failed with its message, the
 * transaction is rolled back and the prepared statement re-created on the next use.
 *
 * libzdb's URL form differs from txm's (docs/bench.md, "Subject libzdb"): the URL is rebuilt
 * from txm's parsed one, with user and password as percent-encoded query parameters; it is never
 * printed, and every message is scrubbed of the password with txm's own scrubber. */
#include "bench.h"
#include "internal.h" /* txm__url_parse, txm__scrub */

#include <zdb.h>

#if BENCH_HAVE_SQLITE3
#include <sqlite3.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_zdb {
    txm_url *txu;            /* the bench URL, parsed: the secrets to scrub */
    URL_T url;               /* libzdb's URL (contains the password) */
    ConnectionPool_T pool;
    Connection_T c;
    PreparedStatement_T ins; /* NULL until first use, and after a rollback freed it */
    const char *step;        /* the libzdb call in progress, for messages */
    uint64_t calls;          /* statements sent: one round trip each on a server */
};

static const char INSERT_SQL[] = "INSERT INTO txm_bench_items(v) VALUES (?)";

/* "libzdb <step>: <message>" with every spelling of the password replaced by ***. */
static int zdb_fail(const bench_zdb *z, const char *step, const char *msg, char *err, size_t errsz)
{
    char raw[1100];
    size_t k;
    snprintf(raw, sizeof raw, "libzdb %s: %s", step, msg && *msg ? msg : "(no message)");
    for (k = strlen(raw); k > 0 && (raw[k - 1] == '\n' || raw[k - 1] == ' '); k--)
        raw[k - 1] = '\0'; /* server messages end with a newline; inner ones become spaces */
    for (k = 0; raw[k]; k++)
        if (raw[k] == '\n' || raw[k] == '\r')
            raw[k] = ' ';
    txm__scrub(z->txu, err, errsz, raw, false);
    return -1;
}

/* Appends s percent-encoded (everything but unreserved characters, and '/' if keep_slash) to
 * out[*n..size). libzdb decodes user, password, path and parameter values. */
static int put_enc_x(char *out, size_t size, size_t *n, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                    ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/');
        if (*n + (plain ? 1 : 3) >= size)
            return -1;
        if (plain)
            out[(*n)++] = (char)ch;
        else {
            out[(*n)++] = '%';
            out[(*n)++] = hex[ch >> 4];
            out[(*n)++] = hex[ch & 15];
        }
    }
    out[*n] = '\0';
    return 0;
}

static int put_enc(char *out, size_t size, size_t *n, const char *s) { return put_enc_x(out, size, n, s, 0); }

static int put_raw(char *out, size_t size, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (*n + len >= size)
        return -1;
    memcpy(out + *n, s, len + 1);
    *n += len;
    return 0;
}

/* libzdb's URL for e, from txm's parsed URL u. Returns 0, 1 (libzdb cannot reach this database:
 * why in err) or -1 (too long). */
static int zdb_url(const bench_engine *e, const txm_url *u, char *out, size_t size, char *err, size_t errsz)
{
    size_t n = 0;
    char port[16];
    const char *ssl;
    int rc = 0;
    if (e->kind == BENCH_SQLITE) {
        if (!e->shared_db) {
            /* libzdb 3.1 parses a path only after "//" and keeps its leading '/', then hands it to
             * sqlite3_open_v2 as is (no SQLITE_OPEN_URI): ":memory:" and "file::memory:" are out
             * of reach, and a :memory: database is private to its connection anyway. */
            snprintf(err, errsz, "libzdb 3.1 cannot open an in-memory SQLite database (its URL path always "
                                 "starts with '/' and is opened as a file name)");
            return 1;
        }
        /* Same settings as the raw baselines: every URL parameter becomes a PRAGMA. */
        return put_raw(out, size, &n, "sqlite://") || put_enc_x(out, size, &n, e->file_path, 1) ||
                       put_raw(out, size, &n, "?journal_mode=wal&synchronous=off")
                   ? -1
                   : 0;
    }
    snprintf(port, sizeof port, "%d", u->port > 0 ? u->port : e->kind == BENCH_PG ? 5432 : 3306);
    rc |= put_raw(out, size, &n, e->kind == BENCH_PG ? "postgresql://" : "mysql://");
    rc |= put_raw(out, size, &n, u->host[0] ? u->host : "localhost");
    rc |= put_raw(out, size, &n, ":");
    rc |= put_raw(out, size, &n, port);
    rc |= put_raw(out, size, &n, "/");
    rc |= put_enc(out, size, &n, u->path);
    rc |= put_raw(out, size, &n, "?user=");
    rc |= put_enc(out, size, &n, u->user);
    rc |= put_raw(out, size, &n, "&password=");
    rc |= put_enc(out, size, &n, u->password);
    ssl = txm_url_param_get(u, "sslmode");
    if (e->kind == BENCH_PG && ssl && (!strcmp(ssl, "require") || !strncmp(ssl, "verify", 6)))
        rc |= put_raw(out, size, &n, "&use-ssl=true");
    return rc ? -1 : 0;
}

static void zdb_free(bench_zdb *z)
{
    if (!z)
        return;
    if (z->c) {
        TRY
            Connection_close(z->c); /* back to the pool: rolls back, frees the prepared statement */
        ELSE
            ; /* closing: nothing to report */
        END_TRY;
    }
    if (z->pool)
        ConnectionPool_free(&z->pool); /* stops it: closes the connection */
    if (z->url)
        URL_free(&z->url);
    txm__url_free(z->txu);
    free(z);
}

void bench_zdb_close(bench_zdb *z) { zdb_free(z); }

static void zdb_connect(bench_zdb *z, const bench_engine *e)
{
    z->step = "ConnectionPool_start";
    z->pool = ConnectionPool_new(z->url);
    ConnectionPool_setInitialConnections(z->pool, 1);
    ConnectionPool_setMaxConnections(z->pool, 1);
    ConnectionPool_start(z->pool);
#if BENCH_HAVE_SQLITE3
    /* libzdb's SQLite backend turns process-wide shared-cache mode on when it connects; the txm
     * and raw connections opened later (other groups) must keep SQLite's default. */
    if (e->kind == BENCH_SQLITE)
        sqlite3_enable_shared_cache(0);
#endif
    z->step = "ConnectionPool_getConnection";
    z->c = ConnectionPool_getConnection(z->pool);
    if (!z->c)
        THROW(SQLException, "%s", "no connection (the pool could not open one)");
    z->step = "Connection_execute (setup)";
    if (e->kind == BENCH_PG)
        Connection_execute(z->c, "SET client_min_messages = warning"); /* no "already exists" notice */
    Connection_execute(z->c, "%s", e->items_ddl);
}

int bench_zdb_open(bench_zdb **out, bench_engine *e, char *err, size_t errsz)
{
    bench_zdb *z = calloc(1, sizeof *z);
    char url[2048];
    volatile int rc = 0;
    *out = NULL;
    if (!z) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    if (txm__url_parse(&z->txu, e->url) != 0) {
        snprintf(err, errsz, "bad URL %s: %s", e->redacted, txm_error_last()->message);
        zdb_free(z);
        return -1;
    }
    if ((rc = zdb_url(e, z->txu, url, sizeof url, err, errsz)) != 0) {
        if (rc < 0)
            snprintf(err, errsz, "libzdb URL for %s too long", e->redacted);
        zdb_free(z);
        return rc;
    }
    if (!Connection_isSupported(url)) {
        snprintf(err, errsz, "this libzdb was built without %s support", e->kind == BENCH_PG      ? "PostgreSQL"
                                                                          : e->kind == BENCH_MYSQL ? "MySQL"
                                                                                                   : "SQLite");
        zdb_free(z);
        return 1;
    }
    z->url = URL_new(url);
    memset(url, 0, sizeof url); /* the password lives on only inside libzdb */
    if (!z->url) {
        snprintf(err, errsz, "libzdb cannot parse the URL built for %s", e->redacted);
        zdb_free(z);
        return -1;
    }
    TRY
        zdb_connect(z, e);
    ELSE
        rc = zdb_fail(z, z->step, Exception_frame.message, err, errsz);
    END_TRY;
    if (rc != 0) {
        zdb_free(z);
        return -1;
    }
    *out = z;
    return 0;
}

/* One transaction of `prog` (see overhead.c); throws on the first failure. */
static void zdb_prog(bench_zdb *z, const char *prog, long long v)
{
    unsigned depth = 0;
    const char *p;
    for (p = prog; *p; p++) {
        switch (*p) {
        case 'B':
            z->step = "Connection_beginTransaction";
            Connection_beginTransaction(z->c);
            break;
        case '(':
            z->step = "Connection_execute SAVEPOINT";
            Connection_execute(z->c, "SAVEPOINT txm_sp_%u", ++depth);
            break;
        case 'I':
            if (!z->ins) {
                z->step = "Connection_prepareStatement INSERT";
                z->ins = Connection_prepareStatement(z->c, INSERT_SQL);
            }
            z->step = "PreparedStatement_execute INSERT";
            PreparedStatement_setLLong(z->ins, 1, v);
            PreparedStatement_execute(z->ins);
            break;
        case ')':
            z->step = "Connection_execute RELEASE SAVEPOINT";
            Connection_execute(z->c, "RELEASE SAVEPOINT txm_sp_%u", depth--);
            break;
        case 'C':
            z->step = "Connection_commit";
            Connection_commit(z->c);
            break;
        default:
            continue;
        }
        z->calls++;
    }
}

/* After a failure: roll back (best effort) and drop the prepared statement, which
 * Connection_rollback may have freed already (Connection_clear). */
static void zdb_recover(bench_zdb *z)
{
    TRY
        Connection_rollback(z->c);
    ELSE
        ; /* the failure already being reported is the one that matters */
    END_TRY;
    Connection_clear(z->c);
    z->ins = NULL;
}

int bench_zdb_iter(bench_zdb *z, const char *prog, uint64_t i, char *err, size_t errsz)
{
    volatile int rc = 0;
    TRY
        zdb_prog(z, prog, (long long)i);
    ELSE
        rc = zdb_fail(z, z->step, Exception_frame.message, err, errsz);
    END_TRY;
    if (rc != 0 && !Connection_ping(z->c)) /* libzdb's PostgreSQL backend says only "?" then */
        bench_strlcpy(err + strlen(err), " (the connection is lost)", errsz - strlen(err));
    if (rc != 0)
        zdb_recover(z);
    return rc;
}

int bench_zdb_exec(bench_zdb *z, const char *sql, char *err, size_t errsz)
{
    volatile int rc = 0;
    TRY
        Connection_execute(z->c, "%s", sql);
    ELSE
        rc = zdb_fail(z, "Connection_execute", Exception_frame.message, err, errsz);
    END_TRY;
    return rc;
}

uint64_t bench_zdb_calls(const bench_zdb *z) { return z->calls; }

const char *bench_zdb_version(void) { return ConnectionPool_version(); }
