/* txm_batch: several statements, all-or-nothing, in one driver run (docs/semantics.md, "Batches").
 *
 * Every statement is validated and rewritten first (nothing is sent if one is refused). The
 * transaction part is tx.c's: txm__run_level opens a level and hands the driver ONE op list,
 * [BEGIN, S1..Sn, COMMIT] at the user's outermost level, or [pending RELEASE, BEGIN/SAVEPOINTs of
 * levels not started, the batch's SAVEPOINT, S1..Sn] inside a transaction, and then ends the level
 * as txm_commit / txm_rollback would. A pipelining driver sends that list in one flight, so a row
 * lock taken by S1 is held for no client round trip. With a retry policy the whole batch is
 * retried by txm_retry's loop (core/retry.c). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

int txm_batch_options_init(txm_batch_options *opts, unsigned version)
{
    static const txm_batch_options def = TXM_BATCH_OPTIONS_INIT;
    if (!opts)
        return txm__err(TXM_EINVALID, "txm_batch_options_init: opts is NULL");
    if (version != TXM_BATCH_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_batch_options_init: unknown version %u (this txm knows %u)", version,
                        (unsigned)TXM_BATCH_OPTIONS_VERSION);
    *opts = def;
    return 0;
}

typedef struct batch_run {
    txm_batch_stmt *stmts;
    size_t n;
    txm_op *ops;                   /* validated statements, placeholders in the driver's style */
    txm_sql_ref *sql_refs;         /* keep the SQL of ops[i] alive (txm__sql_unref) */
    txm_rows **rows;               /* results of this attempt (statements with rows_out) */
    const txm_tx_options *tx;      /* the batch's own options (outermost level only) */
    const txm_retry_policy *retry; /* its tx is the fallback for `tx` */
    bool outermost;                /* the batch is the user's outermost level */
} batch_run;

static void free_rows(batch_run *b)
{
    size_t i;
    for (i = 0; b->rows && i < b->n; i++) {
        txm_rows_free(b->rows[i]);
        b->rows[i] = NULL;
        if (b->ops)
            b->ops[i].sink = NULL;
    }
}

static void free_run(batch_run *b)
{
    size_t i;
    free_rows(b);
    if (b->sql_refs)
        for (i = 0; i < b->n; i++)
            txm__sql_unref(&b->sql_refs[i]);
    txm__free(b->sql_refs);
    txm__free(b->rows);
    txm__free(b->ops);
}

/* Outputs of a batch that did not (yet) succeed. */
static void reset_outputs(txm_batch_stmt *stmts, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (stmts[i].rows_out)
            *stmts[i].rows_out = NULL;
        stmts[i].affected = -1;
        stmts[i].status = TXM_ECANCELED;
    }
}

/* Puts "txm_batch: <what>: " in front of the thread's error message (once: a message that
 * already starts with "txm_batch: " keeps the rest), keeping every other field of the error
 * (code, SQLSTATE, constraint, flags, cause) as the engine reported it. */
static void annotate(const char *what)
{
    static const char me[] = "txm_batch: ";
    char msg[TXM_ERR_MSG_MAX + 96]; /* room for the prefix: the copy below cuts at the record's size */
    txm_err_rec *e = txm__err_tls();
    const char *rest = e->message;
    if (strncmp(rest, me, sizeof me - 1) == 0)
        rest += sizeof me - 1;
    snprintf(msg, sizeof msg, "%s%.60s%s%s", me, what, what[0] ? ": " : "", rest);
    txm__strlcpy(e->message, msg, sizeof e->message);
}

static void annotate_stmt(size_t i, size_t n)
{
    char what[64];
    snprintf(what, sizeof what, "statement %zu of %zu", i + 1, n);
    annotate(what);
}

/* Validates every statement before anything is sent. */
static int prepare(txm_conn *c, batch_run *b)
{
    size_t i;
    b->ops = txm__calloc(b->n, sizeof *b->ops);
    b->sql_refs = txm__calloc(b->n, sizeof *b->sql_refs);
    b->rows = txm__calloc(b->n, sizeof *b->rows);
    if (!b->ops || !b->sql_refs || !b->rows)
        return txm__err(TXM_ENOMEM, "txm_batch: out of memory (%zu statements)", b->n);
    for (i = 0; i < b->n; i++) {
        const txm_batch_stmt *s = &b->stmts[i];
        int rc = txm__prepare_stmt(c, "txm_batch", s->sql, s->params, s->nparams, &b->ops[i], &b->sql_refs[i]);
        if (rc) {
            b->stmts[i].status = rc;
            annotate_stmt(i, b->n);
            return rc;
        }
    }
    return 0;
}

/* Inside a caller's transaction the batch is a savepoint level: its tx options follow the rules of
 * a nested txm_begin (durable, isolation, read-only, timeouts: TXM_EMISUSE, never silently
 * ignored). The retry policy is ignored there, but a durable promise in its tx is refused too:
 * the caller may still roll the batch's work back. */
static int check_nested(const txm_conn *c, const txm_batch_options *opts)
{
    if (opts->tx)
        return txm__check_nested_tx_options(c, "txm_batch", opts->tx);
    if (!opts->retry || !opts->retry->tx || !(opts->retry->tx->flags & TXM_TX_DURABLE))
        return 0;
    return txm__err(TXM_EMISUSE,
                    "txm_batch: durable transaction options (the retry policy's) inside a transaction (depth %d); "
                    "durable work must own its transaction so that its commit is final",
                    txm_depth(c));
}

/* One attempt: fresh results, the run, and the per-statement outputs. */
static int attempt(txm_conn *c, void *payload)
{
    batch_run *b = payload;
    const txm_tx_options *tx = NULL;
    size_t i, failed;
    int rc;

    free_rows(b);
    reset_outputs(b->stmts, b->n);
    for (i = 0; i < b->n; i++) {
        if (!b->stmts[i].rows_out)
            continue;
        /* Allocated now so that nothing can fail once the COMMIT is done. */
        if (!(b->rows[i] = txm__rows_new())) {
            free_rows(b);
            return txm__err(TXM_ENOMEM, "txm_batch: out of memory (result of statement %zu)", i + 1);
        }
        b->ops[i].sink = txm__rows_sink(b->rows[i]);
    }
    for (i = 0; i < b->n; i++)
        b->ops[i].affected = -1;
    if (b->outermost)
        tx = b->tx ? b->tx : b->retry ? b->retry->tx : NULL;

    rc = txm__run_level(c, tx, b->ops, b->n, &failed);

    if (rc == 0) {
        for (i = 0; i < b->n; i++) {
            txm_batch_stmt *s = &b->stmts[i];
            s->status = 0;
            s->affected = b->ops[i].affected;
            if (s->rows_out) {
                s->affected = (int64_t)txm_rows_count(b->rows[i]);
                *s->rows_out = b->rows[i];
                b->rows[i] = NULL;
                b->ops[i].sink = NULL;
            }
        }
        return 0;
    }
    free_rows(b);
    for (i = 0; i < b->n && failed != SIZE_MAX; i++) {
        txm_batch_stmt *s = &b->stmts[i];
        if (i < failed) {
            s->status = 0; /* executed (and undone with the rest, unless rc is TXM_ECOMMIT_UNKNOWN) */
            s->affected = b->ops[i].affected;
        } else if (rc == TXM_ECOMMIT_UNKNOWN) {
            s->status = rc; /* its answer was lost with the connection: it may have run, and committed */
        } else if (i == failed) {
            s->status = rc;
        }
    }
    if (failed < b->n)
        annotate_stmt(failed, b->n);
    else if (failed == b->n)
        annotate("COMMIT after the statements");
    else
        annotate("");
    return rc;
}

int txm_batch(txm_conn *c, txm_batch_stmt *stmts, size_t n, const txm_batch_options *opts)
{
    static const txm_batch_options def = TXM_BATCH_OPTIONS_INIT;
    batch_run b;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_batch: connection is NULL");
    if (n && !stmts)
        return txm__err(TXM_EINVALID, "txm_batch: stmts is NULL but n is %zu", n);
    if (!opts)
        opts = &def;
    if (opts->version != TXM_BATCH_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_batch: batch options have unknown version %u (this txm knows %u)",
                        opts->version, (unsigned)TXM_BATCH_OPTIONS_VERSION);
    reset_outputs(stmts, n);
    if ((rc = txm__enter(c, "txm_batch")) != 0)
        return rc;
    if (n == 0)
        return txm__leave(c, 0);
    memset(&b, 0, sizeof b);
    b.stmts = stmts;
    b.n = n;
    b.tx = opts->tx;
    b.retry = opts->retry;
    b.outermost = txm_depth(c) == 0;
    if (!b.outermost && (rc = check_nested(c, opts)) != 0)
        return txm__leave(c, rc);
    rc = prepare(c, &b);
    if (rc == 0) {
        if (b.outermost && opts->retry)
            rc = txm__retry_loop(c, opts->retry, "txm_batch", attempt, &b);
        else
            rc = attempt(c, &b);
    }
    free_run(&b);
    return txm__leave(c, rc);
}
