/* Ledger: accounts with running balances, posts, transfers, verify (docs/billing.md, "Ledger").
 *
 * A post locks the account row (never the last entry, never the table) by updating it first:
 * balance += amount, last_seq += 1; the entry is then inserted with the account's new balance and
 * last_seq, in the same transaction. Every engine runs it as one txm_batch, so outside a caller's
 * transaction BEGIN, the statements and COMMIT travel in one flight and the row lock is held for
 * no client round trip:
 *  - PostgreSQL: one statement, a data-modifying CTE (UPDATE ... RETURNING feeding the INSERT).
 *  - MySQL/MariaDB, SQLite (no UPDATE ... RETURNING in a CTE): UPDATE, then INSERT ... VALUES
 *    with scalar subqueries reading the updated row.
 * The entry's seq and balance are subqueries over the updated row: when the UPDATE matched no row
 * they are NULL and the INSERT fails (NOT NULL), so a missing account can never leave half a
 * transfer behind. SQLite turns an int64 overflow into a REAL instead of failing: there the
 * UPDATE carries bounds computed in C (balance BETWEEN lo AND hi) and the subqueries require
 * changes() = 1, so an out-of-range post also ends in that NOT NULL failure, classified after.
 * Transfers are two such legs in one batch, in ascending account-id order (the lock order).
 * Idempotency: unique (idem_key, leg); a duplicate reads the original entries and compares. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* ---- schema ---------------------------------------------------------------------------------- */

int bl_ledger_create(const txm_billing *b, txm_conn *c)
{
    const char *p = b->prefix;
    /* Names and idempotency keys compare byte for byte on every engine: MySQL's default collation
     * would make 'Key' and 'key ' the same key (and replay one post for another). */
    const char *text = b->engine == BL_SQLITE ? "TEXT" : b->engine == BL_MYSQL ? "VARBINARY(200)" : "VARCHAR(200)";
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

/* ---- posts and transfers --------------------------------------------------------------------- */

#define LEGS_MAX 2

/* One entry of an operation. leg (the column) is the entry's place in its operation: 0 = a post,
 * or a transfer's debit; 1 = a transfer's credit. A post and a transfer with the same key then
 * collide on unique (idem_key, leg) like any other reuse of a key. */
typedef struct leg {
    int64_t account, amount;
    txm_value up[4], ins[6]; /* parameters of its UPDATE (MySQL, SQLite) and INSERT (or CTE) */
    txm_rows *rows;          /* the INSERT's RETURNING row */
} leg;

typedef struct ledger_op {
    const txm_billing *b;
    const char *who, *key;
    size_t n;                /* 1: a post, 2: a transfer */
    int want_rows;           /* the caller wants the entries: the INSERTs return them */
    leg legs[LEGS_MAX];      /* by role: [0] post or debit, [1] credit */
    txm_billing_entry out[LEGS_MAX];
} ledger_op;

/* The statements of one leg. PostgreSQL: the CTE alone (upd = ""). With `returning`, the INSERT
 * returns the entry; without, a batch at depth 0 is one flight with its COMMIT on PostgreSQL and
 * MySQL (the drivers end a flight after a statement whose rows they buffer, so that running out of
 * memory storing them can never follow a COMMIT the server already ran): the lock is then held for
 * no client round trip. */
static int leg_sql(const txm_billing *b, int returning, char *upd, size_t usize, char *ins, size_t isize)
{
    const char *ret = returning ? " RETURNING id, seq, balance" : "";
    const char *A = b->t.accounts, *E = b->t.entries;
    static const char cols[] = "(account_id, seq, amount, balance, idem_key, leg)";
    int rc;
    upd[0] = '\0';
    switch (b->engine) {
    case BL_PG:
        return bl_sql(ins, isize,
                      "WITH a AS (UPDATE %s SET balance = balance + ?, last_seq = last_seq + 1 WHERE id = ? "
                      "RETURNING balance, last_seq) "
                      "INSERT INTO %s %s VALUES (?, (SELECT last_seq FROM a), ?, (SELECT balance FROM a), ?, ?)%s",
                      A, E, cols, ret);
    case BL_MYSQL:
        rc = bl_sql(upd, usize, "UPDATE %s SET balance = balance + ?, last_seq = last_seq + 1 WHERE id = ?", A);
        return rc ? rc
                  : bl_sql(ins, isize,
                           "INSERT INTO %s %s VALUES (?, (SELECT last_seq FROM %s WHERE id = ?), ?, "
                           "(SELECT balance FROM %s WHERE id = ?), ?, ?)%s",
                           E, cols, A, A, ret);
    default:
        /* changes() is still the UPDATE's count while the INSERT runs: 0 when the bounds (or a
         * missing row) stopped it, and then the NULL seq fails the INSERT. */
        rc = bl_sql(upd, usize,
                    "UPDATE %s SET balance = balance + ?, last_seq = last_seq + 1 WHERE id = ? "
                    "AND balance BETWEEN ? AND ?",
                    A);
        return rc ? rc
                  : bl_sql(ins, isize,
                           "INSERT INTO %s %s VALUES (?, (SELECT last_seq FROM %s WHERE id = ? AND changes() = 1), "
                           "?, (SELECT balance FROM %s WHERE id = ? AND changes() = 1), ?, ?)%s",
                           E, cols, A, A, ret);
    }
}

/* The balances to which `amount` can be added without leaving the int64 range. */
static void add_bounds(int64_t amount, int64_t *lo, int64_t *hi)
{
    *lo = amount < 0 ? INT64_MIN - amount : INT64_MIN;
    *hi = amount > 0 ? INT64_MAX - amount : INT64_MAX;
}

static int add_overflows(int64_t a, int64_t b)
{
    return (b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b);
}

static void leg_params(const txm_billing *b, leg *l, int legno, const char *key)
{
    int64_t lo, hi;
    add_bounds(l->amount, &lo, &hi);
    if (b->engine == BL_PG) {
        l->ins[0] = txm_int(l->amount);
        l->ins[1] = txm_int(l->account);
        l->ins[2] = txm_int(l->account);
        l->ins[3] = txm_int(l->amount);
        l->ins[4] = txm_text(key);
        l->ins[5] = txm_int(legno);
        return;
    }
    l->up[0] = txm_int(l->amount);
    l->up[1] = txm_int(l->account);
    l->up[2] = txm_int(lo);
    l->up[3] = txm_int(hi);
    l->ins[0] = txm_int(l->account);
    l->ins[1] = txm_int(l->account);
    l->ins[2] = txm_int(l->amount);
    l->ins[3] = txm_int(l->account);
    l->ins[4] = txm_text(key);
    l->ins[5] = txm_int(legno);
}

static void describe(char *buf, size_t size, const int64_t *acct, const int64_t *amt, size_t n)
{
    if (n == 1)
        snprintf(buf, size, "a post of %lld to account %lld", (long long)amt[0], (long long)acct[0]);
    else
        snprintf(buf, size, "a transfer of %lld from account %lld to account %lld", (long long)amt[1],
                 (long long)acct[0], (long long)acct[1]);
}

/* The key was used before: read its entries (committed, or written earlier in the caller's
 * transaction) and return them if they are this very operation. A locking read inside a caller's
 * transaction: on MySQL a plain read in REPEATABLE READ might not see the other writer's entries.
 * Returns orig (its error record untouched) when the key has no entries after all. */
static int replay(txm_conn *c, ledger_op *op, int orig)
{
    char sql[512], was[160], now[160];
    int64_t acct[3], amt[3], legno[3], id[3], seq[3], bal[3];
    txm_value p = txm_text(op->key);
    txm_rows *r = NULL;
    size_t n = 0, i;
    int same, rc;
    rc = bl_sql(sql, sizeof sql,
                "SELECT id, account_id, seq, amount, balance, leg FROM %s WHERE idem_key = ? ORDER BY leg%s",
                op->b->t.entries, txm_depth(c) > 0 ? txm_sql_row_lock(c, TXM_ROW_LOCK_SHARE) : "");
    if (rc || (rc = txm_query(&r, c, sql, &p, 1)) != 0)
        return rc;
    while (n < 3 && txm_rows_next(r)) {
        id[n] = txm_rows_get_i64(r, 0);
        acct[n] = txm_rows_get_i64(r, 1);
        seq[n] = txm_rows_get_i64(r, 2);
        amt[n] = txm_rows_get_i64(r, 3);
        bal[n] = txm_rows_get_i64(r, 4);
        legno[n] = txm_rows_get_i64(r, 5);
        n++;
    }
    txm_rows_free(r);
    if (n == 0)
        return orig;
    same = n == op->n;
    for (i = 0; same && i < n; i++)
        same = legno[i] == (int64_t)i && acct[i] == op->legs[i].account && amt[i] == op->legs[i].amount;
    if (!same) {
        int64_t tacct[LEGS_MAX], tamt[LEGS_MAX];
        for (i = 0; i < op->n; i++) {
            tacct[i] = op->legs[i].account;
            tamt[i] = op->legs[i].amount;
        }
        if (n == 1 || n == 2)
            describe(was, sizeof was, acct, amt, n);
        else
            snprintf(was, sizeof was, "%zu entries", n);
        describe(now, sizeof now, tacct, tamt, op->n);
        return txm_error_set(TXM_EINVALID,
                             "%s: idempotency key '%.64s' was already used for %s (entry %lld); this call is %s",
                             op->who, op->key, was, (long long)id[0], now);
    }
    for (i = 0; i < n; i++) {
        txm_billing_entry *e = &op->out[i];
        e->id = id[i];
        e->account_id = acct[i];
        e->seq = seq[i];
        e->amount = amt[i];
        e->balance = bal[i];
        e->replayed = 1;
    }
    return 0;
}

/* An entry INSERT failed on its NOT NULL seq: its UPDATE matched no row. Why: no such account, or
 * (SQLite) the bounds that keep the balance in range. Nothing was written either way. */
static int classify_missing(txm_conn *c, ledger_op *op, const leg *l, int orig)
{
    char sql[256];
    txm_value p = txm_int(l->account);
    int64_t bal = 0;
    int rc = bl_sql(sql, sizeof sql, "SELECT balance FROM %s WHERE id = ?", op->b->t.accounts);
    if (!rc)
        rc = txm_query_i64(c, &bal, sql, &p, 1);
    if (rc == TXM_ENOTFOUND)
        return txm_error_set(TXM_ENOTFOUND, "%s: no account with id %lld", op->who, (long long)l->account);
    if (rc)
        return rc;
    if (add_overflows(bal, l->amount))
        return txm_error_set(TXM_EDATA,
                             "%s: account %lld: balance %lld + %lld leaves the int64 range; nothing was written",
                             op->who, (long long)l->account, (long long)bal, (long long)l->amount);
    return orig;
}

static int unique_is_idem_key(const ledger_op *op, const txm_error *e)
{
    char want[80];
    if (!e->constraint_name[0])
        return 1; /* SQLite names no constraint: the lookup decides */
    snprintf(want, sizeof want, "%sentries_idem_key", op->b->prefix);
    return strcmp(e->constraint_name, want) == 0;
}

static int run_op(txm_conn *c, ledger_op *op)
{
    char upd[512], ins[1024];
    txm_batch_stmt st[2 * LEGS_MAX];
    size_t stleg[2 * LEGS_MAX], order[LEGS_MAX], ns = 0, i;
    int is_insert[2 * LEGS_MAX] = {0};
    txm_batch_options bo = TXM_BATCH_OPTIONS_INIT;
    const txm_error *e;
    int rc;
    if ((rc = leg_sql(op->b, op->want_rows, upd, sizeof upd, ins, sizeof ins)) != 0)
        return rc;
    memset(st, 0, sizeof st);
    memset(op->out, 0, sizeof op->out);
    /* Lock order: ascending account id, whatever the roles. */
    order[0] = 0;
    if (op->n == 2) {
        order[0] = op->legs[0].account < op->legs[1].account ? 0 : 1;
        order[1] = 1 - order[0];
    }
    for (i = 0; i < op->n; i++) {
        leg *l = &op->legs[order[i]];
        leg_params(op->b, l, (int)order[i], op->key);
        l->rows = NULL;
        if (op->b->engine != BL_PG) {
            st[ns].sql = upd;
            st[ns].params = l->up;
            st[ns].nparams = op->b->engine == BL_SQLITE ? 4 : 2;
            stleg[ns++] = order[i];
        }
        st[ns].sql = ins;
        st[ns].params = l->ins;
        st[ns].nparams = 6;
        st[ns].rows_out = op->want_rows ? &l->rows : NULL;
        is_insert[ns] = 1;
        stleg[ns++] = order[i];
    }
    bo.retry = &op->b->retry; /* depth 0 only: inside a transaction the batch is a nested level */
    rc = txm_batch(c, st, ns, &bo);
    if (rc == 0 && !op->want_rows)
        return 0;
    if (rc == 0) {
        for (i = 0; i < op->n; i++) {
            leg *l = &op->legs[i];
            txm_billing_entry *o = &op->out[i];
            int found = txm_rows_next(l->rows);
            if (found) {
                o->id = txm_rows_get_i64(l->rows, 0);
                o->seq = txm_rows_get_i64(l->rows, 1);
                o->balance = txm_rows_get_i64(l->rows, 2);
                o->account_id = l->account;
                o->amount = l->amount;
            }
            txm_rows_free(l->rows);
            l->rows = NULL;
            if (!found) /* cannot happen: the INSERT has VALUES and RETURNING */
                rc = txm_error_set(TXM_ERROR, "%s: the entry insert returned no row", op->who);
        }
        return rc;
    }
    e = txm_error_last();
    if (e->flags & TXM_ERRF_TX_LOST)
        return rc;
    for (i = 0; i < ns; i++)
        if (st[i].status != 0 && st[i].status != TXM_ECANCELED)
            break;
    if (rc == TXM_EUNIQUE && unique_is_idem_key(op, e))
        return replay(c, op, rc);
    if (rc == TXM_ENOT_NULL && i < ns && is_insert[i])
        return classify_missing(c, op, &op->legs[stleg[i]], rc);
    if (rc == TXM_EDATA && strcmp(e->sqlstate, "22003") == 0 && i < ns) {
        const leg *l = &op->legs[stleg[i]];
        char engine_msg[200];
        snprintf(engine_msg, sizeof engine_msg, "%s", e->message); /* the record is about to be replaced */
        return txm_error_set(TXM_EDATA, "%s: account %lld: adding %lld leaves the int64 range; nothing was written (%s)",
                             op->who, (long long)l->account, (long long)l->amount, engine_msg);
    }
    return rc;
}

static int check_key(const char *who, const char *key) { return bl_check_text(key, 200, who, "idempotency key"); }

int txm_billing_post(const txm_billing *b, txm_conn *c, int64_t account_id, int64_t amount, const char *idem_key,
                     txm_billing_entry *out)
{
    static const char who[] = "txm_billing_post";
    ledger_op op;
    int rc;
    if (out)
        memset(out, 0, sizeof *out);
    if ((rc = bl_check(b, c, who)) != 0 || (rc = check_key(who, idem_key)) != 0)
        return rc;
    if (amount == 0)
        return txm_error_set(TXM_EINVALID, "%s: amount is 0 (a post moves money)", who);
    memset(&op, 0, sizeof op);
    op.b = b;
    op.who = who;
    op.key = idem_key;
    op.n = 1;
    op.want_rows = out != NULL;
    op.legs[0].account = account_id;
    op.legs[0].amount = amount;
    if ((rc = run_op(c, &op)) == 0 && out)
        *out = op.out[0];
    return rc;
}

int txm_billing_transfer(const txm_billing *b, txm_conn *c, int64_t from_account, int64_t to_account, int64_t amount,
                         const char *idem_key, txm_billing_entry *debit_out, txm_billing_entry *credit_out)
{
    static const char who[] = "txm_billing_transfer";
    ledger_op op;
    int rc;
    if (debit_out)
        memset(debit_out, 0, sizeof *debit_out);
    if (credit_out)
        memset(credit_out, 0, sizeof *credit_out);
    if ((rc = bl_check(b, c, who)) != 0 || (rc = check_key(who, idem_key)) != 0)
        return rc;
    if (amount <= 0)
        return txm_error_set(TXM_EINVALID, "%s: amount must be > 0 (it is %lld)", who, (long long)amount);
    if (from_account == to_account)
        return txm_error_set(TXM_EINVALID, "%s: from and to are the same account (%lld)", who,
                             (long long)from_account);
    memset(&op, 0, sizeof op);
    op.b = b;
    op.who = who;
    op.key = idem_key;
    op.n = 2;
    op.want_rows = debit_out || credit_out;
    op.legs[0].account = from_account;
    op.legs[0].amount = -amount;
    op.legs[1].account = to_account;
    op.legs[1].amount = amount;
    if ((rc = run_op(c, &op)) != 0)
        return rc;
    if (debit_out)
        *debit_out = op.out[0];
    if (credit_out)
        *credit_out = op.out[1];
    return 0;
}

/* ---- verify ---------------------------------------------------------------------------------- */

/* verify pages through both tables in key order (keyset pagination), so a global chain of
 * millions of entries never sits in memory at once; the pages are read in one snapshot. */
#define VERIFY_PAGE 2000

typedef struct cursor {
    const char *sql;
    txm_rows *rows;
    int64_t k1, k2;  /* last key read: (id) or (account_id, seq) */
    int has, done;   /* has: a current row */
    int entries;
} cursor;

static int cursor_next(txm_conn *c, cursor *cu)
{
    int rc;
    for (;;) {
        if (cu->rows && txm_rows_next(cu->rows)) {
            cu->has = 1;
            cu->k1 = txm_rows_get_i64(cu->rows, cu->entries ? 1 : 0);
            cu->k2 = cu->entries ? txm_rows_get_i64(cu->rows, 2) : 0;
            return 0;
        }
        cu->has = 0;
        if (cu->done)
            return 0;
        if (cu->rows) {
            size_t got = txm_rows_count(cu->rows);
            txm_rows_free(cu->rows);
            cu->rows = NULL;
            if (got < VERIFY_PAGE) {
                cu->done = 1;
                return 0;
            }
        }
        if (cu->entries) {
            txm_value p[3] = {txm_int(cu->k1), txm_int(cu->k1), txm_int(cu->k2)};
            rc = txm_query(&cu->rows, c, cu->sql, p, 3);
        } else {
            txm_value p = txm_int(cu->k1);
            rc = txm_query(&cu->rows, c, cu->sql, &p, 1);
        }
        if (rc)
            return rc;
    }
}

typedef struct verify_run {
    const txm_billing *b;
    txm_billing_report *rep;
} verify_run;

static int bad(verify_run *v, int64_t account, int64_t entry, const char *fmt, ...) BL_PRINTF(4, 5);
static int bad(verify_run *v, int64_t account, int64_t entry, const char *fmt, ...)
{
    va_list ap;
    v->rep->ok = 0;
    v->rep->account_id = account;
    v->rep->entry_id = entry;
    va_start(ap, fmt);
    vsnprintf(v->rep->message, sizeof v->rep->message, fmt, ap);
    va_end(ap);
    return txm_error_set(TXM_EDATA, "txm_billing_verify: %s", v->rep->message);
}

/* Walks one account's entries (the cursor stands on its first one, if any). */
static int verify_account(txm_conn *c, verify_run *v, cursor *ec, int64_t id, int64_t balance, int64_t last_seq)
{
    int64_t n = 0, prev = 0, last_id = 0;
    int rc;
    while (ec->has && ec->k1 == id) {
        int64_t eid = txm_rows_get_i64(ec->rows, 0), seq = ec->k2;
        int64_t amount = txm_rows_get_i64(ec->rows, 3), ebal = txm_rows_get_i64(ec->rows, 4);
        n++;
        v->rep->entries++;
        if (seq != n)
            return bad(v, id, eid, "account %lld: entry %lld has seq %lld, expected %lld (seq %lld is missing)",
                       (long long)id, (long long)eid, (long long)seq, (long long)n, (long long)n);
        if (add_overflows(prev, amount))
            return bad(v, id, eid, "account %lld: entry %lld (seq %lld): previous balance %lld + amount %lld leaves the int64 range",
                       (long long)id, (long long)eid, (long long)seq, (long long)prev, (long long)amount);
        if (ebal != prev + amount)
            return bad(v, id, eid, "account %lld: entry %lld (seq %lld) has balance %lld, expected %lld + %lld = %lld",
                       (long long)id, (long long)eid, (long long)seq, (long long)ebal, (long long)prev,
                       (long long)amount, (long long)(prev + amount));
        prev = ebal;
        last_id = eid;
        if ((rc = cursor_next(c, ec)) != 0)
            return rc;
    }
    if (last_seq != n)
        return bad(v, id, 0, "account %lld: last_seq is %lld, but the account has %lld entries", (long long)id,
                   (long long)last_seq, (long long)n);
    if (balance != prev) {
        if (n == 0)
            return bad(v, id, 0, "account %lld: balance is %lld, but the account has no entries (expected 0)",
                       (long long)id, (long long)balance);
        return bad(v, id, 0, "account %lld: balance is %lld, but its last entry %lld (seq %lld) says %lld",
                   (long long)id, (long long)balance, (long long)last_id, (long long)n, (long long)prev);
    }
    return 0;
}

static int orphan(verify_run *v, const cursor *ec)
{
    return bad(v, ec->k1, txm_rows_get_i64(ec->rows, 0), "entry %lld (seq %lld) belongs to account %lld, which does not exist",
               (long long)txm_rows_get_i64(ec->rows, 0), (long long)ec->k2, (long long)ec->k1);
}

static int verify_body(txm_conn *c, void *payload)
{
    verify_run *v = payload;
    char asql[256], esql[512];
    cursor ac, ec;
    int rc;
    memset(&ac, 0, sizeof ac);
    memset(&ec, 0, sizeof ec);
    v->rep->accounts = v->rep->entries = 0;
    if ((rc = bl_sql(asql, sizeof asql, "SELECT id, balance, last_seq FROM %s WHERE id > ? ORDER BY id LIMIT %d",
                     v->b->t.accounts, VERIFY_PAGE)) != 0 ||
        (rc = bl_sql(esql, sizeof esql,
                     "SELECT id, account_id, seq, amount, balance FROM %s WHERE account_id > ? OR "
                     "(account_id = ? AND seq > ?) ORDER BY account_id, seq LIMIT %d",
                     v->b->t.entries, VERIFY_PAGE)) != 0)
        return rc;
    ac.sql = asql;
    ac.k1 = INT64_MIN;
    ec.sql = esql;
    ec.entries = 1;
    ec.k1 = INT64_MIN;
    ec.k2 = INT64_MIN;
    if ((rc = cursor_next(c, &ac)) == 0)
        rc = cursor_next(c, &ec);
    while (rc == 0 && ac.has) {
        int64_t id = ac.k1;
        v->rep->accounts++;
        if (ec.has && ec.k1 < id) {
            rc = orphan(v, &ec);
            break;
        }
        rc = verify_account(c, v, &ec, id, txm_rows_get_i64(ac.rows, 1), txm_rows_get_i64(ac.rows, 2));
        if (rc == 0)
            rc = cursor_next(c, &ac);
    }
    if (rc == 0 && ec.has)
        rc = orphan(v, &ec);
    txm_rows_free(ac.rows);
    txm_rows_free(ec.rows);
    return rc;
}

int txm_billing_verify(const txm_billing *b, txm_conn *c, txm_billing_report *out)
{
    static const char who[] = "txm_billing_verify";
    txm_billing_report local;
    txm_tx_options to = TXM_TX_OPTIONS_INIT;
    verify_run v;
    int rc;
    txm_billing_report *rep = out ? out : &local;
    memset(rep, 0, sizeof *rep);
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    v.b = b;
    v.rep = rep;
    /* One snapshot for every page: read-only REPEATABLE READ (PostgreSQL, MySQL: a consistent
     * read); SQLite's read transaction is a snapshot already. Inside a caller's transaction its
     * snapshot is used, whatever it is. */
    to.flags = TXM_TX_READ_ONLY;
    if (txm_capabilities(c) & TXM_CAP_ISOLATION)
        to.isolation = TXM_ISOLATION_REPEATABLE_READ;
    rc = txm_atomic(c, txm_depth(c) > 0 ? NULL : &to, verify_body, &v);
    if (rc == 0)
        rep->ok = 1;
    return rc;
}
