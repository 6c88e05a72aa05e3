/* Ledger: accounts with running balances, posts, transfers, verify (docs/billing.md, "Ledger"). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* ---- schema ---------------------------------------------------------------------------------- */

int bl_ledger_create(const txm_billing *b, txm_conn *c)
{
    const char *p = b->prefix;
    const char *text = b->engine == BL_SQLITE ? "TEXT" : "VARCHAR(200)";
    char sql[2048];
    int rc;
    rc = bl_sql(sql, sizeof sql,
                "CREATE TABLE IF NOT EXISTS %s (%s, name %s NOT NULL, balance BIGINT NOT NULL DEFAULT 0, "
                "last_seq BIGINT NOT NULL DEFAULT 0, no_overdraft SMALLINT NOT NULL DEFAULT 0, "
                "CONSTRAINT %saccounts_name_key UNIQUE (name), "
                "CONSTRAINT %saccounts_no_overdraft CHECK (no_overdraft = 0 OR balance >= 0))%s",
                b->t.accounts, bl_id_ddl(b), text, p, p, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    if (!rc)
        rc = bl_sql(sql, sizeof sql,
                    "CREATE TABLE IF NOT EXISTS %s (%s, account_id BIGINT NOT NULL, seq BIGINT NOT NULL, "
                    "amount BIGINT NOT NULL, balance BIGINT NOT NULL, idem_key %s NOT NULL, "
                    "leg SMALLINT NOT NULL DEFAULT 0, "
                    "CONSTRAINT %sentries_account_fk FOREIGN KEY (account_id) REFERENCES %s (id), "
                    "CONSTRAINT %sentries_seq_key UNIQUE (account_id, seq), "
                    "CONSTRAINT %sentries_idem_key UNIQUE (idem_key, leg), "
                    "CONSTRAINT %sentries_amount_nonzero CHECK (amount <> 0))%s",
                    b->t.entries, bl_id_ddl(b), text, p, b->t.accounts, p, p, p, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    return rc;
}

static int drop_table(txm_conn *c, const char *qtable)
{
    char sql[256];
    int rc = bl_sql(sql, sizeof sql, "DROP TABLE IF EXISTS %s", qtable);
    return rc ? rc : txm_exec(c, sql, NULL, 0, NULL);
}

int bl_drop_table(txm_conn *c, const char *qtable) { return drop_table(c, qtable); }

int bl_ledger_drop(const txm_billing *b, txm_conn *c)
{
    int rc = drop_table(c, b->t.entries);
    return rc ? rc : drop_table(c, b->t.accounts);
}

/* ---- accounts -------------------------------------------------------------------------------- */

typedef struct account_call {
    goc g;
    unsigned flags;
    const char *update_sql;
} account_call;

static int account_body(txm_conn *c, void *payload)
{
    account_call *a = payload;
    txm_value p;
    int rc;
    a->g.created = 0;
    if ((rc = bl_get_or_create(c, &a->g)) != 0)
        return rc;
    if (!a->g.created || !(a->flags & TXM_BILLING_NO_OVERDRAFT))
        return 0;
    /* Same transaction as the insert: nobody sees the account without its rule. */
    p = txm_int(a->g.id);
    return txm_exec(c, a->update_sql, &p, 1, NULL);
}

int txm_billing_account(const txm_billing *b, txm_conn *c, const char *name, unsigned flags, int64_t *id_out,
                        int *created_out)
{
    static const char who[] = "txm_billing_account";
    char upd[512];
    account_call a;
    int rc;
    if (id_out)
        *id_out = 0;
    if (created_out)
        *created_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!id_out)
        return txm_error_set(TXM_EINVALID, "%s: id_out is NULL", who);
    if ((rc = bl_check_text(name, 200, who, "account name")) != 0)
        return rc;
    if (flags & ~TXM_BILLING_NO_OVERDRAFT)
        return txm_error_set(TXM_EINVALID, "%s: unknown flags 0x%x", who, flags & ~TXM_BILLING_NO_OVERDRAFT);
    if ((rc = bl_sql(upd, sizeof upd, "UPDATE %s SET no_overdraft = 1 WHERE id = ?", b->t.accounts)) != 0)
        return rc;
    memset(&a, 0, sizeof a);
    a.g.b = b;
    a.g.qtable = b->t.accounts;
    a.g.qid = "id";
    a.g.qkey = "name";
    a.g.key = name;
    a.flags = flags;
    a.update_sql = upd;
    rc = bl_run(b, c, account_body, &a);
    if (rc)
        return rc;
    *id_out = a.g.id;
    if (created_out)
        *created_out = a.g.created;
    return 0;
}

int txm_billing_balance(const txm_billing *b, txm_conn *c, int64_t account_id, int64_t *out)
{
    static const char who[] = "txm_billing_balance";
    char sql[256];
    txm_value p = txm_int(account_id);
    int rc;
    if (out)
        *out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!out)
        return txm_error_set(TXM_EINVALID, "%s: out is NULL", who);
    if ((rc = bl_sql(sql, sizeof sql, "SELECT balance FROM %s WHERE id = ?", b->t.accounts)) != 0)
        return rc;
    rc = txm_query_i64(c, out, sql, &p, 1);
    if (rc == TXM_ENOTFOUND)
        return txm_error_set(TXM_ENOTFOUND, "%s: no account with id %lld", who, (long long)account_id);
    return rc;
}
