/* Get-or-create by a unique key (docs/billing.md, "Get-or-create").
 *
 * Insert-if-absent, then a locking read, looping until the row is found:
 *  - PostgreSQL, SQLite: INSERT ... ON CONFLICT (key) DO NOTHING RETURNING id. Only a conflict on
 *    that key is absorbed; every other error (FK, NOT NULL, CHECK, another unique key) propagates.
 *  - MySQL/MariaDB have no ON CONFLICT DO NOTHING (and INSERT IGNORE would also swallow FK, NOT NULL
 *    and truncation errors): a plain INSERT in a nested level; on TXM_EUNIQUE the level is rolled
 *    back and the caller's transaction goes on.
 * The read is a locking read (txm_sql_row_lock): on MySQL it sees the newest committed row even in
 * a REPEATABLE READ transaction whose snapshot predates the other writer's insert, and it waits
 * for a writer that has not committed yet. A row deleted between the insert and the read makes the
 * loop go round again. Deadlocks between concurrent inserters (MySQL's next-key locks) lose the
 * transaction: outside a caller's transaction the whole call is retried (bl_run). */
#include "internal.h"

#include <string.h>

/* Rounds before giving up: each round ends in a row found unless another session deletes it
 * between our insert attempt and our read, every time. */
#define GOC_ROUNDS 50

static int mysql_insert(txm_conn *c, const char *sql, const txm_value *p, int64_t *id, int *inserted)
{
    txm_tx *lvl = NULL;
    txm_rows *r = NULL;
    int rc;
    *inserted = 0;
    if ((rc = txm_begin(&lvl, c, NULL)) != 0)
        return rc;
    rc = txm_query(&r, c, sql, p, 1);
    if (rc == TXM_EUNIQUE && !(txm_error_last()->flags & TXM_ERRF_TX_LOST)) {
        txm_rollback(lvl); /* keeps the error record: a failed rollback marks the connection lost */
        return 0;
    }
    if (rc) {
        txm_rollback(lvl);
        return rc;
    }
    if (txm_rows_next(r)) {
        *id = txm_rows_get_i64(r, 0);
        *inserted = 1;
    }
    txm_rows_free(r);
    return txm_commit(lvl);
}

int bl_get_or_create(txm_conn *c, goc *g)
{
    char ins[512], sel[512];
    txm_value p = txm_text(g->key);
    unsigned round;
    int rc;
    if (g->b->engine == BL_MYSQL)
        rc = bl_sql(ins, sizeof ins, "INSERT INTO %s (%s) VALUES (?) RETURNING %s", g->qtable, g->qkey, g->qid);
    else
        rc = bl_sql(ins, sizeof ins, "INSERT INTO %s (%s) VALUES (?) ON CONFLICT (%s) DO NOTHING RETURNING %s",
                    g->qtable, g->qkey, g->qkey, g->qid);
    if (!rc)
        rc = bl_sql(sel, sizeof sel, "SELECT %s FROM %s WHERE %s = ?%s", g->qid, g->qtable, g->qkey,
                    txm_sql_row_lock(c, TXM_ROW_LOCK_SHARE));
    if (rc)
        return rc;
    for (round = 0; round < GOC_ROUNDS; round++) {
        txm_rows *r = NULL;
        int inserted = 0;
        if (g->b->engine == BL_MYSQL) {
            rc = mysql_insert(c, ins, &p, &g->id, &inserted);
        } else {
            rc = txm_query(&r, c, ins, &p, 1);
            if (rc == 0 && txm_rows_next(r)) {
                g->id = txm_rows_get_i64(r, 0);
                inserted = 1;
            }
            txm_rows_free(r);
            r = NULL;
        }
        if (rc)
            return rc;
        if (inserted) {
            g->created = 1;
            return 0;
        }
        rc = txm_query(&r, c, sel, &p, 1);
        if (rc)
            return rc;
        if (txm_rows_next(r)) {
            g->id = txm_rows_get_i64(r, 0);
            g->created = 0;
            txm_rows_free(r);
            return 0;
        }
        txm_rows_free(r); /* deleted since our insert attempt: go round again */
    }
    return txm_error_set(TXM_ENOTFOUND,
                         "get-or-create: the row with key '%.64s' vanished between insert and read %d times in a "
                         "row (concurrent deletes?)",
                         g->key, GOC_ROUNDS);
}

static int goc_body(txm_conn *c, void *payload) { return bl_get_or_create(c, payload); }

int txm_billing_get_or_create(const txm_billing *b, txm_conn *c, const char *table, const char *id_column,
                              const char *key_column, const char *key, int64_t *id_out, int *created_out)
{
    static const char who[] = "txm_billing_get_or_create";
    char qt[BL_NAME_MAX], qi[BL_NAME_MAX], qk[BL_NAME_MAX];
    goc g;
    int rc;
    if (id_out)
        *id_out = 0;
    if (created_out)
        *created_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!id_out)
        return txm_error_set(TXM_EINVALID, "%s: id_out is NULL", who);
    if ((rc = bl_check_text(key, 4000, who, "key")) != 0)
        return rc;
    if ((rc = txm_quote_ident(c, qt, sizeof qt, table)) != 0 || (rc = txm_quote_ident(c, qi, sizeof qi, id_column)) != 0 ||
        (rc = txm_quote_ident(c, qk, sizeof qk, key_column)) != 0)
        return rc; /* the message names txm_quote_ident and what was wrong with the name */
    memset(&g, 0, sizeof g);
    g.b = b;
    g.qtable = qt;
    g.qid = qi;
    g.qkey = qk;
    g.key = key;
    rc = bl_run(b, c, goc_body, &g);
    if (rc)
        return rc;
    *id_out = g.id;
    if (created_out)
        *created_out = g.created;
    return 0;
}
