/* Connections: open/close, statements, locks, stats, logging. The transaction state machine is in
 * tx.c; this file turns API calls into application ops and hands them to it. */
#include "internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The driver's connection state lives in the same allocation, right after txm_conn, so a driver
 * callback that only has its txm_driver_conn can reach the connection (for logging). */
#define DC_OFFSET ((sizeof(txm_conn) + 15u) & ~(size_t)15u)

static txm_conn *conn_of(txm_driver_conn *dc) { return (txm_conn *)(void *)((char *)dc - DC_OFFSET); }

/* Size of a version 1 txm_open_options: a caller built against that header has no room for
 * the fields version 2 added. */
#define OPEN_OPTIONS_V1_SIZE offsetof(txm_open_options, autocommit_retries)

int txm_open_options_init(txm_open_options *opts, unsigned version)
{
    static const txm_open_options def = TXM_OPEN_OPTIONS_INIT;
    if (!opts)
        return txm__err(TXM_EINVALID, "txm_open_options_init: options are NULL");
    if (version != 1 && version != TXM_OPEN_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_open_options_init: unknown version %u (this txm knows 1 and %u)",
                        version, (unsigned)TXM_OPEN_OPTIONS_VERSION);
    memcpy(opts, &def, version == 1 ? OPEN_OPTIONS_V1_SIZE : sizeof *opts);
    opts->version = version;
    return 0;
}

/* Copies the caller's options (any known version) into a full current struct. */
static int copy_open_options(txm_open_options *dst, const txm_open_options *src)
{
    static const txm_open_options def = TXM_OPEN_OPTIONS_INIT;
    *dst = def;
    if (!src)
        return 0;
    if (src->version != 1 && src->version != TXM_OPEN_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_open: open options have unknown version %u (this txm knows 1 and %u)",
                        src->version, (unsigned)TXM_OPEN_OPTIONS_VERSION);
    memcpy(dst, src, src->version == 1 ? OPEN_OPTIONS_V1_SIZE : sizeof *dst);
    if (dst->autocommit_retries > TXM_AUTOCOMMIT_RETRIES_MAX)
        return txm__err(TXM_EINVALID, "txm_open: autocommit_retries is %u; at most %u", dst->autocommit_retries,
                        (unsigned)TXM_AUTOCOMMIT_RETRIES_MAX);
    return 0;
}

/* Every log line passes through the connection's secret scrubber before the callback sees it. */
static void vlog(txm_conn *c, txm_log_level level, const char *fmt, va_list ap)
{
    char tmp[2048], buf[1024];
    int w;
    if (!c || !c->opts.log || level > c->opts.log_level)
        return;
    w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    txm__scrub(c->url, buf, sizeof buf, w < 0 ? "" : tmp, w < 0 || (size_t)w >= sizeof tmp);
    c->opts.log(level, buf, c->opts.log_payload);
}

void txm__log(txm_conn *c, txm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(c, level, fmt, ap);
    va_end(ap);
}

void txm_driver_log(txm_driver_conn *dc, txm_log_level level, const char *fmt, ...)
{
    va_list ap;
    if (!dc)
        return;
    va_start(ap, fmt);
    vlog(conn_of(dc), level, fmt, ap);
    va_end(ap);
}

static void list_drivers(char *buf, size_t size)
{
    static const char *const known[] = {"sqlite", "postgresql", "mysql"};
    size_t i, off = 0;
    buf[0] = '\0';
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (txm_driver_find(known[i])) {
            int n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "", known[i]);
            if (n < 0 || (size_t)n >= size - off)
                break;
            off += (size_t)n;
        }
    }
    if (!off)
        txm__strlcpy(buf, "none", size);
}

int txm_open(txm_conn **out, const char *url, const txm_open_options *opts)
{
    char scheme[32];
    const txm_driver *drv;
    const txm_url *scope;
    txm_url *u = NULL;
    txm_open_options o;
    int url_retries = -1;
    txm_conn *c;
    int rc;

    if (out)
        *out = NULL;
    if (!out)
        return txm__err(TXM_EINVALID, "txm_open: out is NULL");
    if (!url)
        return txm__err(TXM_EINVALID, "txm_open: url is NULL");
    if ((rc = copy_open_options(&o, opts)) != 0)
        return rc;
    rc = txm__url_scheme(url, scheme, sizeof scheme);
    if (rc)
        return rc; /* the message says what is wrong with the scheme */
    drv = txm_driver_find(scheme);
    if (!drv) {
        char names[128];
        list_drivers(names, sizeof names);
        return txm__err(TXM_ENOTFOUND, "txm_open: no driver for URL scheme '%s' (built-in drivers: %s)", scheme, names);
    }
    rc = txm__url_parse_core(&u, url, &url_retries);
    if (rc)
        return rc;
    if (url_retries >= 0)
        o.autocommit_retries = (unsigned)url_retries; /* the URL (deployment config) wins */
    c = txm__calloc(1, DC_OFFSET + drv->conn_size);
    if (!c) {
        txm__url_free(u);
        return txm__err(TXM_ENOMEM, "txm_open: out of memory");
    }
    c->drv = drv;
    c->dc = (txm_driver_conn *)(void *)((char *)c + DC_OFFSET);
    c->dc->driver = drv;
    c->url = u;
    c->opts = o;
    txm__hooks_init(&c->captured);
    txm__hooks_init(&c->hook_queue);
    txm__err_init(&c->hook_err);
    scope = txm__scrub_scope(u);
    rc = drv->open(c->dc, u);
    if (rc) {
        txm_err_rec saved;
        txm__err_copy(&saved, txm_error_last());
        drv->close(c->dc);
        txm__scrub_scope(scope);
        txm__url_free(u);
        txm__free(c);
        if (saved.pub.code != rc || saved.message[0] == '\0')
            return txm__err(rc, "txm_open: the %s driver could not connect: %s", drv->name, txm_strerror(rc));
        txm__err_copy(txm__err_tls(), &saved.pub);
        return rc;
    }
    txm__scrub_scope(scope);
    *out = c;
    return 0;
}

/* ---- re-entry and closing ------------------------------------------------------------------ */

int txm__enter_closing(const char *who)
{
    return txm__err(TXM_EMISUSE,
                    "%s: the connection is closing (txm_close was called on it from a hook, body or callback "
                    "of a txm call still running on it); no further call on it is possible",
                    who);
}

static void close_now(txm_conn *c)
{
    const txm_url *scope;
    size_t i;
    c->closing = true; /* hooks run by the rollback below cannot use the connection */
    c->busy++;
    txm__tx_close_all(c); /* its driver calls set the scope themselves; hooks run outside it */
    txm__hooks_discard(&c->hook_queue);
    scope = txm__scrub_scope(c->url);
    c->drv->close(c->dc);
    txm__scrub_scope(scope);
    for (i = 0; i < c->levels_cap; i++)
        txm__free(c->levels[i]);
    txm__free(c->levels);
    txm__hooks_discard(&c->captured);
    txm__free(c->ops);
    txm__sql_cache_free(&c->sql_cache);
    txm__url_free(c->url);
    txm__free(c);
}

void txm_driver_late_column(txm_driver_conn *dc, const char *schema, const char *table, const char *constraint,
                            const char *column)
{
    txm_conn *c;
    txm_late_column *l;
    if (!dc || !schema || !table || !constraint || !column || !constraint[0] || !column[0])
        return;
    c = conn_of(dc);
    if (c->nlate == TXM_LATE_MAX) {
        memmove(c->late, c->late + 1, (TXM_LATE_MAX - 1) * sizeof c->late[0]); /* the oldest goes */
        c->nlate--;
    }
    l = &c->late[c->nlate++];
    /* Scrubbed as txm_driver_error scrubs the record's names, so that equal names compare equal. */
    txm__scrub(c->url, l->schema, sizeof l->schema, schema, false);
    txm__scrub(c->url, l->table, sizeof l->table, table, false);
    txm__scrub(c->url, l->constraint, sizeof l->constraint, constraint, false);
    txm__scrub(c->url, l->column, sizeof l->column, column, false);
}

/* Writes a late column into r if r is the constraint error it belongs to (and still lacks one). */
static void fill_late(const txm_conn *c, txm_err_rec *r)
{
    size_t i;
    if (!txm_err_is_constraint(r->pub.code) || r->column_name[0])
        return;
    for (i = 0; i < c->nlate; i++) {
        const txm_late_column *l = &c->late[i];
        if (strcmp(l->schema, r->schema_name) == 0 && strcmp(l->table, r->table_name) == 0 &&
            strcmp(l->constraint, r->constraint_name) == 0) {
            txm__strlcpy(r->column_name, l->column, sizeof r->column_name);
            return;
        }
    }
}

/* At the end of every call: the thread's record and its cause get the columns learned during it
 * (the record may have been saved and restored around the run that learned them). */
static void apply_late(txm_conn *c)
{
    txm_err_rec *r, *cause;
    if (!c->nlate)
        return;
    r = txm__err_tls();
    cause = txm__err_tls_cause();
    fill_late(c, r);
    if (r->pub.cause == &cause->pub)
        fill_late(c, cause);
    if (c->busy == 0)
        c->nlate = 0;
}

/* txm__leave with late columns to apply or a close to carry out; busy is already decremented. */
int txm__leave_slow(txm_conn *c, int rc)
{
    apply_late(c);
    if (c->busy == 0 && c->closing)
        txm__keeping_error(c, close_now); /* the call's result and error stand */
    return rc;
}

void txm_close(txm_conn *c)
{
    if (!c || c->closing)
        return; /* a second request (e.g. from a hook that txm_close itself runs) changes nothing */
    if (c->busy) {
        /* Called from a hook, body or callback of a call running on c: freeing c now would pull the
         * connection from under that call. Refuse every further call and close when it returns. */
        c->closing = true;
        txm__log(c, TXM_LOG_INFO, "txm_close called while a txm call is running on the connection: it closes "
                                  "when that call returns");
        return;
    }
    close_now(c);
}

const char *txm_driver_name(const txm_conn *c) { return c ? c->drv->name : ""; }
unsigned txm_capabilities(const txm_conn *c) { return c ? c->drv->caps : 0; }

void txm_stats_get(const txm_conn *c, txm_stats *out)
{
    if (!out)
        return;
    if (!c) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = c->stats;
}

void txm_stats_reset(txm_conn *c)
{
    if (c)
        memset(&c->stats, 0, sizeof c->stats);
}

/* Validates a statement and builds its op. *ref keeps op->sql alive until txm__sql_unref (a pinned
 * cache entry or a heap rewrite); it holds nothing after a failure. */
int txm__prepare_stmt(txm_conn *c, const char *who, const char *sql, const txm_value *params, size_t n,
                        txm_op *op, txm_sql_ref *ref)
{
    txm_sql_analysis a;
    size_t i;
    int rc;

    ref->pin = NULL;
    ref->heap = NULL;
    if (!c)
        return txm__err(TXM_EINVALID, "%s: connection is NULL", who);
    if (!sql)
        return txm__err(TXM_EINVALID, "%s: sql is NULL", who);
    if (n > 0 && !params)
        return txm__err(TXM_EINVALID, "%s: %zu parameters announced but params is NULL", who, n);
    for (i = 0; i < n; i++) {
        const txm_value *v = &params[i];
        if (v->type < TXM_T_NULL || v->type > TXM_T_BLOB)
            return txm__err(TXM_EINVALID, "%s: parameter %zu has an unknown type %d", who, i + 1, (int)v->type);
        if ((v->type == TXM_T_TEXT || v->type == TXM_T_BLOB) && !v->u.buf.ptr && v->u.buf.len)
            return txm__err(TXM_EINVALID, "%s: parameter %zu has length %zu but a NULL pointer", who, i + 1,
                            v->u.buf.len);
    }
    rc = txm__sql_analyze(c, who, sql, &a, ref);
    if (rc)
        return rc;
    if (a.count != n) {
        txm__sql_unref(ref);
        return txm__err(TXM_EINVALID, "%s: the statement has %zu placeholder%s but %zu parameter%s given", who,
                        a.count, a.count == 1 ? "" : "s", n, n == 1 ? " was" : "s were");
    }
    memset(op, 0, sizeof *op);
    op->kind = TXM_OP_STATEMENT;
    op->sql = a.sql;
    op->sql_len = a.sql_len;
    op->params = params;
    op->nparams = n;
    op->affected = -1;
    return 0;
}

/* ---- one application statement, retried at depth 0 when the connection asks for it -------- */

typedef struct one_op {
    const char *who;
    const txm_op *proto; /* the op as built; each attempt runs a fresh copy */
    txm_op run;          /* the last attempt's op (affected count, sink) */
    unsigned attempts;
} one_op;

static int run_one_attempt(txm_conn *c, void *payload)
{
    one_op *o = payload;
    txm_sink *sink = o->run.sink;
    if (o->attempts++ > 0 && sink) {
        /* The failed attempt may have buffered part of a result: start from an empty one. */
        txm__sink_free(sink);
        sink = txm__sink_new();
    }
    o->run = *o->proto;
    o->run.sink = sink;
    if (o->proto->sink && !sink)
        return txm__err(TXM_ENOMEM, "%s: out of memory", o->who);
    return txm__run_app_ops(c, &o->run, 1, false, NULL);
}

/* Runs *op (a statement or lock op) once, or, outside any transaction and with
 * autocommit_retries set, under txm__autocommit_retry. The op is updated as the run left it
 * (op->sink may be a new sink when an attempt was retried). */
static int run_one(txm_conn *c, const char *who, txm_op *op)
{
    one_op o;
    int rc;
    if (c->depth > 0 || c->opts.autocommit_retries == 0)
        return txm__run_app_ops(c, op, 1, false, NULL); /* a test baseline counts as depth 1 */
    o.who = who;
    o.proto = op;
    o.run = *op;
    o.attempts = 0;
    rc = txm__autocommit_retry(c, who, run_one_attempt, &o);
    *op = o.run;
    return rc;
}

static int exec_stmt(txm_conn *c, const char *sql, const txm_value *params, size_t n, int64_t *affected_out)
{
    txm_op op;
    txm_sql_ref ref;
    int rc = txm__prepare_stmt(c, "txm_exec", sql, params, n, &op, &ref);
    if (rc)
        return rc;
    rc = run_one(c, "txm_exec", &op);
    txm__sql_unref(&ref);
    if (rc == 0 && affected_out)
        *affected_out = op.affected;
    return rc;
}

int txm_exec(txm_conn *c, const char *sql, const txm_value *params, size_t n, int64_t *affected_out)
{
    int rc;
    if (affected_out)
        *affected_out = -1;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_exec: connection is NULL");
    if ((rc = txm__enter(c, "txm_exec")) != 0)
        return rc;
    return txm__leave(c, exec_stmt(c, sql, params, n, affected_out));
}

static int query_stmt(const char *who, txm_rows **out, txm_conn *c, const char *sql, const txm_value *params,
                      size_t n)
{
    txm_op op;
    txm_sql_ref ref;
    int rc = txm__prepare_stmt(c, who, sql, params, n, &op, &ref);
    if (rc)
        return rc;
    op.sink = txm__sink_new();
    if (!op.sink) {
        txm__sql_unref(&ref);
        return txm__err(TXM_ENOMEM, "%s: out of memory", who);
    }
    rc = run_one(c, who, &op);
    txm__sql_unref(&ref);
    if (rc) {
        txm__sink_free(op.sink);
        return rc;
    }
    *out = txm__sink_to_rows(op.sink);
    if (!*out)
        return txm__err(TXM_ENOMEM, "%s: out of memory", who);
    return 0;
}

int txm_query(txm_rows **out, txm_conn *c, const char *sql, const txm_value *params, size_t n)
{
    int rc;
    if (out)
        *out = NULL;
    if (!out)
        return txm__err(TXM_EINVALID, "txm_query: out is NULL");
    if (!c)
        return txm__err(TXM_EINVALID, "txm_query: connection is NULL");
    if ((rc = txm__enter(c, "txm_query")) != 0)
        return rc;
    return txm__leave(c, query_stmt("txm_query", out, c, sql, params, n));
}

/* The first column of the first row. No row: TXM_ENOTFOUND. A NULL value: TXM_OK with *is_null
 * set when is_null is given, else TXM_ENOTFOUND (txm_query_i64's contract). */
static int query_i64(const char *who, txm_conn *c, int64_t *out, int *is_null, const char *sql,
                     const txm_value *params, size_t n)
{
    txm_rows *r = NULL;
    int rc;
    if ((rc = txm__enter(c, who)) != 0)
        return rc;
    rc = query_stmt(who, &r, c, sql, params, n);
    rc = txm__leave(c, rc);
    if (rc)
        return rc;
    if (!txm_rows_next(r)) {
        txm_rows_free(r);
        return txm__err(TXM_ENOTFOUND, "%s: no row (the query returned none)", who);
    }
    if (txm_rows_columns(r) == 0) {
        txm_rows_free(r);
        return txm__err(is_null ? TXM_EINVALID : TXM_ENOTFOUND, "%s: the query returned a row without columns", who);
    }
    if (txm_rows_is_null(r, 0)) {
        txm_rows_free(r);
        if (is_null) {
            *is_null = 1;
            return 0;
        }
        return txm__err(TXM_ENOTFOUND,
                        "%s: the value is NULL (the first column of the first row; there is a row: "
                        "txm_query_i64_or_null tells a NULL from no row)",
                        who);
    }
    *out = txm_rows_get_i64(r, 0);
    txm_rows_free(r);
    return 0;
}

int txm_query_i64(txm_conn *c, int64_t *out, const char *sql, const txm_value *params, size_t n)
{
    if (out)
        *out = 0;
    if (!out)
        return txm__err(TXM_EINVALID, "txm_query_i64: out is NULL");
    if (!c)
        return txm__err(TXM_EINVALID, "txm_query_i64: connection is NULL");
    return query_i64("txm_query_i64", c, out, NULL, sql, params, n);
}

int txm_query_i64_or_null(txm_conn *c, int64_t *out, int *is_null, const char *sql, const txm_value *params, size_t n)
{
    if (out)
        *out = 0;
    if (is_null)
        *is_null = 0;
    if (!out || !is_null)
        return txm__err(TXM_EINVALID, "txm_query_i64_or_null: %s is NULL", out ? "is_null" : "out");
    if (!c)
        return txm__err(TXM_EINVALID, "txm_query_i64_or_null: connection is NULL");
    return query_i64("txm_query_i64_or_null", c, out, is_null, sql, params, n);
}

static int lock_check(txm_conn *c, const char *who, const char *key, unsigned flags, txm_op_kind kind)
{
    if (!key || !key[0])
        return txm__err(TXM_EINVALID, "%s: key is NULL or empty", who);
    if (flags & ~(unsigned)(TXM_LOCK_SHARED | TXM_LOCK_TX))
        return txm__err(TXM_EINVALID, "%s: unknown flags 0x%x", who, flags);
    if (!(c->drv->caps & TXM_CAP_ADVISORY_LOCKS))
        return txm__err(TXM_ENOTSUPPORTED, "%s: the %s driver has no advisory locks", who, c->drv->name);
    if ((flags & TXM_LOCK_SHARED) && !(c->drv->caps & TXM_CAP_SHARED_LOCKS))
        return txm__err(TXM_ENOTSUPPORTED, "%s: the %s driver has no shared advisory locks", who, c->drv->name);
    if ((flags & TXM_LOCK_TX) && c->depth == 0)
        return txm__err(TXM_EMISUSE, "%s: transaction-scoped lock '%s' needs an open transaction", who, key);
    if (kind == TXM_OP_UNLOCK && (flags & TXM_LOCK_TX))
        return txm__err(TXM_EMISUSE, "%s: transaction-scoped lock '%s' is released when the transaction ends", who,
                        key);
    return 0;
}

static int lock_op(txm_conn *c, const char *who, const char *key, unsigned flags, int timeout_ms, txm_op_kind kind)
{
    txm_op op;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "%s: connection is NULL", who);
    if ((rc = txm__enter(c, who)) != 0)
        return rc;
    rc = lock_check(c, who, key, flags, kind);
    if (rc)
        return txm__leave(c, rc);
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.key = key;
    op.lock_flags = flags;
    op.timeout_ms = timeout_ms;
    op.affected = -1;
    return txm__leave(c, run_one(c, who, &op));
}

int txm_lock(txm_conn *c, const char *key, unsigned flags, int timeout_ms)
{
    return lock_op(c, "txm_lock", key, flags, timeout_ms, TXM_OP_LOCK);
}

int txm_unlock(txm_conn *c, const char *key, unsigned flags)
{
    return lock_op(c, "txm_unlock", key, flags, 0, TXM_OP_UNLOCK);
}

int txm_cancel(txm_conn *c)
{
    const txm_url *scope;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_cancel: connection is NULL");
    if (!c->drv->cancel)
        return txm__err(TXM_ENOTSUPPORTED, "txm_cancel: the %s driver cannot cancel statements", c->drv->name);
    scope = txm__scrub_scope(c->url);
    rc = c->drv->cancel(c->dc);
    txm__scrub_scope(scope);
    return rc;
}

static int reconnect(txm_conn *c)
{
    const txm_url *scope;
    int rc;
    if (c->depth > 0)
        return txm__err(TXM_EMISUSE, "txm_reconnect: %zu transaction level(s) still open; roll them back first",
                        c->depth);
    if (!c->drv->reconnect)
        return txm__err(TXM_ENOTSUPPORTED, "txm_reconnect: the %s driver cannot reconnect", c->drv->name);
    scope = txm__scrub_scope(c->url);
    rc = c->drv->reconnect(c->dc);
    txm__scrub_scope(scope);
    if (rc == 0) {
        c->broken = false;
        c->server_in_tx = false;
    }
    return rc;
}

int txm_reconnect(txm_conn *c)
{
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_reconnect: connection is NULL");
    if ((rc = txm__enter(c, "txm_reconnect")) != 0)
        return rc;
    return txm__leave(c, reconnect(c));
}

int txm_resolve_outcome(txm_conn *c, txm_outcome *out)
{
    const txm_url *scope;
    int rc;
    if (out)
        *out = TXM_OUTCOME_UNKNOWN;
    if (!c || !out)
        return txm__err(TXM_EINVALID, "txm_resolve_outcome: %s is NULL", c ? "out" : "connection");
    if (!c->drv->resolve_outcome)
        return txm__err(TXM_ENOTSUPPORTED, "txm_resolve_outcome: the %s driver cannot resolve commit outcomes",
                        c->drv->name);
    if ((rc = txm__enter(c, "txm_resolve_outcome")) != 0)
        return rc;
    scope = txm__scrub_scope(c->url);
    rc = c->drv->resolve_outcome(c->dc, out);
    txm__scrub_scope(scope);
    return txm__leave(c, rc);
}
