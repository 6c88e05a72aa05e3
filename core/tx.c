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
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static txm_tx *top(txm_conn *c) { return c->depth ? c->levels[c->depth - 1] : NULL; }

/* Index of the nearest level at or below index i that owns a savepoint (levels[0] always does). */
static size_t owner_index(const txm_conn *c, size_t i)
{
    while (i > 0 && !c->levels[i]->owns_sp)
        i--;
    return i;
}

/* The outermost failed level at or below index i, or NULL. */
static txm_tx *failed_ancestor(const txm_conn *c, size_t i)
{
    size_t j;
    for (j = 0; j <= i && j < c->depth; j++) {
        if (c->levels[j]->failed)
            return c->levels[j];
    }
    return NULL;
}

/* User-visible outermost level: index 0, or 1 under a test baseline. */
static size_t user_base(const txm_conn *c) { return c->has_baseline ? 1u : 0u; }

static void mark_failed(txm_tx *t, const txm_error *err)
{
    if (t->failed)
        return; /* keep the first cause */
    t->failed = true;
    txm__err_copy(&t->fail_err, err);
}

int txm_tx_options_init(txm_tx_options *opts, unsigned version)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    if (!opts)
        return txm__err(TXM_EINVALID, "txm_tx_options_init: options are NULL");
    if (version != TXM_TX_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_tx_options_init: unknown version %u (this txm knows %u)", version,
                        (unsigned)TXM_TX_OPTIONS_VERSION);
    *opts = def;
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
    if (txm_depth(c) == 0)
        return txm__err(TXM_EMISUSE, "%s must run inside a transaction, but none is open", who ? who : "this code");
    return 0;
}

int txm_forbid_transaction(txm_conn *c, const char *who)
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_forbid_transaction: connection is NULL");
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

/* Runs ops through the driver and accounts for them. */
static int drive(txm_conn *c, txm_op *ops, size_t n, size_t *completed)
{
    txm_run_result res;
    const txm_url *scope;
    int rc;
    memset(&res, 0, sizeof res);
    scope = txm__scrub_scope(c->url);
    rc = c->drv->run(c->dc, ops, n, &res);
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
    if (drive(c, &op, 1, &done) != 0)
        txm__log(c, TXM_LOG_WARN, "ROLLBACK failed: %s", txm_error_last()->message);
    c->server_in_tx = false;
    txm__err_copy(txm__err_tls(), &saved.pub);
}

int txm__run_app_op(txm_conn *c, txm_op *app)
{
    size_t n = 0, i, completed = 0, first_level_op, app_idx;
    txm_tx *bad;
    txm_tx_status st;
    /* Under a test baseline with no user level, the application is "outside a transaction": its
     * statement runs in a savepoint of its own so that a failure does not doom the baseline. */
    bool autocommit_sp = c->has_baseline && c->depth == 1;
    int rc;

    if (c->depth > 0 && (bad = failed_ancestor(c, c->depth - 1)) != NULL) {
        c->stats.refused++;
        return txm__err_with_cause(TXM_ETX_ABORTED, &bad->fail_err.pub,
                                   "statement refused: the transaction is aborted by an earlier error (%s: %s); roll "
                                   "back to the level that failed",
                                   txm_err_name(bad->fail_err.pub.code), bad->fail_err.message);
    }
    if (c->broken)
        return txm__err(TXM_ECONNECTION, "the connection was lost earlier; call txm_reconnect (after rolling back)");
    if (ensure_ops(c, c->depth + 4))
        return TXM_ENOMEM;

    if (c->pending_release && c->server_in_tx)
        c->ops[n++] = ctl_op(TXM_OP_RELEASE, c->pending_release, NULL);
    first_level_op = n;
    for (i = 0; i < c->depth; i++) {
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
    c->ops[n++] = *app;
    if (autocommit_sp)
        c->ops[n++] = ctl_op(TXM_OP_RELEASE, 1, NULL);

    rc = drive(c, c->ops, n, &completed);
    *app = c->ops[app_idx]; /* affected count, sink */

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

    st = server_status(c);
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

int txm_begin(txm_tx **out, txm_conn *c, const txm_tx_options *opts)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    txm_tx *t;
    bool user_outermost;

    if (out)
        *out = NULL;
    if (!out)
        return txm__err(TXM_EINVALID, "txm_begin: out is NULL");
    if (!c)
        return txm__err(TXM_EINVALID, "txm_begin: connection is NULL");
    if (!opts)
        opts = &def;
    if (opts->version != TXM_TX_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_begin: transaction options have unknown version %u (this txm knows %u)",
                        opts->version, (unsigned)TXM_TX_OPTIONS_VERSION);
    if (opts->flags & ~(unsigned)(TXM_TX_DURABLE | TXM_TX_JOIN | TXM_TX_READ_ONLY | TXM_TX_DEFERRABLE))
        return txm__err(TXM_EINVALID, "txm_begin: unknown flags 0x%x", opts->flags);
    if ((unsigned)opts->isolation > (unsigned)TXM_ISOLATION_SERIALIZABLE)
        return txm__err(TXM_EINVALID, "txm_begin: unknown isolation level %d", (int)opts->isolation);
    user_outermost = c->depth == user_base(c);
    if ((opts->flags & TXM_TX_DURABLE) && !user_outermost)
        return txm__err(TXM_EMISUSE,
                        "txm_begin: a durable block was opened inside a transaction (depth %d); durable code must "
                        "own its transaction so that its commit is final",
                        txm_depth(c));
    if ((opts->flags & TXM_TX_JOIN) && user_outermost)
        return txm__err(TXM_EMISUSE, "txm_begin: TXM_TX_JOIN needs an enclosing level to join, but none is open");
    if (!user_outermost && (opts->isolation != TXM_ISOLATION_DEFAULT ||
                            (opts->flags & (TXM_TX_READ_ONLY | TXM_TX_DEFERRABLE))))
        return txm__err(TXM_EMISUSE,
                        "txm_begin: isolation level, read-only and deferrable can only be set on the outermost "
                        "level (depth is %d)",
                        txm_depth(c));
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
    t->active = true;
    txm__hooks_init(&t->on_commit);
    txm__hooks_init(&t->on_rollback);
    c->depth++;
    *out = t;
    return 0;
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
}

/* Runs hooks and turns failures into TXM_EHOOK (rc stays 0 when all succeed). */
static int run_hooks(txm_conn *c, txm_hook_list *l, const char *what)
{
    txm_err_rec first;
    size_t total = l->count, failed;
    if (!total)
        return 0;
    failed = txm__hooks_run(l, c, &first);
    if (!failed)
        return 0;
    txm__log(c, TXM_LOG_WARN, "%zu of %zu %s hooks failed; first: %s", failed, total, what, first.message);
    return txm__err_with_cause(TXM_EHOOK, &first.pub, "%s, but %zu of %zu %s hook%s failed; first: %s",
                               strcmp(what, "on-commit") == 0 ? "committed" : "rolled back", failed, total, what,
                               total == 1 ? "" : "s", first.message);
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

int txm_rollback(txm_tx *tx)
{
    int rc = check_end(tx, "txm_rollback");
    if (rc)
        return rc;
    return rollback_top(tx->conn);
}

int txm_commit(txm_tx *tx)
{
    txm_conn *c;
    txm_tx *bad;
    size_t idx;
    int rc = check_end(tx, "txm_commit");
    if (rc)
        return rc;
    c = tx->conn;
    idx = c->depth - 1;

    bad = failed_ancestor(c, idx);
    if (bad) {
        txm_err_rec cause;
        txm__err_copy(&cause, &bad->fail_err.pub);
        rollback_top(c);
        return txm__err_with_cause(TXM_ETX_ABORTED, &cause.pub,
                                   "commit failed: the transaction was aborted by an earlier error (%s: %s) and has "
                                   "been rolled back",
                                   txm_err_name(cause.pub.code), cause.message);
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
        size_t done;
        rc = drive(c, &op, 1, &done);
        if (rc != 0) {
            txm_err_rec saved;
            txm__err_copy(&saved, txm_error_last());
            if (rc == TXM_ECOMMIT_UNKNOWN) {
                /* Neither kind of hook may run: we do not know what happened. */
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
        c->server_in_tx = false;
        {
            txm_tx_status st = server_status(c);
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

int txm_atomic(txm_conn *c, const txm_tx_options *opts, txm_body_cb body, void *payload)
{
    txm_tx *tx;
    unsigned long gen;
    size_t idx;
    int rc, brc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_atomic: connection is NULL");
    if (!body)
        return txm__err(TXM_EINVALID, "txm_atomic: body is NULL");
    rc = txm_begin(&tx, c, opts);
    if (rc)
        return rc;
    gen = tx->gen;
    idx = c->depth - 1;
    brc = body(c, payload);
    if (c->depth <= idx || c->levels[idx] != tx || !tx->active || tx->gen != gen) {
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
    if (brc != 0) {
        txm_err_rec saved;
        txm__err_copy(&saved, txm_error_last());
        const txm_error *cause = txm_error_last()->cause;
        txm_err_rec cause_copy;
        bool had_cause = cause != NULL;
        if (had_cause)
            txm__err_copy(&cause_copy, cause);
        rollback_top(c);
        if (had_cause)
            txm__err_with_cause(saved.pub.code, &cause_copy.pub, "%s", saved.message);
        else
            txm__err_copy(txm__err_tls(), &saved.pub);
        return brc;
    }
    return txm_commit(tx);
}

/* ---- hooks -------------------------------------------------------------------------------- */

int txm_on_commit(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *))
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_on_commit: connection is NULL");
    if (!fn)
        return txm__err(TXM_EINVALID, "txm_on_commit: hook function is NULL");
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

int txm_on_rollback(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *))
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_on_rollback: connection is NULL");
    if (!fn)
        return txm__err(TXM_EINVALID, "txm_on_rollback: hook function is NULL");
    if (c->depth == 0) {
        if (free_payload)
            free_payload(payload);
        return 0;
    }
    return txm__hooks_push(&top(c)->on_rollback, fn, payload, free_payload);
}

/* ---- test baseline ------------------------------------------------------------------------ */

int txm_test_baseline(txm_conn *c)
{
    txm_tx *t;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_test_baseline: connection is NULL");
    if (c->depth > 0)
        return txm__err(TXM_EMISUSE, "txm_test_baseline: a transaction is already open");
    rc = txm_begin(&t, c, NULL);
    if (rc)
        return rc;
    t->baseline = true;
    c->has_baseline = true;
    return 0;
}

size_t txm_test_hook_count(const txm_conn *c) { return c ? c->captured.count : 0; }

int txm_test_run_hooks(txm_conn *c)
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_test_run_hooks: connection is NULL");
    return run_hooks(c, &c->captured, "on-commit");
}

int txm_test_end(txm_conn *c)
{
    if (!c)
        return txm__err(TXM_EINVALID, "txm_test_end: connection is NULL");
    if (!c->has_baseline)
        return txm__err(TXM_EMISUSE, "txm_test_end: no test baseline is open");
    while (c->depth > 0)
        rollback_top(c);
    c->has_baseline = false;
    txm__hooks_discard(&c->captured);
    return 0;
}

void txm__tx_close_all(txm_conn *c)
{
    while (c->depth > 0)
        rollback_top(c);
    c->has_baseline = false;
    txm__hooks_discard(&c->captured);
}
