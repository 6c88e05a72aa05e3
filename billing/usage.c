/* Usage snapshots with FK-null retry (docs/billing.md, "Usage snapshots").
 *
 * The incident: an api key (or upstream) is deleted, its ON DELETE SET NULL cascade runs, and a
 * writer that read the key's id just before inserts a snapshot still referencing it: the insert
 * fails with a foreign-key error and the whole request is lost. Here the insert runs in its own
 * nested level; when it fails on the api-key or upstream reference, the level is rolled back (the
 * caller's transaction goes on), the vanished reference is set NULL and the insert retried once,
 * at once. The decision is taken by the violated constraint (its name on PostgreSQL and MariaDB),
 * on SQLite, which names none, by looking at which parent row is missing while the write lock
 * the failed insert ran under is still held (so the look sees exactly what the insert saw).
 *
 * Quota: the api key's quota_used is raised *before* the insert, in the same level. That UPDATE
 * locks the key row, so it cannot be deleted before we commit and the insert cannot fail on it
 * afterwards; if the key is already gone the UPDATE changes nothing, the insert fails on
 * usage_api_key_fk and is retried with NULL: no quota is ever charged to a key the snapshot does
 * not reference. (Updating after the insert would deadlock on MySQL: InnoDB's FK check takes a
 * shared lock on the key row, and two recorders of one key would both wait to upgrade it.) */
#include "internal.h"

#include <stdint.h>
#include <string.h>

/* ---- schema ---------------------------------------------------------------------------------- */

int bl_usage_create(const txm_billing *b, txm_conn *c)
{
    const char *p = b->prefix;
    const char *text = b->engine == BL_SQLITE ? "TEXT" : "VARCHAR(200)";
    /* SQLite reuses the largest rowid after it is deleted: a snapshot whose key was deleted could
     * then reference (and charge) a new, unrelated key. AUTOINCREMENT never reuses an id; the
     * server engines' sequences never do either. */
    const char *noreuse = b->engine == BL_SQLITE ? " AUTOINCREMENT" : "";
    char sql[2048];
    int rc;
    rc = bl_sql(sql, sizeof sql,
                "CREATE TABLE IF NOT EXISTS %s (%s%s, name %s NOT NULL, quota_used BIGINT NOT NULL DEFAULT 0)%s",
                b->t.api_keys, bl_id_ddl(b), noreuse, text, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    if (!rc)
        rc = bl_sql(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s (%s%s, name %s NOT NULL)%s", b->t.upstreams,
                    bl_id_ddl(b), noreuse, text, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    /* account_id has no ON DELETE action: an account is never deleted under its usage, so a
     * failure on it is a caller's error and is not retried. */
    if (!rc)
        rc = bl_sql(sql, sizeof sql,
                    "CREATE TABLE IF NOT EXISTS %s (%s, account_id BIGINT NULL, api_key_id BIGINT NULL, "
                    "upstream_id BIGINT NULL, units BIGINT NOT NULL, "
                    "CONSTRAINT %susage_account_fk FOREIGN KEY (account_id) REFERENCES %s (id), "
                    "CONSTRAINT %susage_api_key_fk FOREIGN KEY (api_key_id) REFERENCES %s (id) ON DELETE SET NULL, "
                    "CONSTRAINT %susage_upstream_fk FOREIGN KEY (upstream_id) REFERENCES %s (id) "
                    "ON DELETE SET NULL, "
                    "CONSTRAINT %susage_units_nonneg CHECK (units >= 0))%s",
                    b->t.usage, bl_id_ddl(b), p, b->t.accounts, p, b->t.api_keys, p, b->t.upstreams, p,
                    bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    /* ON DELETE SET NULL looks the children up by the referencing column: without an index every
     * key deletion scans the whole usage table. InnoDB indexes foreign-key columns itself. */
    if (!rc && b->engine != BL_MYSQL) {
        static const char *const cols[] = {"api_key_id", "upstream_id"};
        static const char *const names[] = {"usage_api_key_idx", "usage_upstream_idx"};
        size_t i;
        for (i = 0; i < 2 && !rc; i++) {
            rc = bl_sql(sql, sizeof sql, "CREATE INDEX IF NOT EXISTS %s%s ON %s (%s)", p, names[i], b->t.usage,
                        cols[i]);
            if (!rc)
                rc = txm_exec(c, sql, NULL, 0, NULL);
        }
    }
    return rc;
}

int bl_usage_drop(const txm_billing *b, txm_conn *c)
{
    int rc = bl_drop_table(c, b->t.usage);
    if (!rc)
        rc = bl_drop_table(c, b->t.upstreams);
    return rc ? rc : bl_drop_table(c, b->t.api_keys);
}

/* ---- api keys and upstreams ------------------------------------------------------------------ */

static int named_create(const txm_billing *b, txm_conn *c, const char *who, const char *qtable, const char *name,
                        int64_t *id_out)
{
    char sql[256];
    txm_value p;
    int rc;
    if (id_out)
        *id_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!id_out)
        return txm_error_set(TXM_EINVALID, "%s: id_out is NULL", who);
    if ((rc = bl_check_text(name, 200, who, "name")) != 0)
        return rc;
    if ((rc = bl_sql(sql, sizeof sql, "INSERT INTO %s (name) VALUES (?) RETURNING id", qtable)) != 0)
        return rc;
    p = txm_text(name);
    return bl_insert_id(b, c, sql, &p, 1, id_out);
}

int txm_billing_api_key_create(const txm_billing *b, txm_conn *c, const char *name, int64_t *id_out)
{
    return named_create(b, c, "txm_billing_api_key_create", b ? b->t.api_keys : NULL, name, id_out);
}

int txm_billing_upstream_create(const txm_billing *b, txm_conn *c, const char *name, int64_t *id_out)
{
    return named_create(b, c, "txm_billing_upstream_create", b ? b->t.upstreams : NULL, name, id_out);
}

/* ---- usage snapshots ------------------------------------------------------------------------- */

/* The references of a snapshot, in the order SQLite's probe checks them. */
enum { REF_ACCOUNT, REF_API_KEY, REF_UPSTREAM, REF_N };

typedef struct usage_call {
    const txm_billing *b;
    txm_billing_usage in;
    char insert_sql[512];
    char quota_sql[256];          /* raises quota_used unless that would leave the int64 range */
    char probe_sql[REF_N][256];   /* does the parent row exist? (locking read) */
    char fk_name[REF_N][64];      /* constraint names, unquoted, as created */
    txm_billing_usage_result res;
} usage_call;

static txm_value ref_value(int64_t id) { return id ? txm_int(id) : txm_null(); }

/* ASCII case-insensitive equality: PostgreSQL folds the unquoted constraint names of the DDL to
 * lower case, and the prefix may have upper-case letters. */
static int same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a - 'A' + 'a') : *a;
        char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b - 'A' + 'a') : *b;
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static int insert_row(txm_conn *c, const usage_call *u, const int64_t ref[REF_N], int64_t *id)
{
    txm_value p[4];
    p[0] = ref_value(ref[REF_ACCOUNT]);
    p[1] = ref_value(ref[REF_API_KEY]);
    p[2] = ref_value(ref[REF_UPSTREAM]);
    p[3] = txm_int(u->in.units);
    return txm_query_i64(c, id, u->insert_sql, p, 4);
}

/* The first attempt, in a nested level of its own so that its failure can be undone without
 * undoing the caller's work (a savepoint: on PostgreSQL a failed statement would otherwise doom
 * the whole transaction). txm_rollback keeps the statement's error record. */
static int insert_in_level(txm_conn *c, const usage_call *u, const int64_t ref[REF_N], int64_t *id)
{
    txm_tx *lvl = NULL;
    int rc, rb;
    if ((rc = txm_begin(&lvl, c, NULL)) != 0)
        return rc;
    rc = insert_row(c, u, ref, id);
    if (rc == 0)
        return txm_commit(lvl);
    rb = txm_rollback(lvl);
    /* A failed rollback lost the connection: that, not the insert's error, is what counts now. */
    return rb ? rb : rc;
}

/* Does the row referenced by ref[i] exist? A locking read: it sees the newest committed row even in
 * a REPEATABLE READ snapshot on MySQL, and it keeps a surviving parent from being deleted before
 * we commit, so the retry cannot fail on it. On SQLite it is a plain read under the write lock. */
static int probe(txm_conn *c, const usage_call *u, int i, int64_t id, int *gone)
{
    txm_value p = txm_int(id);
    txm_rows *r = NULL;
    /* txm_query, not txm_query_i64: "no row" is an answer here, not an error, and must not
     * overwrite the error record of the insert we may still propagate. */
    int rc = txm_query(&r, c, u->probe_sql[i], &p, 1);
    if (rc)
        return rc;
    *gone = !txm_rows_next(r);
    txm_rows_free(r);
    return 0;
}

/* After the first insert failed with TXM_EFOREIGN_KEY (its record still in txm_error_last()):
 * decides which references vanished (gone[i] = 1), or returns the error to propagate. Queries made
 * here succeed without touching the error record, so returning e->code propagates the original
 * error with every field intact; only a failing probe (a lost connection) replaces it. */
static int vanished(txm_conn *c, const usage_call *u, const int64_t ref[REF_N], int gone[REF_N])
{
    const txm_error *e = txm_error_last();
    int known[REF_N] = {0, 0, 0};
    int i, rc;
    if (u->b->engine != BL_SQLITE) {
        /* The engine named the constraint. The account reference is never nullable: an FK error on
         * it (or on any constraint we do not know, e.g. one the user added) propagates. */
        if (same_name(e->constraint_name, u->fk_name[REF_API_KEY]))
            i = REF_API_KEY;
        else if (same_name(e->constraint_name, u->fk_name[REF_UPSTREAM]))
            i = REF_UPSTREAM;
        else
            return e->code;
        gone[i] = known[i] = 1;
        known[REF_ACCOUNT] = 1; /* not probed: if it is gone too, the retry fails on it by name */
    }
    /* SQLite: every reference; elsewhere the other nullable one, which may have vanished in the same
     * race (both deleted): nulling it now keeps the single retry from failing on it. */
    for (i = 0; i < REF_N; i++) {
        if (!ref[i] || known[i])
            continue;
        if ((rc = probe(c, u, i, ref[i], &gone[i])) != 0)
            return rc;
    }
    if (u->b->engine == BL_SQLITE && (gone[REF_ACCOUNT] || (!gone[REF_API_KEY] && !gone[REF_UPSTREAM])))
        return e->code; /* the account, or a constraint we do not know: the original error */
    return 0;
}

/* Raises the key's quota_used by units; *charged = 0 if the key no longer exists. */
static int charge(txm_conn *c, const usage_call *u, int *charged)
{
    txm_value p[3];
    int64_t affected = 0;
    int gone = 0;
    int rc;
    p[0] = txm_int(u->in.units);
    p[1] = txm_int(u->in.api_key_id);
    p[2] = txm_int(INT64_MAX - u->in.units);
    *charged = 0;
    if ((rc = txm_exec(c, u->quota_sql, p, 3, &affected)) != 0)
        return rc;
    if (affected == 1) {
        *charged = 1;
        return 0;
    }
    /* Nothing changed: the key is gone (the insert will fail on it and be retried with NULL), or
     * its quota would leave the int64 range (SQLite would silently turn it into a REAL). */
    if ((rc = probe(c, u, REF_API_KEY, u->in.api_key_id, &gone)) != 0)
        return rc;
    if (!gone)
        return txm_error_set(TXM_EDATA,
                             "txm_billing_usage_record: api key %lld: quota_used + %lld would exceed the int64 range",
                             (long long)u->in.api_key_id, (long long)u->in.units);
    return 0;
}

static int usage_body(txm_conn *c, void *payload)
{
    usage_call *u = payload;
    int64_t ref[REF_N];
    int gone[REF_N] = {0, 0, 0};
    int64_t id = 0;
    int charged = 0, i, rc;
    memset(&u->res, 0, sizeof u->res); /* a retried attempt starts afresh */
    ref[REF_ACCOUNT] = u->in.account_id;
    ref[REF_API_KEY] = u->in.api_key_id;
    ref[REF_UPSTREAM] = u->in.upstream_id;
    /* A negative units value skips the charge: the insert's CHECK refuses it and that error is
     * the caller's answer. */
    if (u->in.api_key_id && u->in.units > 0 && (rc = charge(c, u, &charged)) != 0)
        return rc;
    rc = insert_in_level(c, u, ref, &id);
    if (rc == TXM_EFOREIGN_KEY && !(txm_error_last()->flags & TXM_ERRF_TX_LOST)) {
        if ((rc = vanished(c, u, ref, gone)) != 0)
            return rc;
        for (i = 0; i < REF_N; i++)
            if (gone[i])
                ref[i] = 0;
        u->res.retried = 1;
        /* Exactly once, at once: nothing to wait for, the parent is gone for good. In the body's
         * level: if this fails too, the whole call's level is undone (quota included). */
        rc = insert_row(c, u, ref, &id);
    }
    if (rc)
        return rc;
    if (charged && !ref[REF_API_KEY])
        /* Impossible: the charge locked the key row. Refuse rather than leave a ghost quota. */
        return txm_error_set(TXM_ESTATE, "txm_billing_usage_record: api key %lld was charged but nulled",
                             (long long)u->in.api_key_id);
    if (ref[REF_API_KEY] && u->in.units > 0 && !charged)
        /* The key was missing when charged, yet the row referencing it was accepted: foreign keys
         * are not enforced (an SQLite connection opened with foreign_keys=off). */
        return txm_error_set(TXM_ESTATE,
                             "txm_billing_usage_record: api key %lld does not exist but the snapshot referencing it "
                             "was accepted: foreign keys are not enforced on this connection",
                             (long long)u->in.api_key_id);
    u->res.id = id;
    u->res.api_key_id = ref[REF_API_KEY];
    u->res.upstream_id = ref[REF_UPSTREAM];
    u->res.quota_delta = charged ? u->in.units : 0;
    return 0;
}

static int usage_prepare(usage_call *u, const txm_conn *c)
{
    const txm_billing *b = u->b;
    static const char *const suffix[REF_N] = {"usage_account_fk", "usage_api_key_fk", "usage_upstream_fk"};
    const char *parent[REF_N];
    const char *lock = txm_sql_row_lock(c, TXM_ROW_LOCK_SHARE);
    int i, rc;
    parent[REF_ACCOUNT] = b->t.accounts;
    parent[REF_API_KEY] = b->t.api_keys;
    parent[REF_UPSTREAM] = b->t.upstreams;
    rc = bl_sql(u->insert_sql, sizeof u->insert_sql,
                "INSERT INTO %s (account_id, api_key_id, upstream_id, units) VALUES (?, ?, ?, ?) RETURNING id",
                b->t.usage);
    if (!rc)
        rc = bl_sql(u->quota_sql, sizeof u->quota_sql,
                    "UPDATE %s SET quota_used = quota_used + ? WHERE id = ? AND quota_used <= ?", b->t.api_keys);
    for (i = 0; i < REF_N && !rc; i++) {
        rc = bl_sql(u->probe_sql[i], sizeof u->probe_sql[i], "SELECT 1 FROM %s WHERE id = ?%s", parent[i], lock);
        if (!rc)
            rc = bl_sql(u->fk_name[i], sizeof u->fk_name[i], "%s%s", b->prefix, suffix[i]);
    }
    return rc;
}

int txm_billing_usage_record(const txm_billing *b, txm_conn *c, const txm_billing_usage *in,
                             txm_billing_usage_result *out)
{
    static const char who[] = "txm_billing_usage_record";
    usage_call call;
    usage_call *u = &call;
    int rc;
    if (out)
        memset(out, 0, sizeof *out);
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!in)
        return txm_error_set(TXM_EINVALID, "%s: usage is NULL", who);
    if (in->account_id < 0 || in->api_key_id < 0 || in->upstream_id < 0)
        /* 0 means none; a negative id would look like a vanished key and be silently nulled. */
        return txm_error_set(TXM_EINVALID, "%s: ids must be positive, or 0 for none (account %lld, api key %lld, "
                                           "upstream %lld)",
                             who, (long long)in->account_id, (long long)in->api_key_id, (long long)in->upstream_id);
    memset(u, 0, sizeof *u);
    u->b = b;
    u->in = *in;
    rc = usage_prepare(u, c);
    if (!rc)
        rc = bl_run(b, c, usage_body, u);
    if (!rc && out)
        *out = u->res;
    return rc;
}
