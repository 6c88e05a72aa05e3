/*
 * The transaction state machine: levels, lazy BEGIN/SAVEPOINT, elided RELEASE, poisoning, hooks,
 * the test baseline, and the check of txm's model against the server's transaction status.
 *
 * Model. c->levels[0..depth) is the stack; levels[0] is the outermost (or the test baseline).
 * A level "owns" a savepoint unless it was opened with TXM_TX_JOIN; levels[0] owns the BEGIN.
 * Nothing is sent when a level opens: the BEGIN/SAVEPOINTs of levels that have not started are
 * put in front of the next application op, in the same batch (one flight on pipelining drivers).
 * Committing a nested level only records that its RELEASE is due (c->pending_release); the
 * RELEASE travels with the next statement, or is dropped when COMMIT or a ROLLBACK TO an outer
 * savepoint makes it redundant.
 * Depth. No operation scans the stack: what a scan would compute (the outermost failed level, the
 * first level with a BEGIN/SAVEPOINT still to send, each level's savepoint owner) is kept up to
 * date where levels open, fail, start and end, so a level costs the same at any depth.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static txm_tx *top(txm_conn *c) { return c->depth ? c->levels[c->depth - 1] : NULL; }

/* Index of the nearest level at or below index i that owns a savepoint (levels[0] always does).
 * Recorded in each level when it opens (begin_level): O(1) however many joined levels there are. */
static size_t owner_index(const txm_conn *c, size_t i) { return c->levels[i]->owner; }

/* The outermost failed level at or below index i, or NULL. c->failed_at is kept up to date by
 * mark_failed and pop: one comparison instead of a scan of the stack on every statement. */
static txm_tx *failed_ancestor(const txm_conn *c, size_t i)
{
    if (c->failed_at == 0 || c->failed_at - 1 > i)
        return NULL;
    return c->levels[c->failed_at - 1];
}

int txm__levels_check(const txm_conn *c, char *buf, size_t size)
{
    size_t i, failed_at = 0, unsent = 0, owner = 0;
    bool settled = true;
    for (i = 0; i < c->depth; i++) {
        const txm_tx *t = c->levels[i];
        if (i == 0 || t->owns_sp)
            owner = i;
        if (t->owner != owner) {
            snprintf(buf, size, "level index %zu: cached owner %zu, the scan finds %zu", i, t->owner, owner);
            return -1;
        }
        if (t->failed && !failed_at)
            failed_at = i + 1;
        if (settled && t->owns_sp && !t->started)
            settled = false;
        if (settled)
            unsent = i + 1;
        else if (t->owns_sp && t->started) {
            snprintf(buf, size, "level index %zu started above an owner that has not (index %zu)", i, unsent);
            return -1;
        }
    }
    if (c->failed_at != failed_at) {
        snprintf(buf, size, "cached failed_at %zu, the scan finds %zu (depth %zu)", c->failed_at, failed_at, c->depth);
        return -1;
    }
    /* The cache may lag behind joined levels pushed since the last run (the next run passes
     * them), never run ahead, and never lag behind a started owner. */
    if (c->unsent > unsent) {
        snprintf(buf, size, "cached unsent %zu is past the first unstarted owner (%zu, depth %zu)", c->unsent, unsent,
                 c->depth);
        return -1;
    }
    for (i = c->unsent; i < unsent; i++) {
        if (i == 0 || c->levels[i]->owns_sp) {
            snprintf(buf, size, "cached unsent %zu lags behind a started owner (index %zu)", c->unsent, i);
            return -1;
        }
    }
    if (size)
        buf[0] = '\0';
    return 0;
}

/* User-visible outermost level: index 0, or 1 under a test baseline. */
static size_t user_base(const txm_conn *c) { return c->has_baseline ? 1u : 0u; }

void txm__aborted_sqlstate(const txm_conn *c, txm_err_rec *r)
{
    txm__strlcpy(r->sqlstate, (c->drv->dialect & TXM_DIALECT_SQLSTATE_25P02) ? "25P02" : "", sizeof r->sqlstate);
}

static void mark_failed(txm_tx *t, const txm_error *err)
{
    if (t->failed)
        return; /* keep the first cause */
    t->failed = true;
    txm__err_copy(&t->fail_err, err);
    /* Only open levels are ever marked (t->depth is index + 1); an outer one takes precedence. */
    if (t->conn->failed_at == 0 || t->depth < t->conn->failed_at)
        t->conn->failed_at = t->depth;
}

/* Bytes of a txm_tx_options of `version` (0 for an unknown version): a caller compiled against an
 * older txm.h has a smaller struct, so neither read nor write past its version's fields. */
static size_t tx_options_size(unsigned version)
{
    switch (version) {
    case 1:
        return offsetof(txm_tx_options, lock_timeout_ms);
    case 2:
        return sizeof(txm_tx_options);
    default:
        return 0;
    }
}

int txm_tx_options_init(txm_tx_options *opts, unsigned version)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    size_t size = tx_options_size(version);
    if (!opts)
        return txm__err(TXM_EINVALID, "txm_tx_options_init: options are NULL");
    if (!size)
        return txm__err(TXM_EINVALID, "txm_tx_options_init: unknown version %u (this txm knows 1..%u)", version,
                        (unsigned)TXM_TX_OPTIONS_VERSION);
    memcpy(opts, &def, size);
    opts->version = version;
    return 0;
}

/* Copies the caller's options (of any known version) into a current-version struct; fields the
 * caller's version lacks keep their defaults. Drivers always see the current version. */
static int tx_options_load(txm_tx_options *dst, const txm_tx_options *src, const char *who)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    size_t size = tx_options_size(src->version);
    if (!size)
        return txm__err(TXM_EINVALID, "%s: transaction options have unknown version %u (this txm knows 1..%u)", who,
                        src->version, (unsigned)TXM_TX_OPTIONS_VERSION);
    *dst = def;
    memcpy(dst, src, size);
    dst->version = TXM_TX_OPTIONS_VERSION;
    return 0;
}

/* What a level inside a transaction refuses (txm_begin on a nested level, txm_batch's tx options
 * inside a transaction): options only a transaction of its own can honour. Never silently
 * ignored: a savepoint cannot make durable work final, change the isolation or own a timeout. */
static int nested_rules(const txm_conn *c, const char *who, const txm_tx_options *o)
{
    if (o->flags & TXM_TX_DURABLE)
        return txm__err(TXM_EMISUSE,
                        "%s: a durable block was opened inside a transaction (depth %d); durable code must "
                        "own its transaction so that its commit is final",
                        who, txm_depth(c));
    if (o->isolation != TXM_ISOLATION_DEFAULT || (o->flags & (TXM_TX_READ_ONLY | TXM_TX_DEFERRABLE)))
        return txm__err(TXM_EMISUSE,
                        "%s: isolation level, read-only and deferrable can only be set on the outermost "
                        "level (depth is %d)",
                        who, txm_depth(c));
    if (o->lock_timeout_ms || o->statement_timeout_ms)
        return txm__err(TXM_EMISUSE,
                        "%s: lock_timeout_ms and statement_timeout_ms can only be set on the outermost level "
                        "(depth is %d): they hold for the whole transaction",
                        who, txm_depth(c));
    return 0;
}

int txm__check_nested_tx_options(const txm_conn *c, const char *who, const txm_tx_options *opts)
{
    txm_tx_options o;
    int rc = tx_options_load(&o, opts, who);
    return rc ? rc : nested_rules(c, who, &o);
}

/* Checks the per-transaction timeouts of an outermost level about to open (see txm_begin). */
static int check_timeouts(const txm_conn *c, const txm_tx_options *o)
{
    if (!o->lock_timeout_ms && !o->statement_timeout_ms)
        return 0;
    if (o->lock_timeout_ms > TXM_TX_TIMEOUT_MAX_MS || o->statement_timeout_ms > TXM_TX_TIMEOUT_MAX_MS)
        return txm__err(TXM_EINVALID, "txm_begin: lock_timeout_ms %u / statement_timeout_ms %u: the largest is %u",
                        o->lock_timeout_ms, o->statement_timeout_ms, TXM_TX_TIMEOUT_MAX_MS);
    if (!(c->drv->caps & TXM_CAP_TX_TIMEOUTS))
        return txm__err(TXM_ENOTSUPPORTED,
                        "txm_begin: driver '%s' does not support per-transaction timeouts (no TXM_CAP_TX_TIMEOUTS); "
                        "lock_timeout_ms / statement_timeout_ms would be ignored",
                        c->drv->name);
    if (c->has_baseline)
        return txm__err(TXM_ENOTSUPPORTED,
                        "txm_begin: lock_timeout_ms / statement_timeout_ms cannot be applied under a test baseline "
                        "(the level is a savepoint of the baseline's transaction, which has already begun)");
    return 0;
}

int txm_depth(const txm_conn *c)
{
    if (!c)
        return 0;
    return (int)(c->depth - user_base(c));
}

int txm_require_transaction(txm_conn *c, const char *who)
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_require_transaction: connection is NULL");
    if (c->closing)
        return txm__enter(c, "txm_require_transaction");
    if (txm_depth(c) == 0)
        return txm__err(TXM_EMISUSE, "%s must run inside a transaction, but none is open", who ? who : "this code");
    return 0;
}

int txm_forbid_transaction(txm_conn *c, const char *who)
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_forbid_transaction: connection is NULL");
    if (c->closing)
        return txm__enter(c, "txm_forbid_transaction");
    if (txm_depth(c) > 0)
        return txm__err(TXM_EMISUSE,
                        "%s must not run inside a transaction, but one is open (depth %d): its effect could not be "
                        "undone by a rollback",
                        who ? who : "this code", txm_depth(c));
    return 0;
}

/* ---- running batches ---------------------------------------------------------------------- */

static int ensure_ops(txm_conn *c, size_t n)
{
    if (n <= c->ops_cap)
        return 0;
    {
        size_t cap = c->ops_cap ? c->ops_cap * 2 : 8;
        txm_op *ops;
        while (cap < n)
            cap *= 2;
        ops = txm__realloc(c->ops, cap * sizeof *ops);
        if (!ops)
            return txm__err(TXM_ENOMEM, "out of memory building a statement batch");
        c->ops = ops;
        c->ops_cap = cap;
    }
    return 0;
}

static txm_op ctl_op(txm_op_kind kind, unsigned level, const txm_tx_options *tx)
{
    txm_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.level = level;
    op.tx = tx;
    op.affected = -1;
    return op;
}

static bool is_control(txm_op_kind k) { return k != TXM_OP_STATEMENT && k != TXM_OP_LOCK && k != TXM_OP_UNLOCK; }

/* Counts what a run executed. `sent` ops were executed (the failed one included). */
static void count_ops(txm_conn *c, const txm_op *ops, size_t sent)
{
    size_t i;
    for (i = 0; i < sent; i++) {
        if (ops[i].kind == TXM_OP_STATEMENT) { /* the common op first */
            c->stats.statements++;
            continue;
        }
        switch (ops[i].kind) {
        case TXM_OP_BEGIN:
            c->stats.begins++;
            c->stats.tx_savepoints = 0;
            break;
        case TXM_OP_SAVEPOINT:
            c->stats.savepoints++;
            c->stats.tx_savepoints++;
            break;
        case TXM_OP_RELEASE:
            c->stats.releases++;
            break;
        case TXM_OP_ROLLBACK_TO:
            c->stats.rollbacks_to++;
            break;
        case TXM_OP_COMMIT:
            c->stats.commits++;
            break;
        case TXM_OP_ROLLBACK:
            c->stats.rollbacks++;
            break;
        default:
            c->stats.statements++;
            break;
        }
        if (is_control(ops[i].kind))
            c->stats.control++;
    }
}

/* Runs ops through the driver and accounts for them. With st, also asks the driver for the
 * server's transaction status afterwards (as server_status, in the same scrubbing scope). */
static int drive_status(txm_conn *c, txm_op *ops, size_t n, size_t *completed, txm_tx_status *st)
{
    txm_run_result res;
    const txm_url *scope;
    int rc;
    memset(&res, 0, sizeof res);
    scope = txm__scrub_scope(c->url);
    rc = c->drv->run(c->dc, ops, n, &res);
    if (st)
        *st = c->broken || rc == TXM_ECONNECTION || rc == TXM_ECOMMIT_UNKNOWN || !c->drv->tx_status
                  ? TXM_TXS_UNKNOWN
                  : c->drv->tx_status(c->dc);
    txm__scrub_scope(scope);
    if (rc == 0)
        res.completed = n;
    else if (res.completed >= n)
        res.completed = n - 1; /* a driver that failed must name a failing op */
    c->stats.round_trips += res.round_trips;
    count_ops(c, ops, rc ? res.completed + 1 : n);
    if (rc != 0 && txm_error_last()->code != rc)
        txm__err(rc, "the %s driver failed without a message: %s", c->drv->name, txm_strerror(rc));
    if (rc == TXM_ECONNECTION || rc == TXM_ECOMMIT_UNKNOWN)
        c->broken = true;
    *completed = res.completed;
    return rc;
}

static int drive(txm_conn *c, txm_op *ops, size_t n, size_t *completed)
{
    return drive_status(c, ops, n, completed, NULL);
}

static txm_tx_status server_status(txm_conn *c)
{
    if (c->broken || !c->drv->tx_status)
        return TXM_TXS_UNKNOWN;
    {
        const txm_url *scope = txm__scrub_scope(c->url);
        txm_tx_status st = c->drv->tx_status(c->dc);
        txm__scrub_scope(scope);
        return st;
    }
}

/* Poisons after a failed run inside a transaction. */
static void poison(txm_conn *c, const txm_error *err, bool lost)
{
    if (c->depth == 0)
        return;
    if (lost)
        mark_failed(c->levels[0], err);
    else
        mark_failed(c->levels[owner_index(c, c->depth - 1)], err);
}

/* Sends ROLLBACK for the server transaction if one is open; keeps the caller's error record. */
static void rollback_server(txm_conn *c)
{
    txm_op op;
    size_t done;
    txm_err_rec saved;
    if (!c->server_in_tx || c->broken) {
        c->server_in_tx = false;
        return;
    }
    txm__err_copy(&saved, txm_error_last());
    op = ctl_op(TXM_OP_ROLLBACK, 0, NULL);
    if (drive(c, &op, 1, &done) != 0) {
        /* Unless the server says it is outside a transaction, the rolled-back work may still be
         * open there, and the next BEGIN would run inside it (MySQL: commit it). Only a new
         * session is safe: the connection refuses work until txm_reconnect or txm_close. */
        bool idle = server_status(c) == TXM_TXS_IDLE;
        txm__log(c, TXM_LOG_WARN, "ROLLBACK failed: %s%s", txm_error_last()->message,
                 idle ? "" : "; the connection is unusable until txm_reconnect");
        if (!idle)
            c->broken = true;
    }
    c->server_in_tx = false;
    txm__err_copy(txm__err_tls(), &saved.pub);
}

/* Moves c->unsent past the levels that need nothing sent any more (started owners, joined
 * levels). Each level is passed once while it is open, so this is amortized O(1) per level. */
static void advance_unsent(txm_conn *c)
{
    while (c->unsent < c->depth && (!c->levels[c->unsent]->owns_sp || c->levels[c->unsent]->started))
        c->unsent++;
}

int txm__run_app_ops(txm_conn *c, txm_op *app, size_t napp, bool commit, size_t *failed)
{
    size_t n = 0, i, completed = 0, first_level_op, app_idx;
    txm_tx *bad;
    txm_tx_status st;
    /* Under a test baseline with no user level, the application is "outside a transaction": its
     * statement runs in a savepoint of its own so that a failure does not doom the baseline. */
    bool autocommit_sp = c->has_baseline && c->depth == 1;
    int rc;

    if (failed)
        *failed = SIZE_MAX;
    /* Only the outermost level, in its first flight, can carry its own COMMIT (txm_batch). */
    commit = commit && c->depth == 1 && !c->has_baseline && !c->levels[0]->started;
    if (c->depth > 0 && (bad = failed_ancestor(c, c->depth - 1)) != NULL) {
        c->stats.refused += napp;
        txm__err_with_cause(TXM_ETX_ABORTED, &bad->fail_err.pub,
                            "statement refused: the transaction is aborted by an earlier error (%s: %s); roll "
                            "back to the level that failed",
                            txm_err_name(bad->fail_err.pub.code), bad->fail_err.message);
        txm__aborted_sqlstate(c, txm__err_tls());
        return TXM_ETX_ABORTED;
    }
    if (c->broken)
        return txm__err(TXM_ECONNECTION, "the connection was lost earlier; call txm_reconnect (after rolling back)");
    if (napp > SIZE_MAX / sizeof *c->ops - c->depth - 5 || ensure_ops(c, c->depth + 5 + napp))
        return txm__err(TXM_ENOMEM, "out of memory building a statement batch");

    if (c->pending_release && c->server_in_tx)
        c->ops[n++] = ctl_op(TXM_OP_RELEASE, c->pending_release, NULL);
    first_level_op = n;
    for (i = c->unsent; i < c->depth; i++) { /* below c->unsent every owner has started */
        txm_tx *t = c->levels[i];
        if (!t->owns_sp || t->started)
            continue;
        if (i == 0)
            c->ops[n++] = ctl_op(TXM_OP_BEGIN, 0, &t->opts);
        else
            c->ops[n++] = ctl_op(TXM_OP_SAVEPOINT, t->sp_level, NULL);
    }
    if (autocommit_sp)
        c->ops[n++] = ctl_op(TXM_OP_SAVEPOINT, 1, NULL);
    app_idx = n;
    if (napp == 1)
        c->ops[n] = app[0]; /* one statement (txm_exec, txm_query): a copy without a call */
    else
        memcpy(c->ops + n, app, napp * sizeof *app);
    n += napp;
    if (autocommit_sp)
        c->ops[n++] = ctl_op(TXM_OP_RELEASE, 1, NULL);
    if (commit)
        c->ops[n++] = ctl_op(TXM_OP_COMMIT, 0, NULL);

    rc = drive_status(c, c->ops, n, &completed, &st);
    if (napp == 1)
        app[0] = c->ops[app_idx]; /* affected counts, sinks */
    else
        memcpy(app, c->ops + app_idx, napp * sizeof *app);
    if (rc != 0 && failed && completed >= app_idx)
        *failed = completed - app_idx < napp ? completed - app_idx : napp;

    /* Account for the control ops that took effect. */
    if (first_level_op == 1 && completed >= 1)
        c->pending_release = 0;
    for (i = first_level_op; i < app_idx && i < completed; i++) {
        if (c->ops[i].kind == TXM_OP_BEGIN) {
            c->levels[0]->started = true;
            c->server_in_tx = true;
        } else if (c->ops[i].level < c->depth) {
            c->levels[c->ops[i].level]->started = true; /* sp_level is the level's index */
        }
    }
    advance_unsent(c);
    if (commit && rc == 0)
        c->server_in_tx = false; /* the COMMIT at the end of the run took effect */

    if (rc != 0) {
        const txm_error *err = txm_error_last();
        bool lost = (err->flags & TXM_ERRF_TX_LOST) != 0 || c->broken;
        if (c->server_in_tx && st == TXM_TXS_IDLE)
            lost = true; /* the engine rolled the whole transaction back */
        if (lost && c->server_in_tx && (st == TXM_TXS_IDLE || c->broken))
            c->server_in_tx = false;
        if (lost && c->depth > 0)
            txm__err_tls()->pub.flags |= TXM_ERRF_TX_LOST;
        if (autocommit_sp && !lost && completed >= app_idx) {
            /* Undo just this statement; the baseline stays usable. */
            txm_err_rec saved;
            txm_op undo[2];
            size_t done;
            txm__err_copy(&saved, txm_error_last());
            undo[0] = ctl_op(TXM_OP_ROLLBACK_TO, 1, NULL);
            undo[1] = ctl_op(TXM_OP_RELEASE, 1, NULL);
            if (drive(c, undo, 2, &done) == 0) {
                txm__err_copy(txm__err_tls(), &saved.pub);
                return rc;
            }
            txm__err_copy(txm__err_tls(), &saved.pub);
            lost = true;
        }
        poison(c, txm_error_last(), lost);
        return rc;
    }

    /* Check the model against the server. */
    if (c->server_in_tx && st == TXM_TXS_IDLE) {
        c->server_in_tx = false;
        rc = txm__err(TXM_ESTATE,
                      "the statement ended the open transaction on the server (an implicit commit, e.g. DDL on "
                      "MySQL/MariaDB): the work done so far in it was committed, and later statements would run "
                      "outside any transaction; roll back the txm transaction");
        txm__err_tls()->pub.flags |= TXM_ERRF_TX_LOST;
        poison(c, txm_error_last(), true);
        return rc;
    }
    if (!c->server_in_tx && (st == TXM_TXS_ACTIVE || st == TXM_TXS_FAILED)) {
        c->server_in_tx = true;
        rollback_server(c);
        rc = txm__err(TXM_ESTATE,
                      "the statement opened a transaction on the server outside txm (e.g. SET autocommit=0); it was "
                      "rolled back: use txm_begin");
        poison(c, txm_error_last(), true);
        return rc;
    }
    return 0;
}

/* ---- levels ------------------------------------------------------------------------------- */

static int begin_level(txm_tx **out, txm_conn *c, const txm_tx_options *opts)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    txm_tx *t;
    bool user_outermost;

    txm_tx_options loaded;
    int rc;

    if (!opts) {
        opts = &def; /* the defaults are valid: no copy, no checks (the common case) */
    } else {
        if ((rc = tx_options_load(&loaded, opts, "txm_begin")) != 0)
            return rc;
        opts = &loaded;
        if (opts->flags & ~(unsigned)(TXM_TX_DURABLE | TXM_TX_JOIN | TXM_TX_READ_ONLY | TXM_TX_DEFERRABLE))
            return txm__err(TXM_EINVALID, "txm_begin: unknown flags 0x%x", opts->flags);
        if ((unsigned)opts->isolation > (unsigned)TXM_ISOLATION_SERIALIZABLE)
            return txm__err(TXM_EINVALID, "txm_begin: unknown isolation level %d", (int)opts->isolation);
    }
    user_outermost = c->depth == user_base(c);
    if ((opts->flags & TXM_TX_JOIN) && user_outermost)
        return txm__err(TXM_EMISUSE, "txm_begin: TXM_TX_JOIN needs an enclosing level to join, but none is open");
    if ((rc = user_outermost ? check_timeouts(c, opts) : nested_rules(c, "txm_begin", opts)) != 0)
        return rc;
    if (c->depth == 0 && c->broken)
        return txm__err(TXM_ECONNECTION, "txm_begin: the connection was lost; call txm_reconnect");
    if (c->depth == c->levels_cap) {
        size_t cap = c->levels_cap ? c->levels_cap * 2 : 4;
        txm_tx **lv = txm__realloc(c->levels, cap * sizeof *lv);
        if (!lv)
            return txm__err(TXM_ENOMEM, "txm_begin: out of memory");
        memset(lv + c->levels_cap, 0, (cap - c->levels_cap) * sizeof *lv);
        c->levels = lv;
        c->levels_cap = cap;
    }
    t = c->levels[c->depth];
    if (!t) {
        t = txm__calloc(1, sizeof *t);
        if (!t)
            return txm__err(TXM_ENOMEM, "txm_begin: out of memory");
        c->levels[c->depth] = t;
    }
    /* Field by field: the embedded error record (2.4 KB) is only written when the level fails. */
    t->gen++;
    t->started = false;
    t->failed = false;
    t->baseline = false;
    t->conn = c;
    t->depth = (unsigned)c->depth + 1;
    t->sp_level = (unsigned)c->depth; /* 0 for the outermost (BEGIN), k for levels[k] */
    t->flags = opts->flags;
    t->opts = *opts;
    t->owns_sp = !(opts->flags & TXM_TX_JOIN);
    t->owner = t->owns_sp || c->depth == 0 ? c->depth : c->levels[c->depth - 1]->owner;
    t->active = true;
    txm__hooks_init(&t->on_commit);
    txm__hooks_init(&t->on_rollback);
    c->depth++;
    *out = t;
    return 0;
}

int txm_begin(txm_tx **out, txm_conn *c, const txm_tx_options *opts)
{
    int rc;
    if (out)
        *out = NULL;
    if (!out)
        return txm__err(TXM_EINVALID, "txm_begin: out is NULL");
    if (!c)
        return txm__err(TXM_EINVALID, "txm_begin: connection is NULL");
    if ((rc = txm__enter(c, "txm_begin")) != 0)
        return rc;
    return txm__leave(c, begin_level(out, c, opts));
}

static int check_end(txm_tx *tx, const char *who)
{
    txm_conn *c;
    if (!tx)
        return txm__err(TXM_EINVALID, "%s: transaction handle is NULL", who);
    c = tx->conn;
    if (!tx->active || !c || tx->depth == 0 || tx->depth > c->depth || c->levels[tx->depth - 1] != tx)
        return txm__err(TXM_EMISUSE, "%s: this transaction level has already ended", who);
    if (tx->baseline)
        return txm__err(TXM_EMISUSE, "%s: the test baseline is ended by txm_test_end", who);
    if (c->hooks_running && tx->depth <= c->hook_base)
        return txm__err(TXM_EMISUSE,
                        "%s: a hook cannot end level %d: it was open before the hooks started running (hooks end "
                        "only levels they opened); nothing was changed",
                        who, (int)(tx->depth - user_base(c)));
    if (tx->depth != c->depth)
        return txm__err(TXM_EMISUSE,
                        "%s: level %d cannot end while level %zu inside it is still open (end levels innermost "
                        "first); nothing was changed",
                        who, (int)(tx->depth - user_base(c)), c->depth - user_base(c));
    return 0;
}

static void pop(txm_conn *c)
{
    txm_tx *t = top(c);
    t->active = false;
    c->depth--;
    /* The cached stack summaries forget the level that ended (see txm_conn). */
    if (c->failed_at > c->depth)
        c->failed_at = 0;
    if (c->unsent > c->depth)
        c->unsent = c->depth;
}

static int rollback_top(txm_conn *c);

/* Runs one hook of the active runner (index = its position in the run) and frees it. A hook that
 * left levels open has them rolled back (their on-rollback hooks are queued) and counts as failed.
 * Returns true if it failed; the first failure is recorded in c->hook_err. */
static bool run_one(txm_conn *c, txm_hook *h, size_t index, bool first_failure)
{
    unsigned long seq = txm__err_seq();
    int rc = h->fn(c, h->payload);
    c->stats.hooks_run++;
    if (h->free_payload)
        h->free_payload(h->payload);
    txm__free(h);
    if (c->depth > c->hook_base) {
        size_t left = c->depth - c->hook_base;
        while (c->depth > c->hook_base)
            rollback_top(c);
        if (rc == 0 && !c->closing) /* after a close request, the close would roll them back anyway */
            rc = txm__err(TXM_EMISUSE, "hook #%zu left %zu transaction level%s open; %s rolled back", index, left,
                          left == 1 ? "" : "s", left == 1 ? "it was" : "they were");
    }
    if (rc == 0)
        return false;
    c->stats.hooks_failed++;
    if (first_failure) {
        if (txm__err_seq() != seq) {
            txm__err_copy(&c->hook_err, txm_error_last());
        } else {
            txm__err_init(&c->hook_err);
            c->hook_err.pub.code = rc < 0 ? rc : TXM_ERROR;
            snprintf(c->hook_err.message, sizeof c->hook_err.message, "hook #%zu returned %d", index, rc);
        }
    }
    return true;
}

/* Runs the hooks of l (emptying it) and turns failures into TXM_EHOOK (0 when all succeed).
 *
 * Hooks may end levels and register hooks, so running hooks can make more hooks ready. Only the
 * outermost call runs them: inside a hook, l is queued on the connection and 0 returned, and the
 * runner runs the queued hooks right after the hook that queued them returns (the order of the
 * old recursive runner), from one loop: a chain of hooks registered by hooks needs memory, not
 * stack. The runner's result counts every hook it ran, queued ones included. */
static int run_hooks(txm_conn *c, txm_hook_list *l, const char *what)
{
    size_t direct = l->count, total = 0, failed = 0;
    txm_hook_list ready;
    txm_hook *h;
    if (!direct)
        return 0;
    if (c->hooks_running) {
        txm__hooks_append(&c->hook_queue, l);
        return 0;
    }
    c->hooks_running = true;
    c->hook_base = c->depth;
    txm__hooks_init(&ready);
    txm__hooks_append(&ready, l);
    while ((h = txm__hooks_pop(&ready)) != NULL) {
        total++;
        if (run_one(c, h, total, failed == 0))
            failed++;
        txm__hooks_prepend(&ready, &c->hook_queue);
    }
    c->hooks_running = false;
    if (!failed)
        return 0;
    txm__log(c, TXM_LOG_WARN, "%zu of %zu %s hooks failed; first: %s", failed, total, what, c->hook_err.message);
    if (total == direct)
        return txm__err_with_cause(TXM_EHOOK, &c->hook_err.pub, "%s, but %zu of %zu %s hook%s failed; first: %s",
                                   strcmp(what, "on-commit") == 0 ? "committed" : "rolled back", failed, total, what,
                                   total == 1 ? "" : "s", c->hook_err.message);
    return txm__err_with_cause(TXM_EHOOK, &c->hook_err.pub,
                               "%s, but %zu of %zu hooks failed (%zu %s hook%s and %zu hook%s queued by hooks); "
                               "first: %s",
                               strcmp(what, "on-commit") == 0 ? "committed" : "rolled back", failed, total, direct,
                               what, direct == 1 ? "" : "s", total - direct, total - direct == 1 ? "" : "s",
                               c->hook_err.message);
}

/* Ends the top level without touching the server because an ancestor is doomed: its on-rollback
 * hooks wait for the ancestor's rollback, its on-commit hooks are discarded. */
static void end_under_doomed(txm_conn *c)
{
    txm_tx *t = top(c);
    txm_tx *parent = c->levels[c->depth - 2];
    txm__hooks_discard(&t->on_commit);
    txm__hooks_append(&parent->on_rollback, &t->on_rollback);
    pop(c);
}

/* Rolls the top level back for real. Keeps the caller's error record unless hooks fail. */
static int rollback_top(txm_conn *c)
{
    txm_tx *t = top(c);
    size_t idx = c->depth - 1;
    txm_err_rec saved;
    int rc = 0;

    txm__err_copy(&saved, txm_error_last());
    if (idx > 0 && !t->owns_sp) {
        /* Join level: doom the nearest savepoint owner, which will really roll back. */
        txm_tx *owner = c->levels[owner_index(c, idx)];
        if (!owner->failed) {
            txm_err_rec doom;
            txm__err_init(&doom);
            doom.pub.code = TXM_ETX_ABORTED;
            txm__aborted_sqlstate(c, &doom);
            snprintf(doom.message, sizeof doom.message,
                     "a joined level (depth %d) rolled back, dooming the enclosing level", (int)(idx + 1 - user_base(c)));
            mark_failed(owner, &doom.pub);
        }
        end_under_doomed(c);
        txm__err_copy(txm__err_tls(), &saved.pub);
        return 0;
    }
    if (idx > 0 && failed_ancestor(c, idx - 1)) {
        end_under_doomed(c);
        txm__err_copy(txm__err_tls(), &saved.pub);
        return 0;
    }
    if (idx == 0) {
        rollback_server(c);
        c->pending_release = 0;
    } else {
        if (c->pending_release > t->sp_level)
            c->pending_release = 0; /* ROLLBACK TO discards deeper savepoints too */
        if (t->started && c->server_in_tx && !c->broken) {
            txm_op ops[2];
            size_t done;
            int r;
            ops[0] = ctl_op(TXM_OP_ROLLBACK_TO, t->sp_level, NULL);
            ops[1] = ctl_op(TXM_OP_RELEASE, t->sp_level, NULL);
            r = drive(c, ops, 2, &done);
            if (r != 0) {
                /* The savepoint could not be rolled back: the whole transaction is in doubt. */
                txm__log(c, TXM_LOG_WARN, "ROLLBACK TO SAVEPOINT failed: %s", txm_error_last()->message);
                txm__err_tls()->pub.flags |= TXM_ERRF_TX_LOST;
                mark_failed(c->levels[0], txm_error_last());
                end_under_doomed(c);
                return r;
            }
        }
    }
    txm__hooks_discard(&t->on_commit);
    {
        txm_hook_list rb;
        txm__hooks_init(&rb);
        txm__hooks_append(&rb, &t->on_rollback);
        pop(c);
        txm__err_copy(txm__err_tls(), &saved.pub);
        rc = run_hooks(c, &rb, "on-rollback");
    }
    return rc;
}

/* Brackets a call on a level handle (see txm__enter); the handle itself is checked by check_end. */
static int enter_tx(txm_tx *tx, const char *who)
{
    if (!tx)
        return txm__err(TXM_EINVALID, "%s: transaction handle is NULL", who);
    if (!tx->conn)
        return txm__err(TXM_EMISUSE, "%s: this handle did not come from txm_begin", who);
    return txm__enter(tx->conn, who);
}

int txm_rollback(txm_tx *tx)
{
    int rc = enter_tx(tx, "txm_rollback");
    txm_conn *c;
    if (rc)
        return rc;
    c = tx->conn;
    rc = check_end(tx, "txm_rollback");
    if (rc == 0)
        rc = rollback_top(c);
    return txm__leave(c, rc);
}

static int commit_level(txm_tx *tx);

int txm_commit(txm_tx *tx)
{
    int rc = enter_tx(tx, "txm_commit");
    txm_conn *c;
    if (rc)
        return rc;
    c = tx->conn;
    rc = check_end(tx, "txm_commit");
    if (rc == 0)
        rc = commit_level(tx);
    return txm__leave(c, rc);
}

/* The outermost level's COMMIT failed with rc (the thread's error record says why): ends the
 * level. TXM_ECOMMIT_UNKNOWN: no hook runs, we do not know what happened. Otherwise the
 * transaction did not commit: it is rolled back for sure and the on-rollback hooks run. */
static int commit_failed(txm_conn *c, txm_tx *tx, int rc)
{
    txm_err_rec saved;
    txm__err_copy(&saved, txm_error_last());
    if (rc == TXM_ECOMMIT_UNKNOWN) {
        c->server_in_tx = false;
        txm__hooks_discard(&tx->on_commit);
        txm__hooks_discard(&tx->on_rollback);
        pop(c);
        txm__err_copy(txm__err_tls(), &saved.pub);
        return rc;
    }
    /* A failed COMMIT means the transaction did not commit; make sure it is over. */
    {
        txm_tx_status st = server_status(c);
        if (st == TXM_TXS_IDLE || c->broken)
            c->server_in_tx = false;
    }
    rollback_server(c);
    txm__hooks_discard(&tx->on_commit);
    {
        txm_hook_list rb;
        txm__hooks_init(&rb);
        txm__hooks_append(&rb, &tx->on_rollback);
        pop(c);
        run_hooks(c, &rb, "on-rollback");
    }
    txm__err_copy(txm__err_tls(), &saved.pub);
    return rc;
}

static int commit_level(txm_tx *tx)
{
    txm_conn *c = tx->conn;
    txm_tx *bad;
    size_t idx = c->depth - 1;
    int rc;

    bad = failed_ancestor(c, idx);
    if (bad) {
        txm_err_rec cause;
        txm__err_copy(&cause, &bad->fail_err.pub);
        rollback_top(c);
        /* The rollback may have learned the cause's column (txm_driver_late_column): txm__leave
         * writes it into the cause record made here. */
        txm__err_with_cause(TXM_ETX_ABORTED, &cause.pub,
                            "commit failed: the transaction was aborted by an earlier error (%s: %s) and has "
                            "been rolled back",
                            txm_err_name(cause.pub.code), cause.message);
        txm__aborted_sqlstate(c, txm__err_tls());
        return TXM_ETX_ABORTED;
    }

    if (idx > 0) {
        /* Nested level (or the user's outermost level inside a test baseline). */
        txm_tx *parent = c->levels[idx - 1];
        if (tx->owns_sp && tx->started)
            c->pending_release = tx->sp_level;
        if (idx == 1 && c->has_baseline) {
            txm__hooks_append(&c->captured, &tx->on_commit);
            txm__hooks_discard(&tx->on_rollback);
        } else {
            txm__hooks_append(&parent->on_commit, &tx->on_commit);
            txm__hooks_append(&parent->on_rollback, &tx->on_rollback);
        }
        pop(c);
        return 0;
    }

    /* Outermost. */
    c->pending_release = 0;
    if (c->server_in_tx) {
        txm_op op = ctl_op(TXM_OP_COMMIT, 0, NULL);
        txm_tx_status st;
        size_t done;
        rc = drive_status(c, &op, 1, &done, &st);
        if (rc != 0)
            return commit_failed(c, tx, rc);
        c->server_in_tx = false;
        {
            if (st == TXM_TXS_ACTIVE || st == TXM_TXS_FAILED)
                txm__log(c, TXM_LOG_WARN, "server still reports an open transaction after COMMIT");
        }
    }
    txm__hooks_discard(&tx->on_rollback);
    {
        txm_hook_list hooks;
        txm__hooks_init(&hooks);
        txm__hooks_append(&hooks, &tx->on_commit);
        pop(c);
        return run_hooks(c, &hooks, "on-commit");
    }
}

void txm__keeping_error(txm_conn *c, void (*fn)(txm_conn *c))
{
    txm_err_rec err, cause;
    bool has_cause = txm_error_last()->cause != NULL;
    txm__err_copy(&err, txm_error_last());
    if (has_cause)
        txm__err_copy(&cause, txm_error_last()->cause);
    fn(c);
    txm__err_copy(txm__err_tls(), &err.pub);
    if (has_cause) {
        txm__err_copy(txm__err_tls_cause(), &cause.pub);
        txm__err_tls()->pub.cause = &txm__err_tls_cause()->pub;
    }
}

static void rollback_top_void(txm_conn *c) { rollback_top(c); }

static int atomic(txm_conn *c, const txm_tx_options *opts, txm_body_cb body, void *payload)
{
    txm_tx *tx;
    unsigned long gen;
    size_t idx;
    int rc, brc;
    rc = txm_begin(&tx, c, opts);
    if (rc)
        return rc;
    gen = tx->gen;
    idx = c->depth - 1;
    brc = body(c, payload);
    if (c->depth <= idx || c->levels[idx] != tx || !tx->active || tx->gen != gen) {
        while (c->depth > idx)
            rollback_top(c); /* whatever the body opened in place of its level */
        return txm__err(TXM_EMISUSE, "txm_atomic: the body ended the level it was given; it must leave ending it to "
                                     "txm_atomic");
    }
    if (c->depth > idx + 1) {
        size_t left = c->depth - idx - 1;
        while (c->depth > idx + 1)
            rollback_top(c);
        rollback_top(c);
        return txm__err(TXM_EMISUSE, "txm_atomic: the body left %zu inner level%s open; everything was rolled back",
                        left, left == 1 ? "" : "s");
    }
    if (c->closing) {
        /* The body (or a hook it ran) called txm_close: never commit what it did. */
        rollback_top(c);
        return txm__err(TXM_EMISUSE, "txm_atomic: the connection was closed during the body; its work was rolled "
                                     "back, not committed");
    }
    if (brc != 0) {
        txm__keeping_error(c, rollback_top_void); /* the body's error is what txm_atomic reports */
        return brc;
    }
    return txm_commit(tx);
}

int txm__run_level(txm_conn *c, const txm_tx_options *opts, txm_op *app, size_t napp, size_t *failed)
{
    txm_tx *tx = NULL; /* set by begin_level on success; -O3 cannot see that (-Wmaybe-uninitialized) */
    bool outermost;
    int rc;
    *failed = SIZE_MAX;
    if ((rc = begin_level(&tx, c, opts)) != 0)
        return rc;
    /* The real outermost level: BEGIN, the statements and COMMIT travel in one run. Any other
     * level (under a test baseline too) is a savepoint that travels with the statements. */
    outermost = c->depth == 1;
    rc = txm__run_app_ops(c, app, napp, outermost, failed);
    if (rc == 0)
        return commit_level(tx); /* outermost: the COMMIT is done, only the bookkeeping is left */
    /* A failing COMMIT ends the level as txm_commit's would. So does TXM_ECOMMIT_UNKNOWN at a
     * statement: the connection died with the COMMIT already sent behind it, and the answers
     * that were lost may include the COMMIT's: the outcome is unknown. */
    if (outermost && (*failed == napp || rc == TXM_ECOMMIT_UNKNOWN))
        return commit_failed(c, tx, rc);
    txm__keeping_error(c, rollback_top_void); /* the statement's error is what the batch reports */
    return rc;
}

int txm_atomic(txm_conn *c, const txm_tx_options *opts, txm_body_cb body, void *payload)
{
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_atomic: connection is NULL");
    if (!body)
        return txm__err(TXM_EINVALID, "txm_atomic: body is NULL");
    if ((rc = txm__enter(c, "txm_atomic")) != 0)
        return rc;
    return txm__leave(c, atomic(c, opts, body, payload));
}

/* ---- hooks -------------------------------------------------------------------------------- */

static int on_commit(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *))
{
    if (c->depth == 0) {
        txm_hook_list l;
        txm__hooks_init(&l);
        if (txm__hooks_push(&l, fn, payload, free_payload))
            return TXM_ENOMEM;
        return run_hooks(c, &l, "on-commit");
    }
    if (c->depth == 1 && c->has_baseline)
        return txm__hooks_push(&c->captured, fn, payload, free_payload);
    return txm__hooks_push(&top(c)->on_commit, fn, payload, free_payload);
}

int txm_on_commit(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *))
{
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_on_commit: connection is NULL");
    if (!fn)
        return txm__err(TXM_EINVALID, "txm_on_commit: hook function is NULL");
    if ((rc = txm__enter(c, "txm_on_commit")) != 0)
        return rc;
    return txm__leave(c, on_commit(c, fn, payload, free_payload));
}

int txm_on_rollback(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *))
{
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_on_rollback: connection is NULL");
    if (!fn)
        return txm__err(TXM_EINVALID, "txm_on_rollback: hook function is NULL");
    if ((rc = txm__enter(c, "txm_on_rollback")) != 0)
        return rc;
    if (c->depth == 0) {
        if (free_payload)
            free_payload(payload);
        return txm__leave(c, 0);
    }
    return txm__leave(c, txm__hooks_push(&top(c)->on_rollback, fn, payload, free_payload));
}

/* ---- test baseline ------------------------------------------------------------------------ */

/* The test functions that open or end the baseline change levels under a running hook runner. */
static int refuse_in_hook(txm_conn *c, const char *who)
{
    if (c->hooks_running)
        return txm__err(TXM_EMISUSE, "%s: cannot be called from a hook (the baseline must not change while hooks "
                                     "run)", who);
    return 0;
}

int txm_test_baseline(txm_conn *c)
{
    txm_tx *t;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_test_baseline: connection is NULL");
    if ((rc = txm__enter(c, "txm_test_baseline")) != 0)
        return rc;
    if ((rc = refuse_in_hook(c, "txm_test_baseline")) != 0)
        return txm__leave(c, rc);
    if (c->depth > 0)
        return txm__leave(c, txm__err(TXM_EMISUSE, "txm_test_baseline: a transaction is already open (depth %d)",
                                      txm_depth(c)));
    rc = txm_begin(&t, c, NULL);
    if (rc == 0) {
        t->baseline = true;
        c->has_baseline = true;
    }
    return txm__leave(c, rc);
}

size_t txm_test_hook_count(const txm_conn *c) { return c ? c->captured.count : 0; }

int txm_test_run_hooks(txm_conn *c)
{
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_test_run_hooks: connection is NULL");
    if ((rc = txm__enter(c, "txm_test_run_hooks")) != 0)
        return rc;
    return txm__leave(c, run_hooks(c, &c->captured, "on-commit"));
}

int txm_test_end(txm_conn *c)
{
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_test_end: connection is NULL");
    if ((rc = txm__enter(c, "txm_test_end")) != 0)
        return rc;
    if ((rc = refuse_in_hook(c, "txm_test_end")) != 0)
        return txm__leave(c, rc);
    if (!c->has_baseline)
        return txm__leave(c, txm__err(TXM_EMISUSE, "txm_test_end: no test baseline is open"));
    while (c->depth > 0)
        rollback_top(c);
    c->has_baseline = false;
    txm__hooks_discard(&c->captured);
    return txm__leave(c, 0);
}

void txm__tx_close_all(txm_conn *c)
{
    while (c->depth > 0)
        rollback_top(c);
    c->has_baseline = false;
    txm__hooks_discard(&c->captured);
}
