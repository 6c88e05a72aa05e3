/* txm_batch: several statements, all-or-nothing (docs/semantics.md, "Batches").
 * First implementation: a level (txm_atomic / txm_retry) running the statements one by one.
 * TODO(batch one flight): hand the whole batch to the driver in one run. */
#include "internal.h"

#include <string.h>

int txm_batch_options_init(txm_batch_options *opts, unsigned version)
{
    static const txm_batch_options def = TXM_BATCH_OPTIONS_INIT;
    if (!opts)
        return txm__err(TXM_EINVALID, "txm_batch_options_init: opts is NULL");
    if (version != TXM_BATCH_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_batch_options_init: unknown version %u", version);
    *opts = def;
    return 0;
}

typedef struct batch_run {
    txm_batch_stmt *stmts;
    size_t n;
} batch_run;

static void reset(txm_batch_stmt *stmts, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (stmts[i].rows_out) {
            txm_rows_free(*stmts[i].rows_out);
            *stmts[i].rows_out = NULL;
        }
        stmts[i].affected = -1;
        stmts[i].status = TXM_ECANCELED;
    }
}

static int batch_body(txm_conn *c, void *payload)
{
    batch_run *b = payload;
    size_t i;
    reset(b->stmts, b->n);
    for (i = 0; i < b->n; i++) {
        txm_batch_stmt *s = &b->stmts[i];
        int rc;
        if (s->rows_out)
            rc = txm_query(s->rows_out, c, s->sql, s->params, s->nparams);
        else
            rc = txm_exec(c, s->sql, s->params, s->nparams, &s->affected);
        if (rc == 0 && s->rows_out)
            s->affected = (int64_t)txm_rows_count(*s->rows_out);
        s->status = rc;
        if (rc)
            return rc;
    }
    return 0;
}

int txm_batch(txm_conn *c, txm_batch_stmt *stmts, size_t n, const txm_batch_options *opts)
{
    static const txm_batch_options def = TXM_BATCH_OPTIONS_INIT;
    batch_run b;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_batch: connection is NULL");
    if (n && !stmts)
        return txm__err(TXM_EINVALID, "txm_batch: stmts is NULL");
    if (!opts)
        opts = &def;
    if (opts->version != TXM_BATCH_OPTIONS_VERSION)
        return txm__err(TXM_EINVALID, "txm_batch: unknown options version %u", opts->version);
    if (n == 0)
        return 0;
    b.stmts = stmts;
    b.n = n;
    reset(stmts, n);
    if ((rc = txm__enter(c, "txm_batch")) != 0)
        return rc;
    if (txm_depth(c) == 0 && opts->retry) {
        txm_retry_policy p = *opts->retry;
        if (opts->tx)
            p.tx = opts->tx;
        rc = txm_retry(c, &p, batch_body, &b);
    } else {
        rc = txm_atomic(c, txm_depth(c) == 0 ? opts->tx : NULL, batch_body, &b);
    }
    if (rc) {
        size_t i;
        for (i = 0; i < n; i++)
            if (stmts[i].rows_out) {
                txm_rows_free(*stmts[i].rows_out);
                *stmts[i].rows_out = NULL;
            }
    }
    return txm__leave(c, rc);
}
