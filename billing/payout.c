/* Payouts and their notifications through an outbox (docs/billing.md, "Payouts").
 *
 * The incident: users were told "your money has arrived" for payouts whose transaction later
 * rolled back. So a notification is never sent from inside the transaction that pays:
 *  - marking a payout paid (pending -> paid) inserts its notification into the outbox in the same
 *    transaction (the row exists if and only if the payout was paid) and registers an on-commit
 *    hook; txm runs on-commit hooks only after the outermost COMMIT succeeded, never for a
 *    transaction (or an attempt of txm_retry) that rolled back;
 *  - the hook (connection idle, no transaction) delivers the notification and marks it delivered;
 *  - txm_billing_outbox_drain delivers whatever is left (a crash between COMMIT and hook, a failing
 *    notify, no notify configured when it was paid).
 * Delivery is at-least-once, deduplicated by payout id on the receiving side.
 *
 * Claims. A hook and a drain, or two drains, must not both deliver the same row. Each delivery first
 * claims the row with one compare-and-set UPDATE in autocommit (claims = claims + 1 where claims
 * still has the value read and the row is undelivered and unclaimed, or its claim is older than the
 * lease); only the session that changed the row delivers. The CAS is a single-row write: on
 * PostgreSQL and InnoDB the loser waits for the row lock and re-evaluates its WHERE on the newest
 * version (0 rows), on SQLite writers are serialized by the database lock. Notify is then called
 * with no transaction open and no lock held (it may be a slow HTTP call), and the row is marked
 * delivered. A crash between claim and mark leaves the row claimed: after BL_OUTBOX_LEASE_S seconds
 * (database clock) a drain takes it over and delivers it again (at-least-once). A failing notify
 * gives the claim back at once.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds after which a claim that was never completed (the claiming process died between claim
 * and mark) may be taken over by a drain. Longer than any sane notify call: a notify still running
 * when its claim lapses may be delivered twice (allowed: at-least-once, dedupe by payout id). */
#define BL_OUTBOX_LEASE_S 120
/* Rows a drain reads per page (bounded memory for a large backlog). */
#define BL_DRAIN_PAGE 100

/* ---- schema ---------------------------------------------------------------------------------- */

int bl_payout_create(const txm_billing *b, txm_conn *c)
{
    const char *p = b->prefix;
    char sql[2048];
    int rc;
    rc = bl_sql(sql, sizeof sql,
                "CREATE TABLE IF NOT EXISTS %s (%s, account_id BIGINT NOT NULL, amount BIGINT NOT NULL, "
                "status VARCHAR(16) NOT NULL DEFAULT 'pending', "
                "CONSTRAINT %spayouts_account_fk FOREIGN KEY (account_id) REFERENCES %s (id), "
                "CONSTRAINT %spayouts_amount_positive CHECK (amount > 0), "
                "CONSTRAINT %spayouts_status CHECK (status IN ('pending', 'paid')))%s",
                b->t.payouts, bl_id_ddl(b), p, b->t.accounts, p, p, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    /* claims: how many times the row was claimed (the CAS generation); claimed_at: the database
     * clock's epoch seconds of the current claim, NULL when unclaimed. The index serves the drain's
     * "undelivered, in payout-id order" scan (MySQL has no CREATE INDEX IF NOT EXISTS: inline). */
    if (!rc)
        rc = bl_sql(sql, sizeof sql,
                    "CREATE TABLE IF NOT EXISTS %s (%s, payout_id BIGINT NOT NULL, message TEXT NOT NULL, "
                    "delivered SMALLINT NOT NULL DEFAULT 0, claims BIGINT NOT NULL DEFAULT 0, "
                    "claimed_at BIGINT NULL, "
                    "CONSTRAINT %soutbox_payout_key UNIQUE (payout_id), "
                    "CONSTRAINT %soutbox_payout_fk FOREIGN KEY (payout_id) REFERENCES %s (id), "
                    "CONSTRAINT %soutbox_delivered CHECK (delivered IN (0, 1))%s%s%s)%s",
                    b->t.outbox, bl_id_ddl(b), p, p, b->t.payouts, p,
                    b->engine == BL_MYSQL ? ", INDEX " : "", b->engine == BL_MYSQL ? p : "",
                    b->engine == BL_MYSQL ? "outbox_undelivered (delivered, payout_id)" : "", bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    if (!rc && b->engine != BL_MYSQL) {
        rc = bl_sql(sql, sizeof sql, "CREATE INDEX IF NOT EXISTS %soutbox_undelivered ON %s (delivered, payout_id)",
                    p, b->t.outbox);
        if (!rc)
            rc = txm_exec(c, sql, NULL, 0, NULL);
    }
    return rc;
}

int bl_payout_drop(const txm_billing *b, txm_conn *c)
{
    int rc = bl_drop_table(c, b->t.outbox);
    return rc ? rc : bl_drop_table(c, b->t.payouts);
}

/* ---- delivering one notification (hook and drain) ------------------------------------------- */

/* What a delivery needs, copied out of the billing object: a hook may run after the caller freed
 * the object (the transaction's commit is the caller's, not ours). */
typedef struct bl_outbox {
    char claim[512], release[256], mark[256];
    txm_billing_notify_cb notify;
    void *payload;
} bl_outbox;

/* The database clock in epoch seconds: one clock for every client, so a lease does not depend on
 * the clients' clocks agreeing. */
static const char *db_now(const txm_billing *b)
{
    switch (b->engine) {
    case BL_PG:
        return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)";
    case BL_MYSQL:
        return "UNIX_TIMESTAMP()";
    default:
        return "CAST(strftime('%s', 'now') AS INTEGER)";
    }
}

static int outbox_init(bl_outbox *ob, const txm_billing *b)
{
    const char *now = db_now(b);
    int rc;
    memset(ob, 0, sizeof *ob);
    ob->notify = b->notify;
    ob->payload = b->notify_payload;
    rc = bl_sql(ob->claim, sizeof ob->claim,
                "UPDATE %s SET claims = claims + 1, claimed_at = %s WHERE payout_id = ? AND claims = ? AND "
                "delivered = 0 AND (claimed_at IS NULL OR claimed_at < %s - %d)",
                b->t.outbox, now, now, BL_OUTBOX_LEASE_S);
    if (!rc)
        rc = bl_sql(ob->release, sizeof ob->release,
                    "UPDATE %s SET claimed_at = NULL WHERE payout_id = ? AND claims = ? AND delivered = 0",
                    b->t.outbox);
    /* Whoever delivered, the notification went out: no claim condition. */
    if (!rc)
        rc = bl_sql(ob->mark, sizeof ob->mark,
                    "UPDATE %s SET delivered = 1, claimed_at = NULL WHERE payout_id = ? AND delivered = 0",
                    b->t.outbox);
    return rc;
}

typedef enum bl_outcome { BL_SKIPPED = 0, BL_DELIVERED, BL_NOTIFY_FAILED } bl_outcome;

/* Claims the row (generation gen -> gen + 1), calls notify with no transaction open, marks the row
 * delivered. *outcome: BL_SKIPPED when another session holds or delivered it. *notify_rc: what a
 * failing notify returned. Returns 0 or the error of a statement (txm's record intact). */
static int deliver_one(txm_conn *c, const bl_outbox *ob, int64_t payout_id, const char *message, int64_t gen,
                       bl_outcome *outcome, int *notify_rc)
{
    txm_value p[2];
    int64_t n = 0;
    int rc, nrc;
    *outcome = BL_SKIPPED;
    *notify_rc = 0;
    if (gen < 0 || gen == INT64_MAX)
        return txm_error_set(TXM_EDATA, "txm-billing outbox: payout %lld has a corrupt claim count %lld",
                             (long long)payout_id, (long long)gen);
    p[0] = txm_int(payout_id);
    p[1] = txm_int(gen);
    if ((rc = txm_exec(c, ob->claim, p, 2, &n)) != 0)
        return rc;
    if (n != 1)
        return 0; /* claimed or delivered by someone else since we read it */
    nrc = ob->notify(payout_id, message, ob->payload);
    if (nrc != 0) {
        *outcome = BL_NOTIFY_FAILED;
        *notify_rc = nrc;
        /* Give the claim back so the next drain retries at once; if this fails, the claim lapses
         * with its lease. */
        p[1] = txm_int(gen + 1);
        return txm_exec(c, ob->release, p, 2, NULL);
    }
    *outcome = BL_DELIVERED;
    /* A failure here leaves the row claimed and undelivered although notify succeeded: it is
     * delivered again after the lease (at-least-once). */
    return txm_exec(c, ob->mark, p, 1, NULL);
}

typedef struct deliver_hook {
    bl_outbox ob;
    int64_t payout_id;
    char message[]; /* NUL-terminated */
} deliver_hook;

/* On-commit hook of a payout marked paid: runs after the outermost COMMIT, connection idle. */
static int deliver_hook_run(txm_conn *c, void *payload)
{
    deliver_hook *h = payload;
    bl_outcome outcome;
    int nrc, rc;
    /* The row was inserted with claims = 0 by the committed transaction. */
    rc = deliver_one(c, &h->ob, h->payout_id, h->message, 0, &outcome, &nrc);
    if (rc)
        return rc;
    if (outcome == BL_NOTIFY_FAILED)
        return txm_error_set(TXM_ERROR,
                             "txm-billing payout hook: notify returned %d for payout %lld; the payout is paid and "
                             "its notification stays in the outbox for txm_billing_outbox_drain",
                             nrc, (long long)h->payout_id);
    return 0;
}

/* ---- payouts --------------------------------------------------------------------------------- */

int txm_billing_payout_create(const txm_billing *b, txm_conn *c, int64_t account_id, int64_t amount,
                              int64_t *id_out)
{
    static const char who[] = "txm_billing_payout_create";
    char sql[256];
    txm_value p[2];
    int64_t id = 0;
    int rc;
    if (id_out)
        *id_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!id_out)
        return txm_error_set(TXM_EINVALID, "%s: id_out is NULL", who);
    if (amount <= 0)
        return txm_error_set(TXM_EINVALID, "%s: amount must be > 0 (it is %lld)", who, (long long)amount);
    if ((rc = bl_sql(sql, sizeof sql, "INSERT INTO %s (account_id, amount) VALUES (?, ?) RETURNING id",
                     b->t.payouts)) != 0)
        return rc;
    p[0] = txm_int(account_id);
    p[1] = txm_int(amount);
    rc = bl_insert_id(b, c, sql, p, 2, &id);
    /* payouts has one foreign key: its account. */
    if (rc == TXM_EFOREIGN_KEY && !(txm_error_last()->flags & TXM_ERRF_TX_LOST))
        return txm_error_set(TXM_ENOTFOUND, "%s: no account with id %lld", who, (long long)account_id);
    if (rc)
        return rc;
    *id_out = id;
    return 0;
}

/* Statements of a mark-paid call, built once per public call. */
typedef struct mark_sql {
    char upd[256], sel[512], state[256], ins[256];
} mark_sql;

static int mark_sql_init(mark_sql *s, const txm_billing *b, txm_conn *c)
{
    int rc = bl_sql(s->upd, sizeof s->upd, "UPDATE %s SET status = 'paid' WHERE id = ? AND status = 'pending'",
                    b->t.payouts);
    if (!rc)
        rc = bl_sql(s->sel, sizeof s->sel,
                    "SELECT p.account_id, p.amount, a.name FROM %s p JOIN %s a ON a.id = p.account_id WHERE p.id = ?",
                    b->t.payouts, b->t.accounts);
    /* A locking read: on MySQL a plain read in a caller's REPEATABLE READ snapshot could show an
     * older status than the one our UPDATE just found. */
    if (!rc)
        rc = bl_sql(s->state, sizeof s->state, "SELECT status FROM %s WHERE id = ?%s", b->t.payouts,
                    txm_sql_row_lock(c, TXM_ROW_LOCK_SHARE));
    if (!rc)
        rc = bl_sql(s->ins, sizeof s->ins, "INSERT INTO %s (payout_id, message) VALUES (?, ?)", b->t.outbox);
    return rc;
}

typedef struct mark_call {
    const txm_billing *b;
    const mark_sql *sql;
    const char *who;
    int64_t payout_id;
    int bulk;        /* 1: name the item in messages */
    size_t index;
} mark_call;

/* Why the UPDATE changed nothing: no such payout, or not pending. */
static int state_error(txm_conn *c, const mark_call *m)
{
    txm_rows *r = NULL;
    txm_value p = txm_int(m->payout_id);
    char item[48] = "";
    int rc = txm_query(&r, c, m->sql->state, &p, 1);
    if (rc)
        return rc;
    if (m->bulk)
        snprintf(item, sizeof item, "item %zu: ", m->index);
    if (!txm_rows_next(r)) {
        txm_rows_free(r);
        return txm_error_set(TXM_ENOTFOUND, "%s: %sno payout with id %lld", m->who, item, (long long)m->payout_id);
    }
    rc = txm_error_set(TXM_EINVALID, "%s: %spayout %lld is '%.16s', not 'pending'", m->who, item,
                       (long long)m->payout_id, txm_rows_is_null(r, 0) ? "NULL" : txm_rows_get_text(r, 0, NULL));
    txm_rows_free(r);
    return rc;
}

/* The notification text: fixed words, the ids and amount, and the account's name as stored. */
static char *make_message(int64_t payout_id, int64_t amount, int64_t account_id, const char *name)
{
    static const char fmt[] = "payout %lld: %lld paid to account %lld (%s)";
    int n = snprintf(NULL, 0, fmt, (long long)payout_id, (long long)amount, (long long)account_id, name);
    char *s;
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s)
        snprintf(s, (size_t)n + 1, fmt, (long long)payout_id, (long long)amount, (long long)account_id, name);
    return s;
}

static int register_hook(txm_conn *c, const txm_billing *b, int64_t payout_id, const char *message)
{
    size_t len = strlen(message);
    deliver_hook *h = malloc(sizeof *h + len + 1);
    int rc;
    if (!h)
        return txm_error_set(TXM_ENOMEM, "txm-billing: out of memory for a payout notification hook");
    if ((rc = outbox_init(&h->ob, b)) != 0) {
        free(h);
        return rc;
    }
    h->payout_id = payout_id;
    memcpy(h->message, message, len + 1);
    rc = txm_on_commit(c, deliver_hook_run, h, free);
    if (rc)
        free(h); /* registration failed: the payload is still ours */
    return rc;
}

/* One payout, in the level the caller opened (pending -> paid, outbox row, hook). */
static int mark_body(txm_conn *c, void *payload)
{
    mark_call *m = payload;
    txm_rows *r = NULL;
    txm_value p[2];
    int64_t n = 0, account_id, amount;
    char *message;
    int rc;
    p[0] = txm_int(m->payout_id);
    if ((rc = txm_exec(c, m->sql->upd, p, 1, &n)) != 0)
        return rc;
    if (n == 0)
        return state_error(c, m);
    if (n != 1)
        return txm_error_set(TXM_ERROR, "%s: the engine did not say whether payout %lld changed", m->who,
                             (long long)m->payout_id);
    if ((rc = txm_query(&r, c, m->sql->sel, p, 1)) != 0)
        return rc;
    if (!txm_rows_next(r)) { /* the foreign key makes this impossible: say so rather than crash */
        txm_rows_free(r);
        return txm_error_set(TXM_ENOTFOUND, "%s: payout %lld has no account", m->who, (long long)m->payout_id);
    }
    account_id = txm_rows_get_i64(r, 0);
    amount = txm_rows_get_i64(r, 1);
    message = make_message(m->payout_id, amount, account_id, txm_rows_is_null(r, 2) ? "" : txm_rows_get_text(r, 2, NULL));
    txm_rows_free(r);
    if (!message)
        return txm_error_set(TXM_ENOMEM, "%s: out of memory", m->who);
    p[1] = txm_text(message);
    rc = txm_exec(c, m->sql->ins, p, 2, NULL);
    if (!rc && m->b->notify)
        rc = register_hook(c, m->b, m->payout_id, message);
    free(message);
    return rc;
}

int txm_billing_payout_mark_paid(const txm_billing *b, txm_conn *c, int64_t payout_id)
{
    static const char who[] = "txm_billing_payout_mark_paid";
    mark_sql s;
    mark_call m;
    int rc;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if ((rc = mark_sql_init(&s, b, c)) != 0)
        return rc;
    memset(&m, 0, sizeof m);
    m.b = b;
    m.sql = &s;
    m.who = who;
    m.payout_id = payout_id;
    return bl_run(b, c, mark_body, &m);
}

typedef struct bulk_call {
    const txm_billing *b;
    const mark_sql *sql;
    const int64_t *ids;
    size_t n;
    size_t failed; /* out: index of the failing item, n if none */
} bulk_call;

/* The whole run in one level; each payout in a nested level of its own. The first failure ends the
 * run and its error rolls back the whole level: nothing paid, every hook discarded. A retried
 * attempt starts from scratch (failed is reset). */
static int bulk_body(txm_conn *c, void *payload)
{
    bulk_call *k = payload;
    size_t i;
    k->failed = k->n;
    for (i = 0; i < k->n; i++) {
        mark_call m;
        int rc;
        memset(&m, 0, sizeof m);
        m.b = k->b;
        m.sql = k->sql;
        m.who = "txm_billing_payouts_mark_paid";
        m.payout_id = k->ids[i];
        m.bulk = 1;
        m.index = i;
        if ((rc = txm_atomic(c, NULL, mark_body, &m)) != 0) {
            k->failed = i;
            return rc;
        }
    }
    return 0;
}

int txm_billing_payouts_mark_paid(const txm_billing *b, txm_conn *c, const int64_t *payout_ids, size_t n,
                                  size_t *failed_index_out)
{
    static const char who[] = "txm_billing_payouts_mark_paid";
    mark_sql s;
    bulk_call k;
    int rc;
    if (failed_index_out)
        *failed_index_out = n;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!payout_ids && n > 0)
        return txm_error_set(TXM_EINVALID, "%s: payout_ids is NULL", who);
    if (n == 0)
        return 0;
    if ((rc = mark_sql_init(&s, b, c)) != 0)
        return rc;
    memset(&k, 0, sizeof k);
    k.b = b;
    k.sql = &s;
    k.ids = payout_ids;
    k.n = n;
    k.failed = n;
    rc = bl_run(b, c, bulk_body, &k);
    if (failed_index_out)
        *failed_index_out = rc ? k.failed : n;
    return rc;
}

/* ---- drain ----------------------------------------------------------------------------------- */

int txm_billing_outbox_drain(const txm_billing *b, txm_conn *c, size_t *delivered_out)
{
    static const char who[] = "txm_billing_outbox_drain";
    char sel[512];
    const char *now;
    bl_outbox ob;
    int64_t after = INT64_MIN, first_failed = 0;
    size_t delivered = 0, failed = 0;
    int first_nrc = 0, rc;
    if (delivered_out)
        *delivered_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    /* Notify is a side effect: it must never run under a transaction that could still roll back. */
    if ((rc = txm_forbid_transaction(c, who)) != 0)
        return rc;
    if (!b->notify)
        return txm_error_set(TXM_EINVALID, "%s: the billing object has no notify callback (txm_billing_options.notify)",
                             who);
    if ((rc = outbox_init(&ob, b)) != 0)
        return rc;
    now = db_now(b);
    /* A plain read: the claim below decides who delivers. Rows under a live claim are skipped. */
    if ((rc = bl_sql(sel, sizeof sel,
                     "SELECT payout_id, message, claims FROM %s WHERE delivered = 0 AND payout_id > ? AND "
                     "(claimed_at IS NULL OR claimed_at < %s - %d) ORDER BY payout_id LIMIT %d",
                     b->t.outbox, now, BL_OUTBOX_LEASE_S, BL_DRAIN_PAGE)) != 0)
        return rc;
    for (;;) {
        txm_rows *r = NULL;
        txm_value p = txm_int(after);
        size_t rows = 0;
        if ((rc = txm_query(&r, c, sel, &p, 1)) != 0)
            break;
        while (txm_rows_next(r)) {
            bl_outcome outcome;
            int nrc;
            const char *msg = txm_rows_get_text(r, 1, NULL);
            rows++;
            after = txm_rows_get_i64(r, 0);
            rc = deliver_one(c, &ob, after, msg ? msg : "", txm_rows_get_i64(r, 2), &outcome, &nrc);
            if (rc)
                break;
            if (outcome == BL_DELIVERED)
                delivered++;
            else if (outcome == BL_NOTIFY_FAILED && failed++ == 0) {
                first_failed = after;
                first_nrc = nrc;
            }
        }
        txm_rows_free(r);
        if (rc || rows < BL_DRAIN_PAGE)
            break;
    }
    if (delivered_out)
        *delivered_out = delivered;
    if (rc)
        return rc;
    /* One undeliverable notification must not block the others: every row was tried. */
    if (failed)
        return txm_error_set(TXM_ERROR,
                             "%s: %zu notification(s) could not be delivered (first: payout %lld, notify returned "
                             "%d); they stay in the outbox",
                             who, failed, (long long)first_failed, first_nrc);
    return 0;
}
