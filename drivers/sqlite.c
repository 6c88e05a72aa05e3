/*
 * SQLite driver (sqlite3). See docs/driver-sqlite.md for the URL options and the error mapping.
 *
 * An embedded engine has no network flights: one run() is one "round trip", and control ops
 * (BEGIN, SAVEPOINT ...) cost no more for travelling in the same run as the statement
 * (TXM_CAP_PIPELINE).
 *
 * Write transactions start with BEGIN IMMEDIATE: a DEFERRED transaction that reads first and
 * writes later can get SQLITE_BUSY at its first write, when waiting could deadlock, without the
 * busy handler ever being asked. IMMEDIATE takes the write lock at BEGIN, where waiting is safe.
 * Read-only transactions use BEGIN DEFERRED plus PRAGMA query_only=1 for their duration.
 *
 * Prepared statements are cached per connection, keyed by SQL text (small LRU): on SQLite a
 * prepare costs about as much as a whole in-memory transaction.
 */
#include "internal.h"

#include <sqlite3.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if SQLITE_VERSION_NUMBER >= 3037000
#define sq_changes(db) ((int64_t)sqlite3_changes64(db))
#else
#define sq_changes(db) ((int64_t)sqlite3_changes(db))
#endif

#define SQ_DEFAULT_BUSY_MS 5000
#define SQ_DEFAULT_CACHE 32
#define SQ_MAX_CACHE 4096

extern TXM_INTERNAL const txm_driver txm__driver_sqlite;

/* Control statements get fixed slots: user statements never evict them. */
enum {
    CTL_BEGIN_IMMEDIATE,
    CTL_BEGIN_DEFERRED,
    CTL_COMMIT,
    CTL_ROLLBACK,
    CTL_QUERY_ONLY_GET,
    CTL_QUERY_ONLY_ON,
    CTL_QUERY_ONLY_OFF,
    CTL_COUNT
};
static const char *const ctl_sql[CTL_COUNT] = {
    "BEGIN IMMEDIATE", "BEGIN DEFERRED", "COMMIT", "ROLLBACK",
    "PRAGMA query_only", "PRAGMA query_only=1", "PRAGMA query_only=0",
};

/* Savepoint statements of the first levels are prepared once, like the control statements. */
#define SQ_SP_SLOTS 16
enum { SP_SAVEPOINT, SP_RELEASE, SP_ROLLBACK_TO, SP_KINDS };
static const char *const sp_verb[SP_KINDS] = {"SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"};

typedef struct sq_cached {
    char *sql; /* owned copy of the key */
    size_t len;
    sqlite3_stmt *stmt;
    uint64_t used; /* LRU tick of the last use */
    bool dml;      /* INSERT/UPDATE/DELETE/REPLACE (possibly behind WITH): affected rows are known */
    long busy_ms;  /* busy_timeout_pragma() of the text: computed once, like dml */
} sq_cached;

typedef struct sq_conn {
    txm_driver_conn base; /* must be first */
    sqlite3 *db;
    char *path;
    int busy_timeout_ms;
    /* Per-transaction timeouts (txm_tx_options). While tx_busy is set, busy_timeout_ms holds the
     * transaction's lock timeout and busy_saved_ms the connection's own, put back when the
     * transaction ends. stmt_timeout_ms bounds each statement of the transaction through the
     * progress handler (stmt_deadline_us: the running statement's deadline, 0 = none). */
    bool tx_busy;
    int busy_saved_ms;
    unsigned stmt_timeout_ms;
    uint64_t stmt_deadline_us;
    bool stmt_timed_out;
    /* Busy handler state, reset before each prepare/step. */
    uint64_t busy_start_us;
    bool busy_gave_up;
    /* Transaction tracking from the ops this driver executed. */
    bool in_tx;
    bool ro_tx;         /* the open transaction set query_only; restore it when it ends */
    int query_only_was; /* query_only before the read-only transaction */
    sqlite3_stmt *ctl[CTL_COUNT];
    sqlite3_stmt *sp[SP_KINDS][SQ_SP_SLOTS]; /* [kind][level - 1] */
    sq_cached *cache;
    size_t cache_cap;
    size_t cache_len;
    size_t cache_last; /* entry of the last hit: looked at first (a loop repeats its statements) */
    uint64_t tick;
    /* Scratch for rows: cells and column names. */
    txm_value *cells;
    const char **names;
    size_t scratch_cap;
} sq_conn;

static sq_conn *sq(txm_driver_conn *dc) { return (sq_conn *)dc; }

/* ---------------------------------------------------------------------------------------------
 * Busy handler: sleeps in small, growing steps up to busy_timeout and records whether it gave up.
 * SQLite returns SQLITE_BUSY *without* calling the handler when waiting could deadlock (a reader
 * upgrading to writer while another connection holds the write lock); busy_gave_up tells the
 * two cases apart.
 * ------------------------------------------------------------------------------------------- */
static int busy_handler(void *arg, int count)
{
    static const uint64_t steps_us[] = {100, 200, 500, 1000, 2000, 5000};
    sq_conn *c = arg;
    uint64_t now = txm__now_us(), limit = (uint64_t)c->busy_timeout_ms * 1000u, elapsed, step;
    if (count == 0)
        c->busy_start_us = now;
    elapsed = now - c->busy_start_us;
    if (elapsed >= limit) {
        c->busy_gave_up = true;
        return 0;
    }
    step = steps_us[(size_t)count < sizeof steps_us / sizeof steps_us[0] ? (size_t)count
                                                                          : sizeof steps_us / sizeof steps_us[0] - 1];
    if (step > limit - elapsed)
        step = limit - elapsed;
    txm__sleep_us(step);
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */
typedef enum sq_ctx { CTX_STATEMENT, CTX_CONTROL, CTX_COMMIT, CTX_OPEN } sq_ctx;

/* Copies [s, s+n) into dst (size > 0), NUL-terminated, truncated. */
static void copy_span(char *dst, size_t size, const char *s, size_t n)
{
    if (n >= size)
        n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* "UNIQUE constraint failed: t.a, t.b" / "NOT NULL constraint failed: t.a": table "t", column
 * "a" (the first one). SQLite's messages are not localized, and these are the only places the
 * engine names the table and column. "... failed: index 'name'" (unique expression index) gives
 * the index as the constraint name. */
static void parse_table_column(const char *msg, char *table, size_t tsize, char *column, size_t csize,
                               char *cname, size_t nsize)
{
    const char *p = strstr(msg, "constraint failed: "), *dot, *end;
    if (!p)
        return;
    p += strlen("constraint failed: ");
    if (strncmp(p, "index '", 7) == 0) {
        p += 7;
        end = strchr(p, '\'');
        if (end)
            copy_span(cname, nsize, p, (size_t)(end - p));
        return;
    }
    end = p + strcspn(p, ",");
    dot = memchr(p, '.', (size_t)(end - p));
    if (!dot)
        return;
    copy_span(table, tsize, p, (size_t)(dot - p));
    /* The column only when the key has exactly one, as on the other engines: the first of
     * "t.a, t.b" would read as if `a` alone were duplicated. */
    if (*end == ',')
        return;
    copy_span(column, csize, dot + 1, (size_t)(end - dot - 1));
}

/* "CHECK constraint failed: NAME": a name only when it looks like an identifier; an unnamed CHECK
 * reports its expression text instead, which is not a name. */
static void parse_check_name(const char *msg, char *cname, size_t nsize)
{
    const char *p = strstr(msg, "constraint failed: "), *q;
    if (!p)
        return;
    p += strlen("constraint failed: ");
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_'))
        return;
    for (q = p; *q; q++) {
        if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_' ||
              *q == '$'))
            return;
    }
    copy_span(cname, nsize, p, (size_t)(q - p));
}

/* Maps an extended result code to a TXM_E* category. */
static int classify(int ext, bool busy_gave_up, sq_ctx ctx)
{
    switch (ext) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
        return TXM_EUNIQUE;
    case SQLITE_CONSTRAINT_NOTNULL:
        return TXM_ENOT_NULL;
    case SQLITE_CONSTRAINT_CHECK:
        return TXM_ECHECK;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return TXM_EFOREIGN_KEY;
#ifdef SQLITE_CONSTRAINT_DATATYPE
    case SQLITE_CONSTRAINT_DATATYPE: /* STRICT table: value of the wrong type */
        return TXM_EDATA;
#endif
    case SQLITE_BUSY_SNAPSHOT:
        return TXM_ESERIALIZATION;
#ifdef SQLITE_BUSY_TIMEOUT
    case SQLITE_BUSY_TIMEOUT:
        return TXM_ELOCK_TIMEOUT;
#endif
    default:
        break;
    }
    switch (ext & 0xff) {
    case SQLITE_BUSY:
        return busy_gave_up ? TXM_ELOCK_TIMEOUT : TXM_EDEADLOCK;
    case SQLITE_LOCKED:
        return TXM_ELOCK_TIMEOUT;
    case SQLITE_INTERRUPT:
        return TXM_ECANCELED;
    case SQLITE_READONLY:
        return TXM_EREAD_ONLY;
    case SQLITE_IOERR:
        return ctx == CTX_COMMIT ? TXM_ECOMMIT_UNKNOWN : TXM_ECONNECTION;
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return TXM_ECONNECTION;
    case SQLITE_NOMEM:
        return TXM_ENOMEM;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
        return TXM_EDATA;
    case SQLITE_AUTH:
        return TXM_EAUTH;
    case SQLITE_ERROR:
        /* SQLite's class for syntax errors and undefined objects. On a control statement
         * ("no such savepoint", "cannot commit - no transaction is active") it means the
         * engine's transaction state is not what txm believed. */
        return ctx == CTX_CONTROL || ctx == CTX_COMMIT ? TXM_ESTATE : TXM_ESYNTAX;
    default:
        return TXM_ERROR;
    }
}

/* Reports the connection's current error (ext = extended code) and returns its category.
 * `what` names the operation for the message. Call right after the failing API call, before any
 * other call on db. */
static int report(sq_conn *c, int ext, sq_ctx ctx, const char *what)
{
    char msg[TXM_ERR_MSG_MAX], table[TXM_ERR_NAME_MAX] = "", column[TXM_ERR_NAME_MAX] = "",
                               cname[TXM_ERR_NAME_MAX] = "";
    txm_error_detail d;
    int code = classify(ext, c->busy_gave_up, ctx);

    txm__strlcpy(msg, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(ext), sizeof msg);
    memset(&d, 0, sizeof d);
    d.sqlstate = "";
    d.native_code = ext;
    switch (code) {
    case TXM_EUNIQUE:
    case TXM_ENOT_NULL:
        parse_table_column(msg, table, sizeof table, column, sizeof column, cname, sizeof cname);
        break;
    case TXM_ECHECK:
        parse_check_name(msg, cname, sizeof cname);
        break;
    default:
        break;
    }
    d.table_name = table;
    d.column_name = column;
    d.constraint_name = cname;
    /* A deadlock or a stale snapshot can never succeed later in the same transaction: end it now,
     * as server engines do with their deadlock victims, so the other connection stops waiting
     * and every txm level is poisoned (TX_LOST below). */
    if ((code == TXM_EDEADLOCK || code == TXM_ESERIALIZATION) && c->in_tx && !sqlite3_get_autocommit(c->db))
        (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    /* After any error SQLite may have rolled the whole transaction back by itself (ON CONFLICT
     * ROLLBACK, RAISE(ROLLBACK), an interrupted write, disk full, I/O error ...). */
    if (c->in_tx && c->db && sqlite3_get_autocommit(c->db))
        d.flags |= TXM_ERRF_TX_LOST;

    switch (code) {
    case TXM_ELOCK_TIMEOUT:
        /* SQLite's own text ("database is locked") says what happened; txm adds how long it
         * waited, without repeating the engine's words. */
        if ((ext & 0xff) == SQLITE_BUSY)
            return txm_driver_error(code, &d, "%s: %s; gave up after busy_timeout=%d ms", what, msg,
                                    c->busy_timeout_ms);
        break;
    case TXM_EDEADLOCK:
        return txm_driver_error(code, &d,
                                "%s: database is locked and waiting could deadlock (SQLite returned SQLITE_BUSY "
                                "without waiting)%s; retry the transaction",
                                what, d.flags & TXM_ERRF_TX_LOST ? "; the transaction was rolled back" : "");
    case TXM_ESERIALIZATION:
        return txm_driver_error(code, &d,
                                "%s: the database changed since this transaction's snapshot "
                                "(SQLITE_BUSY_SNAPSHOT)%s; retry the transaction",
                                what, d.flags & TXM_ERRF_TX_LOST ? "; the transaction was rolled back" : "");
    case TXM_ECOMMIT_UNKNOWN:
        return txm_driver_error(code, &d, "%s: I/O error during COMMIT, outcome unknown: %s", what, msg);
    case TXM_ECONNECTION:
        return txm_driver_error(code, &d, "%s: database '%s': %s", what, c->path ? c->path : "?", msg);
    default:
        break;
    }
    return txm_driver_error(code, &d, "%s: %s", what, msg);
}

/* ---------------------------------------------------------------------------------------------
 * Statement cache
 * ------------------------------------------------------------------------------------------- */
static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

/* Skips whitespace, comments and empty statements (";"). Returns the first other position. */
static const char *skip_blank(const char *p, const char *end)
{
    while (p < end) {
        if (is_space(*p) || *p == ';') {
            p++;
        } else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            while (p < end && *p != '\n')
                p++;
        } else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
            const char *q = p + 2;
            while (q < end && !(end - q >= 2 && q[0] == '*' && q[1] == '/'))
                q++;
            p = q < end ? q + 2 : end;
        } else {
            break;
        }
    }
    return p;
}

static bool keyword_at(const char *p, const char *end, const char *kw)
{
    size_t n = strlen(kw), i;
    if ((size_t)(end - p) < n)
        return false;
    for (i = 0; i < n; i++) {
        char ch = p[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch != kw[i])
            return false;
    }
    return (size_t)(end - p) == n || !((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= 'a' && p[n] <= 'z') ||
                                       (p[n] >= '0' && p[n] <= '9') || p[n] == '_');
}

/* Whether a statement that writes is DML, i.e. sqlite3_changes() will describe it. DDL and
 * PRAGMAs leave sqlite3_changes() at the value of the previous DML statement. */
static bool is_dml(sqlite3_stmt *st, const char *sql, size_t len)
{
    const char *p, *end = sql + len;
    if (sqlite3_stmt_readonly(st))
        return false;
    p = skip_blank(sql, end);
    while (p < end && *p == '(')
        p = skip_blank(p + 1, end);
    return keyword_at(p, end, "INSERT") || keyword_at(p, end, "UPDATE") || keyword_at(p, end, "DELETE") ||
           keyword_at(p, end, "REPLACE") || keyword_at(p, end, "WITH");
}

static void cache_free(sq_conn *c)
{
    size_t i;
    for (i = 0; i < c->cache_len; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        txm__free(c->cache[i].sql);
    }
    c->cache_len = 0;
}

/* Prepares sql[0..len) and checks that it is exactly one statement. On success *out is the
 * statement (not cached yet). */
static int prepare_one(sq_conn *c, const char *sql, size_t len, sqlite3_stmt **out)
{
    const char *tail = NULL, *rest;
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    if (len > INT_MAX)
        return txm_driver_error(TXM_EDATA, NULL, "prepare: SQL text of %zu bytes is too long for SQLite", len);
    c->busy_gave_up = false;
    rc = sqlite3_prepare_v3(c->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (rc != SQLITE_OK) {
        rc = report(c, sqlite3_extended_errcode(c->db), CTX_STATEMENT, "prepare");
        sqlite3_finalize(st);
        return rc;
    }
    if (!st)
        return txm_driver_error(TXM_EINVALID, NULL, "prepare: the SQL text contains no statement");
    rest = tail ? skip_blank(tail, sql + len) : sql + len;
    if (rest < sql + len) {
        sqlite3_finalize(st);
        return txm_driver_error(TXM_EINVALID, NULL,
                                "prepare: the SQL text contains more than one statement (the second starts at "
                                "byte %zu); txm runs exactly one statement per call: split it into separate calls",
                                (size_t)(rest - sql));
    }
    *out = st;
    return 0;
}

static long busy_timeout_pragma(const char *sql, size_t len);

/* Finds or prepares the statement for sql[0..len). *slot is its cache entry, or NULL when the
 * statement is not cached (cache=0): the caller then finalizes it. The key is the whole text. */
static int stmt_get(sq_conn *c, const char *sql, size_t len, sqlite3_stmt **out, sq_cached **slot)
{
    size_t i, victim = 0;
    sq_cached *e;
    sqlite3_stmt *st;
    char *copy;
    int rc;

    *out = NULL;
    *slot = NULL;
    e = c->cache_last < c->cache_len ? &c->cache[c->cache_last] : NULL;
    if (e && e->len == len && memcmp(e->sql, sql, len) == 0) {
        e->used = ++c->tick;
        *out = e->stmt;
        *slot = e;
        return 0;
    }
    for (i = 0; i < c->cache_len; i++) {
        e = &c->cache[i];
        if (e->len == len && memcmp(e->sql, sql, len) == 0) {
            e->used = ++c->tick;
            c->cache_last = i;
            *out = e->stmt;
            *slot = e;
            return 0;
        }
    }
    rc = prepare_one(c, sql, len, &st);
    if (rc)
        return rc;
    txm_driver_log(&c->base, TXM_LOG_DEBUG, "sqlite: prepared a statement (cache miss; %zu of %zu cached)",
                   c->cache_len, c->cache_cap);
    if (c->cache_cap == 0) {
        *out = st;
        return 0;
    }
    copy = txm__strndup(sql, len);
    if (!copy) {
        sqlite3_finalize(st);
        return txm_driver_error(TXM_ENOMEM, NULL, "out of memory caching a prepared statement");
    }
    if (c->cache_len < c->cache_cap) {
        victim = c->cache_len++;
    } else {
        for (i = 1; i < c->cache_len; i++) {
            if (c->cache[i].used < c->cache[victim].used)
                victim = i;
        }
        sqlite3_finalize(c->cache[victim].stmt);
        txm__free(c->cache[victim].sql);
    }
    e = &c->cache[victim];
    e->sql = copy;
    e->len = len;
    e->stmt = st;
    e->used = ++c->tick;
    e->dml = is_dml(st, sql, len);
    e->busy_ms = busy_timeout_pragma(sql, len);
    c->cache_last = victim;
    *out = st;
    *slot = e;
    return 0;
}

/* Steps a control statement to completion (no rows expected, PRAGMA query_only reads one). */
static int ctl_run(sq_conn *c, int which, sq_ctx ctx, const char *what, int *value_out)
{
    sqlite3_stmt *st = c->ctl[which];
    int rc;
    if (!st) {
        c->busy_gave_up = false;
        rc = sqlite3_prepare_v3(c->db, ctl_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK) {
            rc = report(c, sqlite3_extended_errcode(c->db), ctx, what);
            sqlite3_finalize(st);
            return rc;
        }
        c->ctl[which] = st;
    }
    c->busy_gave_up = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (value_out)
            *value_out = sqlite3_column_int(st, 0);
    }
    if (rc != SQLITE_DONE) {
        rc = report(c, rc, ctx, what);
        sqlite3_reset(st);
        return rc;
    }
    sqlite3_reset(st);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Transaction tracking
 * ------------------------------------------------------------------------------------------- */

/* Called after every op: when the engine has no transaction any more (COMMIT, ROLLBACK, or an
 * engine-side rollback) the read-only setting of the ended transaction is undone. */
/* Puts back the connection's busy timeout and drops the statement timeout of the transaction
 * that ended (or never began). */
static void timeouts_end(sq_conn *c)
{
    if (c->tx_busy) {
        c->busy_timeout_ms = c->busy_saved_ms;
        c->tx_busy = false;
    }
    c->stmt_timeout_ms = 0;
}

static __attribute__((noinline)) void tx_ended(sq_conn *c)
{
    c->in_tx = false;
    timeouts_end(c);
    if (c->ro_tx) {
        c->ro_tx = false;
        if (!c->query_only_was) {
            /* Keep the error of the op that ended the transaction, if any. */
            txm_err_rec saved;
            txm__err_copy(&saved, txm_error_last());
            if (ctl_run(c, CTL_QUERY_ONLY_OFF, CTX_CONTROL, "restore query_only", NULL) != 0)
                txm_driver_log(&c->base, TXM_LOG_ERROR, "sqlite: could not restore PRAGMA query_only=0: %s",
                               txm_error_last()->message);
            txm__err_copy(txm__err_tls(), &saved.pub);
        }
    }
}

/* After every op: the test inline, the rare end of a transaction out of line. */
static inline void sync_tx_end(sq_conn *c)
{
    if (c->in_tx && sqlite3_get_autocommit(c->db))
        tx_ended(c);
}

static int op_begin(sq_conn *c, const txm_op *op)
{
    bool ro = op->tx && (op->tx->flags & TXM_TX_READ_ONLY);
    int rc, was = 0;
    /* Every isolation level is satisfied: SQLite transactions are always SERIALIZABLE. */
    if (op->tx && ((int)op->tx->isolation < TXM_ISOLATION_DEFAULT || op->tx->isolation > TXM_ISOLATION_SERIALIZABLE))
        return txm_driver_error(TXM_EINVALID, NULL, "BEGIN: unknown isolation level %d", (int)op->tx->isolation);
    if (ro) {
        rc = ctl_run(c, CTL_QUERY_ONLY_GET, CTX_CONTROL, "BEGIN (read query_only)", &was);
        if (rc)
            return rc;
    }
    /* The transaction's lock timeout already bounds BEGIN IMMEDIATE's wait for the write lock. */
    if (op->tx && op->tx->lock_timeout_ms) {
        c->busy_saved_ms = c->busy_timeout_ms;
        c->busy_timeout_ms = (int)op->tx->lock_timeout_ms; /* <= INT_MAX: checked by the core */
        c->tx_busy = true;
    }
    c->stmt_timeout_ms = op->tx ? op->tx->statement_timeout_ms : 0;
    rc = ctl_run(c, ro ? CTL_BEGIN_DEFERRED : CTL_BEGIN_IMMEDIATE, CTX_CONTROL,
                 ro ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE", NULL);
    if (rc) {
        timeouts_end(c);
        return rc;
    }
    c->in_tx = true;
    if (ro) {
        rc = ctl_run(c, CTL_QUERY_ONLY_ON, CTX_CONTROL, "BEGIN (PRAGMA query_only=1)", NULL);
        if (rc) {
            txm_err_rec saved;
            txm__err_copy(&saved, txm_error_last());
            (void)ctl_run(c, CTL_ROLLBACK, CTX_CONTROL, "ROLLBACK", NULL);
            c->in_tx = !sqlite3_get_autocommit(c->db);
            txm__err_copy(txm__err_tls(), &saved.pub);
            return rc;
        }
        c->ro_tx = true;
        c->query_only_was = was;
    }
    return 0;
}

static const char *sp_sql(char *buf, size_t size, int kind, unsigned level)
{
    char name[32];
    txm_savepoint_name(name, sizeof name, level);
    snprintf(buf, size, "%s %s", sp_verb[kind], name);
    return buf;
}

static int op_savepoint(sq_conn *c, int kind, unsigned level)
{
    sqlite3_stmt *st = NULL, **slot = NULL;
    char sql[96];
    int rc;
    if (level == 0)
        return txm_driver_error(TXM_EINVALID, NULL, "%s: savepoint level 0 is invalid", sp_verb[kind]);
    if (level <= SQ_SP_SLOTS) {
        slot = &c->sp[kind][level - 1];
        st = *slot;
    }
    if (!st) {
        c->busy_gave_up = false;
        rc = sqlite3_prepare_v3(c->db, sp_sql(sql, sizeof sql, kind, level), -1,
                                slot ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL);
        if (rc != SQLITE_OK) {
            rc = report(c, sqlite3_extended_errcode(c->db), CTX_CONTROL, sql);
            sqlite3_finalize(st);
            return rc;
        }
        if (slot)
            *slot = st;
    }
    c->busy_gave_up = false;
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? 0 : report(c, rc, CTX_CONTROL, sp_sql(sql, sizeof sql, kind, level));
    sqlite3_reset(st);
    if (!slot)
        sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------------------------- */
/* *pointers: whether a value was bound by pointer (SQLITE_STATIC), to be cleared after the run. */
static int bind_params(sq_conn *c, sqlite3_stmt *st, const txm_value *params, size_t n, bool *pointers)
{
    static const char empty[1] = {0};
    size_t i;
    int rc = SQLITE_OK, expected = sqlite3_bind_parameter_count(st);
    if ((size_t)expected != n)
        return txm_driver_error(TXM_EINVALID, NULL, "statement has %d parameters but %zu values were given",
                                expected, n);
    for (i = 0; i < n && rc == SQLITE_OK; i++) {
        const txm_value *v = &params[i];
        int idx = (int)i + 1;
        switch (v->type) {
        case TXM_T_NULL:
            rc = sqlite3_bind_null(st, idx);
            break;
        case TXM_T_INT:
            rc = sqlite3_bind_int64(st, idx, v->u.i);
            break;
        case TXM_T_REAL:
            rc = sqlite3_bind_double(st, idx, v->u.d);
            break;
        case TXM_T_TEXT:
        case TXM_T_BLOB:
            *pointers = true;
            if (!v->u.buf.ptr && v->u.buf.len)
                return txm_driver_error(TXM_EINVALID, NULL, "parameter %zu: NULL pointer with length %zu", i + 1,
                                        v->u.buf.len);
            /* A NULL pointer would bind SQL NULL: an empty value must stay empty. SQLITE_STATIC
             * is safe because the bindings are cleared before run() returns. */
            if (v->type == TXM_T_TEXT)
                rc = sqlite3_bind_text64(st, idx, v->u.buf.ptr ? v->u.buf.ptr : empty, v->u.buf.len, SQLITE_STATIC,
                                         SQLITE_UTF8);
            else if (v->u.buf.len == 0)
                rc = sqlite3_bind_zeroblob(st, idx, 0);
            else
                rc = sqlite3_bind_blob64(st, idx, v->u.buf.ptr, v->u.buf.len, SQLITE_STATIC);
            break;
        default:
            return txm_driver_error(TXM_EINVALID, NULL, "parameter %zu has unknown type %d", i + 1, (int)v->type);
        }
        if (rc != SQLITE_OK) {
            char what[48];
            snprintf(what, sizeof what, "bind parameter %zu", i + 1);
            return report(c, sqlite3_extended_errcode(c->db), CTX_STATEMENT, what);
        }
    }
    return 0;
}

static int scratch_reserve(sq_conn *c, size_t n)
{
    txm_value *cells;
    const char **names;
    if (n <= c->scratch_cap)
        return 0;
    cells = txm__realloc(c->cells, n * sizeof *cells);
    if (!cells)
        return txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading a row of %zu columns", n);
    c->cells = cells;
    names = txm__realloc(c->names, n * sizeof *names);
    if (!names)
        return txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading a row of %zu columns", n);
    c->names = names;
    c->scratch_cap = n;
    return 0;
}

static int send_columns(sq_conn *c, sqlite3_stmt *st, txm_sink *sink, size_t ncols)
{
    size_t i;
    int rc = scratch_reserve(c, ncols ? ncols : 1);
    if (rc)
        return rc;
    for (i = 0; i < ncols; i++) {
        c->names[i] = sqlite3_column_name(st, (int)i);
        if (!c->names[i])
            return txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading column names");
    }
    return txm_sink_columns(sink, ncols, c->names);
}

static int send_row(sq_conn *c, sqlite3_stmt *st, txm_sink *sink, size_t ncols)
{
    static const char empty[1] = {0};
    size_t i;
    for (i = 0; i < ncols; i++) {
        txm_value *v = &c->cells[i];
        int col = (int)i;
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_INTEGER:
            *v = txm_int(sqlite3_column_int64(st, col));
            break;
        case SQLITE_FLOAT:
            *v = txm_real(sqlite3_column_double(st, col));
            break;
        case SQLITE_TEXT: {
            const unsigned char *p = sqlite3_column_text(st, col);
            if (!p)
                return txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading column %zu", i + 1);
            *v = txm_textn((const char *)p, (size_t)sqlite3_column_bytes(st, col));
            break;
        }
        case SQLITE_BLOB: {
            const void *p = sqlite3_column_blob(st, col);
            size_t n = (size_t)sqlite3_column_bytes(st, col);
            if (!p && n)
                return txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading column %zu", i + 1);
            *v = txm_blob(p ? p : empty, n); /* a zero-length blob has a NULL pointer */
            break;
        }
        default:
            *v = txm_null();
            break;
        }
    }
    return txm_sink_row(sink, c->cells);
}

/* `PRAGMA busy_timeout = N` (or `(N)`) makes SQLite install its own busy handler in place of the
 * driver's, which would turn every later lock timeout into a "deadlock" (BUSY without the driver's
 * handler having waited). Returns N for such a statement, else -1; the caller re-installs the
 * driver's handler with N, so the pragma means what it says and lock timeouts stay classified. */
static long busy_timeout_pragma(const char *sql, size_t len)
{
    const char *p = sql, *end = sql + len;
    long v = 0;
    bool digits = false;
    p = skip_blank(p, end);
    if (!keyword_at(p, end, "PRAGMA"))
        return -1;
    p = skip_blank(p + 6, end);
    if (!keyword_at(p, end, "BUSY_TIMEOUT"))
        return -1;
    p = skip_blank(p + 12, end);
    if (p >= end || (*p != '=' && *p != '('))
        return -1;
    p = skip_blank(p + 1, end);
    while (p < end && *p >= '0' && *p <= '9' && v < INT_MAX / 10) {
        v = v * 10 + (*p++ - '0');
        digits = true;
    }
    return digits ? v : -1;
}

/* Progress handler, installed only while a statement with a deadline runs: interrupts it once the
 * deadline has passed (SQLITE_INTERRUPT, as sqlite3_interrupt would). Costs a clock read every
 * SQ_PROGRESS_OPS virtual-machine instructions. */
#define SQ_PROGRESS_OPS 1000
static int progress_handler(void *arg)
{
    sq_conn *c = arg;
    if (!c->stmt_deadline_us || txm__now_us() < c->stmt_deadline_us)
        return 0;
    c->stmt_timed_out = true;
    return 1;
}

/* Arms the statement deadline of the transaction's statement_timeout_ms, if any. Rows are fetched
 * by stepping, so the deadline covers the whole statement, its rows included. */
static void stmt_deadline_arm(sq_conn *c)
{
    c->stmt_timed_out = false;
    c->stmt_deadline_us = c->stmt_timeout_ms && c->in_tx ? txm__now_us() + (uint64_t)c->stmt_timeout_ms * 1000u : 0;
    if (c->stmt_deadline_us)
        sqlite3_progress_handler(c->db, SQ_PROGRESS_OPS, progress_handler, c);
}

static void stmt_deadline_disarm(sq_conn *c)
{
    if (c->stmt_deadline_us)
        sqlite3_progress_handler(c->db, 0, NULL, NULL);
    c->stmt_deadline_us = 0;
}

/* A statement stopped by its deadline: TXM_ECANCELED like an interrupt, saying why. */
static int report_stmt_timeout(sq_conn *c, int ext)
{
    txm_error_detail d;
    memset(&d, 0, sizeof d);
    d.sqlstate = "";
    d.native_code = ext;
    /* An interrupted write inside a transaction makes SQLite roll the whole transaction back. */
    if (c->in_tx && sqlite3_get_autocommit(c->db))
        d.flags |= TXM_ERRF_TX_LOST;
    return txm_driver_error(TXM_ECANCELED, &d,
                            "statement: canceled after the transaction's statement_timeout_ms=%u (%s)%s",
                            c->stmt_timeout_ms, sqlite3_errmsg(c->db),
                            d.flags & TXM_ERRF_TX_LOST ? "; SQLite rolled the transaction back" : "");
}

static int op_statement(sq_conn *c, txm_op *op)
{
    sqlite3_stmt *st;
    sq_cached *slot;
    size_t len, ncols = 0;
    bool pointers = false;
    int rc;

    op->affected = -1;
    if (!op->sql)
        return txm_driver_error(TXM_EINVALID, NULL, "statement: SQL is NULL");
    len = op->sql_len ? op->sql_len : strlen(op->sql);
    rc = stmt_get(c, op->sql, len, &st, &slot);
    if (rc)
        return rc;
    rc = bind_params(c, st, op->params, op->nparams, &pointers);
    if (rc == 0) {
        int step;
        c->busy_gave_up = false;
        stmt_deadline_arm(c);
        step = sqlite3_step(st);
        /* Columns are read after the first step: a cached statement whose schema changed is
         * re-prepared inside sqlite3_step and may have a different column list. */
        if (op->sink && (step == SQLITE_ROW || step == SQLITE_DONE)) {
            ncols = (size_t)sqlite3_column_count(st);
            rc = send_columns(c, st, op->sink, ncols);
        }
        while (rc == 0 && step == SQLITE_ROW) {
            if (op->sink && (rc = send_row(c, st, op->sink, ncols)) != 0)
                break;
            step = sqlite3_step(st);
        }
        stmt_deadline_disarm(c);
        if (rc == 0 && step != SQLITE_DONE && (step & 0xff) == SQLITE_INTERRUPT && c->stmt_timed_out)
            rc = report_stmt_timeout(c, step);
        else if (rc == 0 && step != SQLITE_DONE)
            rc = report(c, step, CTX_STATEMENT, "statement");
        else if (rc == 0)
            op->affected = (slot ? slot->dml : is_dml(st, op->sql, len)) ? sq_changes(c->db) : -1;
        if (rc == 0) {
            long ms = slot ? slot->busy_ms : busy_timeout_pragma(op->sql, len);
            if (ms >= 0) {
                /* The connection's setting; a transaction's own lock timeout keeps its value
                 * until the transaction ends, then this one applies. */
                if (c->tx_busy)
                    c->busy_saved_ms = (int)ms;
                else
                    c->busy_timeout_ms = (int)ms;
                sqlite3_busy_handler(c->db, busy_handler, c);
            }
        }
    }
    /* Reset at once: a statement left mid-step would hold its read transaction open. Values bound
     * by pointer are cleared (SQLITE_STATIC must not outlive the caller's buffers); numbers hold
     * nothing, and the next run binds every parameter again. */
    sqlite3_reset(st);
    if (pointers)
        sqlite3_clear_bindings(st);
    if (!slot)
        sqlite3_finalize(st);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * run / status / cancel
 * ------------------------------------------------------------------------------------------- */
static int run_op(sq_conn *c, txm_op *op)
{
    switch (op->kind) {
    case TXM_OP_BEGIN:
        return op_begin(c, op);
    case TXM_OP_SAVEPOINT:
        return op_savepoint(c, SP_SAVEPOINT, op->level);
    case TXM_OP_RELEASE:
        return op_savepoint(c, SP_RELEASE, op->level);
    case TXM_OP_ROLLBACK_TO:
        return op_savepoint(c, SP_ROLLBACK_TO, op->level);
    case TXM_OP_COMMIT:
        return ctl_run(c, CTL_COMMIT, CTX_COMMIT, "COMMIT", NULL);
    case TXM_OP_ROLLBACK:
        /* The engine may already have rolled back by itself (reported as TX_LOST): the state the
         * caller asks for holds, so this is not an error. */
        if (sqlite3_get_autocommit(c->db))
            return 0;
        return ctl_run(c, CTL_ROLLBACK, CTX_CONTROL, "ROLLBACK", NULL);
    case TXM_OP_STATEMENT:
        return op_statement(c, op);
    case TXM_OP_LOCK:
    case TXM_OP_UNLOCK:
        return txm_driver_error(TXM_ENOTSUPPORTED, NULL,
                                "sqlite: advisory locks are not supported (no TXM_CAP_ADVISORY_LOCKS); a write "
                                "transaction (BEGIN IMMEDIATE) already excludes every other writer");
    default:
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite: unknown op kind %d", (int)op->kind);
    }
}

static int sq_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out)
{
    sq_conn *c = sq(dc);
    size_t i;
    int rc = 0;
    out->round_trips = 1;
    out->completed = 0;
    if (!c->db)
        return txm_driver_error(TXM_ECONNECTION, NULL, "sqlite: connection is not open");
    for (i = 0; i < n; i++) {
        rc = run_op(c, &ops[i]);
        sync_tx_end(c);
        if (rc)
            break;
    }
    out->completed = i;
    return rc;
}

static txm_tx_status sq_tx_status(txm_driver_conn *dc)
{
    sq_conn *c = sq(dc);
    if (!c->db)
        return TXM_TXS_UNKNOWN;
    return sqlite3_get_autocommit(c->db) ? TXM_TXS_IDLE : TXM_TXS_ACTIVE;
}

static int sq_cancel(txm_driver_conn *dc)
{
    sq_conn *c = sq(dc);
    if (!c->db)
        return txm_driver_error(TXM_ECONNECTION, NULL, "sqlite: connection is not open");
    sqlite3_interrupt(c->db);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * open / close
 * ------------------------------------------------------------------------------------------- */
static int parse_int_opt(const char *key, const char *val, long min, long max, long *out)
{
    char *end;
    long v;
    if (!*val)
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL option %s: empty value", key);
    v = strtol(val, &end, 10);
    if (*end || v < min || v > max)
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL option %s=%s: expected an integer in %ld..%ld", key,
                                val, min, max);
    *out = v;
    return 0;
}

static void sq_close(txm_driver_conn *dc)
{
    sq_conn *c = sq(dc);
    size_t i;
    if (c->cache) {
        cache_free(c);
        txm__free(c->cache);
        c->cache = NULL;
    }
    for (i = 0; i < CTL_COUNT; i++) {
        sqlite3_finalize(c->ctl[i]);
        c->ctl[i] = NULL;
    }
    for (i = 0; i < SP_KINDS * SQ_SP_SLOTS; i++) {
        sqlite3_finalize(c->sp[i / SQ_SP_SLOTS][i % SQ_SP_SLOTS]);
        c->sp[i / SQ_SP_SLOTS][i % SQ_SP_SLOTS] = NULL;
    }
    if (c->db) {
        sqlite3_close_v2(c->db);
        c->db = NULL;
    }
    txm__free(c->path);
    c->path = NULL;
    txm__free(c->cells);
    txm__free(c->names);
    c->cells = NULL;
    c->names = NULL;
    c->scratch_cap = 0;
}

/* The file name of a URL: sqlite:PATH, sqlite::memory:, sqlite://HOST/PATH (relative
 * HOST/PATH) or sqlite:///PATH (absolute /PATH). */
static int url_path(const txm_url *u, char **out)
{
    const char *path = u->path ? u->path : "", *host = u->host ? u->host : "";
    size_t n;
    *out = NULL;
    if ((u->user && *u->user) || (u->password && *u->password) || u->port)
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL takes no user, password or port: %s", u->redacted);
    if (!u->hierarchical) {
        if (!*path)
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "sqlite URL has no file path (use sqlite:PATH or sqlite::memory:)");
        *out = txm__strdup(path);
    } else {
        if (!*host && !*path)
            return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL has no file path: %s", u->redacted);
        n = strlen(host) + strlen(path) + 2;
        *out = txm__malloc(n);
        if (*out)
            snprintf(*out, n, "%s/%s", host, path);
        if (*out && !*path) /* sqlite://file.db */
            (*out)[strlen(host)] = '\0';
    }
    if (!*out)
        return txm_driver_error(TXM_ENOMEM, NULL, "out of memory opening a sqlite URL");
    return 0;
}

static int sq_open(txm_driver_conn *dc, const txm_url *u)
{
    static const char *const known[] = {"busy_timeout", "mode", "foreign_keys", "journal", "cache", NULL};
    sq_conn *c = sq(dc);
    const char *mode, *fk, *journal, *v;
    long busy = SQ_DEFAULT_BUSY_MS, cache = SQ_DEFAULT_CACHE;
    int flags, rc;
    size_t i, j;

    for (i = 0; i < u->nparams; i++) {
        for (j = 0; known[j] && strcmp(known[j], u->params[i].key) != 0; j++)
            ;
        if (!known[j])
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "sqlite URL: unknown option '%s' (known: busy_timeout, mode, foreign_keys, "
                                    "journal, cache)",
                                    u->params[i].key);
        for (j = 0; j < i; j++) {
            if (strcmp(u->params[j].key, u->params[i].key) == 0)
                return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL: option '%s' given twice", u->params[i].key);
        }
    }
    if ((v = txm_url_param_get(u, "busy_timeout")) && (rc = parse_int_opt("busy_timeout", v, 0, INT_MAX, &busy)))
        return rc;
    if ((v = txm_url_param_get(u, "cache")) && (rc = parse_int_opt("cache", v, 0, SQ_MAX_CACHE, &cache)))
        return rc;
    mode = txm_url_param_get(u, "mode");
    if (!mode || strcmp(mode, "rwc") == 0)
        flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    else if (strcmp(mode, "rw") == 0)
        flags = SQLITE_OPEN_READWRITE;
    else if (strcmp(mode, "ro") == 0)
        flags = SQLITE_OPEN_READONLY;
    else
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL option mode=%s: expected ro, rw or rwc", mode);
    fk = txm_url_param_get(u, "foreign_keys");
    if (fk && strcmp(fk, "0") != 0 && strcmp(fk, "1") != 0)
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL option foreign_keys=%s: expected 0 or 1", fk);
    journal = txm_url_param_get(u, "journal");
    if (journal && strcmp(journal, "wal") != 0 && strcmp(journal, "delete") != 0)
        return txm_driver_error(TXM_EINVALID, NULL, "sqlite URL option journal=%s: expected wal or delete", journal);

    if ((rc = url_path(u, &c->path)) != 0)
        return rc;
    c->busy_timeout_ms = (int)busy;
    c->cache_cap = (size_t)cache;
    if (c->cache_cap) {
        c->cache = txm__calloc(c->cache_cap, sizeof *c->cache);
        if (!c->cache)
            return txm_driver_error(TXM_ENOMEM, NULL, "out of memory allocating the statement cache");
    }

    /* NOMUTEX: a txm_conn is used by one thread at a time; sqlite3_interrupt (txm_cancel) is
     * safe from another thread regardless. URI filenames stay off: a path is a path. */
    flags |= SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_EXRESCODE
    flags |= SQLITE_OPEN_EXRESCODE;
#endif
    rc = sqlite3_open_v2(c->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int ext = c->db ? sqlite3_extended_errcode(c->db) : rc;
        if ((ext & 0xff) == SQLITE_CANTOPEN)
            rc = txm_driver_error(TXM_ECONNECTION, &(txm_error_detail){.sqlstate = "", .native_code = ext},
                                  "sqlite: cannot open database '%s' (mode=%s): %s", c->path, mode ? mode : "rwc",
                                  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(ext));
        else
            rc = report(c, ext, CTX_OPEN, "open");
        return rc;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_handler(c->db, busy_handler, c);

    /* Touch the file now, so that a file that is not a database fails at open, not at the first
     * statement. */
    {
        sqlite3_stmt *st = NULL;
        c->busy_gave_up = false;
        rc = sqlite3_prepare_v2(c->db, "PRAGMA schema_version", -1, &st, NULL);
        if (rc == SQLITE_OK)
            while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                ;
        if (rc != SQLITE_OK && rc != SQLITE_DONE) {
            rc = report(c, sqlite3_extended_errcode(c->db), CTX_OPEN, "open");
            sqlite3_finalize(st);
            return rc;
        }
        sqlite3_finalize(st);
    }
    if (!fk || strcmp(fk, "1") == 0) {
        if ((rc = sqlite3_exec(c->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL)) != SQLITE_OK)
            return report(c, sqlite3_extended_errcode(c->db), CTX_OPEN, "open (PRAGMA foreign_keys=ON)");
    }
    if (journal) {
        sqlite3_stmt *st = NULL;
        char got[32] = "";
        c->busy_gave_up = false;
        rc = sqlite3_prepare_v2(c->db, strcmp(journal, "wal") == 0 ? "PRAGMA journal_mode=WAL"
                                                                   : "PRAGMA journal_mode=DELETE",
                                -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            txm__strlcpy(got, t ? (const char *)t : "", sizeof got);
            rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK) {
            rc = report(c, sqlite3_extended_errcode(c->db), CTX_OPEN, "open (PRAGMA journal_mode)");
            sqlite3_finalize(st);
            return rc;
        }
        sqlite3_finalize(st);
        /* SQLite answers with the mode in effect; it keeps "memory" for :memory: databases. */
        if (strcasecmp(got, journal) != 0)
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "sqlite URL option journal=%s: SQLite kept journal mode '%s' for '%s'", journal,
                                    got, c->path);
    }
    return 0;
}

static const char *const sq_schemes[] = {"sqlite", NULL};

TXM_INTERNAL const txm_driver txm__driver_sqlite = {
    .version = TXM_DRIVER_VERSION,
    .name = "sqlite",
    .schemes = sq_schemes,
    .caps = TXM_CAP_PIPELINE | TXM_CAP_READ_ONLY_TX | TXM_CAP_CANCEL | TXM_CAP_TX_TIMEOUTS,
    .placeholders = TXM_PH_QMARK,
    .dialect = TXM_DIALECT_BACKTICKS | TXM_DIALECT_BRACKETS,
    .conn_size = sizeof(sq_conn),
    .open = sq_open,
    .close = sq_close,
    .run = sq_run,
    .tx_status = sq_tx_status,
    .cancel = sq_cancel,
    .reconnect = NULL,
    .resolve_outcome = NULL,
};
