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
 * transaction: outside a caller's transaction the whole call is retried (bl_run).
 *
 * PostgreSQL and SQLite read first: most calls find the row, and an ON CONFLICT insert that
 * conflicts still draws a sequence value (PostgreSQL), so insert-first would burn an id and a
 * statement on every "get". Not on MySQL: there a locking read of an absent key takes a gap lock,
 * and two sessions creating the same key would then deadlock on their inserts every time.
 *
 * MySQL's TXM_EUNIQUE does not say which key refused the row until we look: a duplicate in
 * another unique index of the table fails every insert while our key's row stays absent, and
 * looping on it would end in a misleading TXM_ENOTFOUND. So when the read after a unique
 * violation finds nothing, the violated index (the error's constraint name) is looked up in
 * information_schema: unless it is a unique index on exactly the key column, the original error
 * propagates, record intact. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Rounds before giving up: each round ends in a row found unless another session deletes it
 * between our insert attempt and our read, every time. */
#define GOC_ROUNDS 50

static int mysql_insert(txm_conn *c, const char *sql, const txm_value *p, int64_t *id, int *inserted, int *dup)
{
    txm_tx *lvl = NULL;
    txm_rows *r = NULL;
    int rc, rb;
    *inserted = *dup = 0;
    if ((rc = txm_begin(&lvl, c, NULL)) != 0)
        return rc;
    rc = txm_query(&r, c, sql, p, 1);
    if (rc) {
        /* The rollback keeps the statement's error record; if it fails, the connection is lost
         * and that is what the caller must hear. */
        rb = txm_rollback(lvl);
        if (rb)
            return rb;
        if (rc == TXM_EUNIQUE && !(txm_error_last()->flags & TXM_ERRF_TX_LOST)) {
            *dup = 1;
            return 0;
        }
        return rc;
    }
    if (txm_rows_next(r)) {
        *id = txm_rows_get_i64(r, 0);
        *inserted = 1;
    }
    txm_rows_free(r);
    return txm_commit(lvl);
}

/* An identifier as the catalog spells it: `a``b` -> a`b; an unquoted name as it is. */
static void unquote(char *dst, size_t size, const char *q)
{
    size_t n = 0;
    char open = q[0] == '`' || q[0] == '"' ? q[0] : 0;
    if (!open) {
        snprintf(dst, size, "%s", q);
        return;
    }
    for (q++; *q && n + 1 < size; q++) {
        if (*q == open) {
            if (q[1] != open)
                break;
            q++;
        }
        dst[n++] = *q;
    }
    dst[n] = '\0';
}

/* After a unique violation on MySQL with our key's row absent: was the violated index a unique
 * index on exactly the key column (*ours = 1: a concurrent delete, go round again)? An unknown
 * index name (an unparsed message) counts as ours. Never touches the error record on success. */
static int mysql_dup_is_ours(txm_conn *c, const goc *g, int *ours)
{
    static const char sql[] =
        "SELECT COUNT(*), COALESCE(SUM(COLUMN_NAME = ?), 0) FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ? AND NON_UNIQUE = 0";
    const char *index = txm_error_last()->constraint_name;
    char table[BL_NAME_MAX], column[BL_NAME_MAX], idx[BL_NAME_MAX];
    txm_value p[3];
    txm_rows *r = NULL;
    int rc;
    *ours = 1;
    if (!index[0])
        return 0;
    snprintf(idx, sizeof idx, "%s", index);
    unquote(table, sizeof table, g->qtable);
    unquote(column, sizeof column, g->qkey);
    p[0] = txm_text(column);
    p[1] = txm_text(table);
    p[2] = txm_text(idx);
    if ((rc = txm_query(&r, c, sql, p, 3)) != 0)
        return rc;
    if (txm_rows_next(r))
        *ours = txm_rows_get_i64(r, 0) == 1 && txm_rows_get_i64(r, 1) == 1;
    txm_rows_free(r);
    return 0;
}

/* The locking read of the key's row: *found and *id. A missing row is no error (the record of a
 * unique violation we may still propagate stays intact). */
static int locked_read(txm_conn *c, const char *sel, const txm_value *p, int64_t *id, int *found)
{
    txm_rows *r = NULL;
    int rc = txm_query(&r, c, sel, p, 1);
    if (rc)
        return rc;
    *found = txm_rows_next(r);
    if (*found)
        *id = txm_rows_get_i64(r, 0);
    txm_rows_free(r);
    return 0;
}

int bl_get_or_create(txm_conn *c, goc *g)
{
    /* Four quoted names of up to 129 bytes each (txm_quote_ident) plus the statement. */
    char ins[1024], sel[1024];
    txm_value p = txm_text(g->key);
    unsigned round;
    int dup = 0, rc;
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
    if (g->b->engine != BL_MYSQL) {
        int found = 0;
        if ((rc = locked_read(c, sel, &p, &g->id, &found)) != 0 || found) {
            g->created = 0;
            return rc;
        }
    }
    for (round = 0; round < GOC_ROUNDS; round++) {
        txm_rows *r = NULL;
        int inserted = 0, found = 0, ours = 1;
        if (g->b->engine == BL_MYSQL) {
            rc = mysql_insert(c, ins, &p, &g->id, &inserted, &dup);
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
        if ((rc = locked_read(c, sel, &p, &g->id, &found)) != 0)
            return rc;
        if (found) {
            g->created = 0;
            return 0;
        }
        /* Absent. After a MySQL unique violation: on our key (deleted since: go round again), or
         * on another unique index (propagate it: it will fail every round). */
        if (dup && (rc = mysql_dup_is_ours(c, g, &ours)) != 0)
            return rc;
        if (!ours)
            return TXM_EUNIQUE; /* the insert's record, untouched since */
    }
    if (dup)
        return TXM_EUNIQUE; /* the last round's unique violation, record intact */
    return txm_error_set(TXM_ENOTFOUND,
                         "get-or-create: the row with key '%.64s' vanished between insert and read %d times in a "
                         "row (concurrent deletes?)",
                         g->key, GOC_ROUNDS);
}

static int goc_body(txm_conn *c, void *payload) { return bl_get_or_create(c, payload); }

/* A caller-supplied identifier, quoted for c's engine; the refusal names the function and which
 * name was wrong, and quotes txm_quote_ident's reason. */
static int quote_name(txm_conn *c, char buf[BL_NAME_MAX], const char *name, const char *who, const char *what)
{
    char why[256];
    int rc;
    if (!name)
        return txm_error_set(TXM_EINVALID, "%s: %s name is NULL", who, what);
    if ((rc = txm_quote_ident(c, buf, BL_NAME_MAX, name)) == 0)
        return 0;
    snprintf(why, sizeof why, "%s", txm_error_last()->message); /* txm_error_set overwrites it */
    return txm_error_set(rc, "%s: bad %s name: %s", who, what, why);
}

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
    if ((rc = quote_name(c, qt, table, who, "table")) != 0 || (rc = quote_name(c, qi, id_column, who, "id column")) != 0 ||
        (rc = quote_name(c, qk, key_column, who, "key column")) != 0)
        return rc;
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
