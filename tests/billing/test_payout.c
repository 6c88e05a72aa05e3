/* Payouts with notifications (docs/billing.md, "Payouts"): a notification is delivered only after the
 * outermost COMMIT, never for a payout whose transaction rolled back; bulk runs are all-or-nothing;
 * the drain delivers what the hook could not, at-least-once, and two drains (or a drain and a hook)
 * never both deliver one row. Notifications are counted per payout id by a thread-safe recorder. */
#include "billing_fixture.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <txm/fault.h>

TestSuite(payout, .fini = bf_cleanup);

/* ---- the notification recorder --------------------------------------------------------------- */

#define REC_MAX 512
typedef struct rec {
    pthread_mutex_t mu;
    size_t n;
    int64_t ids[REC_MAX];
    int delivered[REC_MAX]; /* notify calls that returned 0 */
    int attempts[REC_MAX];  /* every notify call */
    char last_message[1024];
    int fail;               /* 1: notify fails (returns -7) */
    txm_conn *conn;         /* set: notify records txm_depth(conn) (same thread only) */
    int max_depth;
    long sleep_ns;          /* notify takes this long (widens race windows) */
    int64_t order[1024];    /* payout ids in delivery order */
    size_t n_order;
} rec;

static rec R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t rec_slot(int64_t id)
{
    size_t i;
    for (i = 0; i < R.n; i++)
        if (R.ids[i] == id)
            return i;
    cr_assert_lt(R.n, REC_MAX, "recorder full");
    R.ids[R.n] = id;
    R.delivered[R.n] = R.attempts[R.n] = 0;
    return R.n++;
}

static int rec_notify(int64_t payout_id, const char *message, void *payload)
{
    rec *r = payload;
    size_t i;
    int fail;
    if (r->sleep_ns) {
        struct timespec ts = {0, r->sleep_ns};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&r->mu);
    i = rec_slot(payout_id);
    r->attempts[i]++;
    fail = r->fail;
    if (!fail) {
        r->delivered[i]++;
        if (r->n_order < sizeof r->order / sizeof r->order[0])
            r->order[r->n_order++] = payout_id;
        snprintf(r->last_message, sizeof r->last_message, "%s", message);
    }
    if (r->conn && txm_depth(r->conn) > r->max_depth)
        r->max_depth = txm_depth(r->conn);
    pthread_mutex_unlock(&r->mu);
    return fail ? -7 : 0;
}

static int rec_delivered(int64_t id)
{
    size_t i;
    int n = 0;
    pthread_mutex_lock(&R.mu);
    for (i = 0; i < R.n; i++)
        if (R.ids[i] == id)
            n = R.delivered[i];
    pthread_mutex_unlock(&R.mu);
    return n;
}

static int rec_attempts(int64_t id)
{
    size_t i;
    int n = 0;
    pthread_mutex_lock(&R.mu);
    for (i = 0; i < R.n; i++)
        if (R.ids[i] == id)
            n = R.attempts[i];
    pthread_mutex_unlock(&R.mu);
    return n;
}

static int rec_total(void)
{
    size_t i;
    int n = 0;
    pthread_mutex_lock(&R.mu);
    for (i = 0; i < R.n; i++)
        n += R.delivered[i];
    pthread_mutex_unlock(&R.mu);
    return n;
}

/* Every payout of ids[0..n) was delivered exactly once. */
static void assert_each_once(const int64_t *ids, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        cr_assert_eq(rec_delivered(ids[i]), 1, "payout %lld delivered %d times", (long long)ids[i],
                     rec_delivered(ids[i]));
}

/* ---- fixture --------------------------------------------------------------------------------- */

/* b notifies through the recorder; b0 (same tables) has no notify: what it pays stays in the
 * outbox, as after a crash between COMMIT and hook. */
static txm_billing *setup(txm_conn *c, txm_billing **b0_out)
{
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b;
    o.notify = rec_notify;
    o.notify_payload = &R;
    b = bf_billing(c, &o);
    if (b0_out)
        BF_OK(txm_billing_new(b0_out, c, NULL));
    return b;
}

static int64_t account(const txm_billing *b, txm_conn *c, const char *name)
{
    int64_t id = 0;
    BF_OK(txm_billing_account(b, c, name, 0, &id, NULL));
    return id;
}

static int64_t payout(const txm_billing *b, txm_conn *c, int64_t acct, int64_t amount)
{
    int64_t id = 0;
    BF_OK(txm_billing_payout_create(b, c, acct, amount, &id));
    cr_assert_gt(id, 0);
    return id;
}

static void status_of(txm_conn *c, int64_t id, char *buf, size_t size)
{
    txm_rows *r = NULL;
    txm_value p = txm_int(id);
    BF_OK(txm_query(&r, c, "SELECT status FROM billing_payouts WHERE id = ?", &p, 1));
    cr_assert(txm_rows_next(r), "payout %lld is missing", (long long)id);
    snprintf(buf, size, "%s", txm_rows_get_text(r, 0, NULL));
    txm_rows_free(r);
}

static void assert_status(txm_conn *c, int64_t id, const char *want)
{
    char s[32];
    status_of(c, id, s, sizeof s);
    cr_assert_str_eq(s, want, "payout %lld is '%s', expected '%s'", (long long)id, s, want);
}

/* outbox.delivered of the payout's row, -1 if it has none. */
static int64_t outbox_delivered(txm_conn *c, int64_t id)
{
    int64_t v = -1;
    txm_value p = txm_int(id);
    int rc = txm_query_i64(c, &v, "SELECT delivered FROM billing_outbox WHERE payout_id = ?", &p, 1);
    if (rc == TXM_ENOTFOUND)
        return -1;
    cr_assert_eq(rc, 0, "%s", txm_error_last()->message);
    return v;
}

static int64_t count_sql(txm_conn *c, const char *sql)
{
    int64_t n = -1;
    BF_OK(txm_query_i64(c, &n, sql, NULL, 0));
    return n;
}

static size_t drain(const txm_billing *b, txm_conn *c)
{
    size_t n = 999;
    BF_OK(txm_billing_outbox_drain(b, c, &n));
    return n;
}

static txm_conn *open_fault(void)
{
    char url[600];
    txm_conn *c = NULL;
    snprintf(url, sizeof url, "fault+%s", bf_url());
    BF_OK(txm_open(&c, url, NULL));
    return c;
}

/* ---- single payouts --------------------------------------------------------------------------- */

Test(payout, mark_paid_notifies_once_after_the_outermost_commit)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "alice");
    int64_t p1 = payout(b, c, acct, 1500), p2 = payout(b, c, acct, 700);
    char want[128];
    txm_tx *tx = NULL, *inner = NULL;

    R.conn = c;
    /* Inside a caller's transaction, two levels deep: nothing is delivered before the outermost commit. */
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_begin(&inner, c, NULL));
    BF_OK(txm_billing_payout_mark_paid(b, c, p1));
    assert_status(c, p1, "paid");
    cr_assert_eq(outbox_delivered(c, p1), 0, "the outbox row is written in the same transaction");
    BF_OK(txm_commit(inner));
    cr_assert_eq(rec_attempts(p1), 0, "notify was called before the outermost COMMIT");
    BF_OK(txm_commit(tx));
    cr_assert_eq(rec_delivered(p1), 1);
    cr_assert_eq(R.max_depth, 0, "notify ran inside a transaction");
    snprintf(want, sizeof want, "payout %lld: 1500 paid to account %lld (alice)", (long long)p1, (long long)acct);
    cr_assert_str_eq(R.last_message, want);
    cr_assert_eq(outbox_delivered(c, p1), 1, "the hook marks the row delivered");

    /* Outside a transaction: its own transaction; delivered when the call returns. */
    txm_stats_reset(c);
    BF_OK(txm_billing_payout_mark_paid(b, c, p2));
    {
        txm_stats st;
        txm_stats_get(c, &st);
        printf("payout %s: mark_paid in its own transaction: %llu round trips, %llu statements (hook included)\n",
               bf_engine(), (unsigned long long)st.round_trips, (unsigned long long)st.statements);
        cr_assert_eq(st.hooks_run, 1);
    }
    cr_assert_eq(rec_delivered(p2), 1);
    cr_assert_eq(outbox_delivered(c, p2), 1);
    cr_assert_eq(drain(b, c), 0, "a drain after successful hooks delivers nothing");
    cr_assert_eq(rec_total(), 2);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, a_rolled_back_transaction_notifies_nobody)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "bob");
    int64_t p1 = payout(b, c, acct, 100), p2 = payout(b, c, acct, 200);
    txm_tx *tx = NULL, *inner = NULL;

    /* The caller's transaction rolls back after the payout was marked. */
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_payout_mark_paid(b, c, p1));
    BF_OK(txm_rollback(tx));
    cr_assert_eq(rec_attempts(p1), 0);
    assert_status(c, p1, "pending");
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_outbox"), 0);

    /* Only the nested level rolls back; the outer transaction commits other work. */
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_payout_mark_paid(b, c, p2));
    BF_OK(txm_begin(&inner, c, NULL));
    BF_OK(txm_billing_payout_mark_paid(b, c, p1));
    BF_OK(txm_rollback(inner));
    BF_OK(txm_commit(tx));
    cr_assert_eq(rec_attempts(p1), 0, "a rolled-back level's payout was notified");
    cr_assert_eq(rec_delivered(p2), 1);
    assert_status(c, p1, "pending");
    cr_assert_eq(outbox_delivered(c, p1), -1);
    cr_assert_eq(drain(b, c), 0);
    cr_assert_eq(rec_total(), 1);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, state_errors_name_the_status_and_unknown_ids_are_not_found)
{
    static const int64_t unknown[] = {0, -1, INT64_MAX, INT64_MIN, 987654321};
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "carol");
    int64_t p1 = payout(b, c, acct, 100), p2 = payout(b, c, acct, 300);
    txm_tx *tx = NULL;
    size_t i;
    char want[64];

    BF_OK(txm_billing_payout_mark_paid(b, c, p1));
    cr_assert_eq(txm_billing_payout_mark_paid(b, c, p1), TXM_EINVALID);
    snprintf(want, sizeof want, "payout %lld is 'paid'", (long long)p1);
    cr_assert(strstr(txm_error_last()->message, want) != NULL, "%s", txm_error_last()->message);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_payout_mark_paid") != NULL);
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        cr_assert_eq(txm_billing_payout_mark_paid(b, c, unknown[i]), TXM_ENOTFOUND, "id %lld",
                     (long long)unknown[i]);
        cr_assert(strstr(txm_error_last()->message, "no payout") != NULL, "%s", txm_error_last()->message);
    }
    cr_assert_eq(rec_delivered(p1), 1, "a refused second mark notified again");

    /* Inside a caller's transaction the state error undoes only its own level. */
    BF_OK(txm_begin(&tx, c, NULL));
    cr_assert_eq(txm_billing_payout_mark_paid(b, c, p1), TXM_EINVALID);
    cr_assert_eq(txm_billing_payout_mark_paid(b, c, 424242), TXM_ENOTFOUND);
    BF_OK(txm_billing_payout_mark_paid(b, c, p2));
    BF_OK(txm_commit(tx));
    assert_status(c, p2, "paid");
    cr_assert_eq(rec_delivered(p2), 1);
    cr_assert_eq(rec_total(), 2);
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_outbox"), 2);
    txm_billing_free(b);
    txm_close(c);
}

/* ---- bulk --------------------------------------------------------------------------------------- */

static void make_payouts(const txm_billing *b, txm_conn *c, int64_t acct, int64_t *ids, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        ids[i] = payout(b, c, acct, (int64_t)(100 * (i + 1)));
}

Test(payout, bulk_is_all_or_nothing_and_a_rerun_notifies_each_payout_once)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "dave");
    int64_t ids[5], bad[5], paid_before;
    size_t i, failed = 99;

    make_payouts(b, c, acct, ids, 5);
    paid_before = payout(b, c, acct, 5);
    BF_OK(txm_billing_payout_mark_paid(b, c, paid_before));
    cr_assert_eq(rec_total(), 1);

    /* The 4th is unknown. */
    memcpy(bad, ids, sizeof bad);
    bad[3] = 99999999;
    cr_assert_eq(txm_billing_payouts_mark_paid(b, c, bad, 5, &failed), TXM_ENOTFOUND);
    cr_assert_eq(failed, 3);
    cr_assert(strstr(txm_error_last()->message, "item 3") != NULL, "%s", txm_error_last()->message);
    /* The 4th is already paid. */
    bad[3] = paid_before;
    failed = 99;
    cr_assert_eq(txm_billing_payouts_mark_paid(b, c, bad, 5, &failed), TXM_EINVALID);
    cr_assert_eq(failed, 3);
    cr_assert(strstr(txm_error_last()->message, "'paid'") != NULL, "%s", txm_error_last()->message);
    /* The same payout twice: the second sees the first's work and fails. */
    bad[3] = ids[0];
    cr_assert_eq(txm_billing_payouts_mark_paid(b, c, bad, 5, &failed), TXM_EINVALID);
    cr_assert_eq(failed, 3);
    for (i = 0; i < 5; i++) {
        assert_status(c, ids[i], "pending");
        cr_assert_eq(rec_attempts(ids[i]), 0, "item %zu notified by a failed bulk run", i);
    }
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_outbox"), 1);
    cr_assert_eq(rec_total(), 1);

    /* Fixed input: every payout paid, exactly one notification each. */
    BF_OK(txm_billing_payouts_mark_paid(b, c, ids, 5, &failed));
    cr_assert_eq(failed, 5, "failed index on success is n");
    for (i = 0; i < 5; i++) {
        assert_status(c, ids[i], "paid");
        cr_assert_eq(rec_delivered(ids[i]), 1);
        cr_assert_eq(outbox_delivered(c, ids[i]), 1);
    }
    cr_assert_eq(drain(b, c), 0);
    cr_assert_eq(rec_total(), 6);
    /* A second run of the same input is refused, notifying nobody again. */
    cr_assert_eq(txm_billing_payouts_mark_paid(b, c, ids, 5, &failed), TXM_EINVALID);
    cr_assert_eq(failed, 0);
    cr_assert_eq(rec_total(), 6);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, bulk_inside_a_callers_transaction)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "erin");
    int64_t ids[4], bad[4], other = 0;
    size_t failed = 99, i;
    txm_tx *tx = NULL;

    make_payouts(b, c, acct, ids, 4);
    memcpy(bad, ids, sizeof bad);
    bad[2] = -5;
    BF_OK(txm_begin(&tx, c, NULL));
    other = payout(b, c, acct, 42); /* the caller's own work */
    cr_assert_eq(txm_billing_payouts_mark_paid(b, c, bad, 4, &failed), TXM_ENOTFOUND);
    cr_assert_eq(failed, 2);
    BF_OK(txm_billing_payouts_mark_paid(b, c, ids, 2, &failed)); /* the first two only */
    cr_assert_eq(rec_total(), 0, "notified inside the caller's transaction");
    BF_OK(txm_commit(tx));
    assert_status(c, other, "pending");
    for (i = 0; i < 4; i++) {
        assert_status(c, ids[i], i < 2 ? "paid" : "pending");
        cr_assert_eq(rec_delivered(ids[i]), i < 2 ? 1 : 0);
    }
    cr_assert_eq(rec_total(), 2);

    /* Misuse. */
    cr_assert_eq(txm_billing_payouts_mark_paid(b, c, NULL, 3, &failed), TXM_EINVALID);
    BF_OK(txm_billing_payouts_mark_paid(b, c, NULL, 0, &failed));
    cr_assert_eq(failed, 0);
    BF_OK(txm_billing_payouts_mark_paid(b, c, ids + 2, 2, NULL));
    cr_assert_eq(rec_total(), 4);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, a_retried_bulk_run_notifies_once_per_payout)
{
    txm_conn *c = open_fault();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "frank");
    int64_t ids[5];
    size_t failed = 99, i;
    txm_stats st;

    make_payouts(b, c, acct, ids, 5);
    /* Item 2's insert (statement 9 of the attempt: 3 per item) dies as a deadlock victim; hooks of
     * items 0 and 1 were registered in the failed attempt. */
    BF_OK(txm_fault_set(c, "fault=deadlock&fault_at=9"));
    txm_stats_reset(c);
    BF_OK(txm_billing_payouts_mark_paid(b, c, ids, 5, &failed));
    cr_assert_eq(txm_fault_count(c), 1, "the fault never fired");
    txm_stats_get(c, &st);
    cr_assert_eq(st.retries, 1);
    cr_assert_eq(failed, 5);
    for (i = 0; i < 5; i++)
        cr_assert_eq(rec_delivered(ids[i]), 1, "payout %zu delivered %d times", i, rec_delivered(ids[i]));
    cr_assert_eq(rec_total(), 5);
    printf("payout %s: bulk of 5 with one deadlock: %llu retry, %llu round trips, %llu savepoints\n", bf_engine(),
           (unsigned long long)st.retries, (unsigned long long)st.round_trips, (unsigned long long)st.savepoints);
    txm_billing_free(b);
    txm_close(c);
}

/* ---- failures between commit and delivery ------------------------------------------------------ */

Test(payout, a_failing_notify_is_ehook_and_the_drain_delivers_it_once)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "gina");
    int64_t p1 = payout(b, c, acct, 10), p2 = payout(b, c, acct, 20);
    txm_tx *tx = NULL;
    size_t n = 99;

    R.fail = 1;
    cr_assert_eq(txm_billing_payout_mark_paid(b, c, p1), TXM_EHOOK);
    cr_assert_not_null(txm_error_last()->cause);
    cr_assert(strstr(txm_error_last()->cause->message, "outbox") != NULL, "%s", txm_error_last()->cause->message);
    assert_status(c, p1, "paid"); /* committed */
    cr_assert_eq(outbox_delivered(c, p1), 0);
    cr_assert_eq(rec_attempts(p1), 1);
    /* The same through a caller's transaction: its txm_commit reports TXM_EHOOK. */
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_payout_mark_paid(b, c, p2));
    cr_assert_eq(txm_commit(tx), TXM_EHOOK);
    assert_status(c, p2, "paid");
    /* A drain while notify still fails: both tried, both stay, the error says so. */
    cr_assert_eq(txm_billing_outbox_drain(b, c, &n), TXM_ERROR);
    cr_assert_eq(n, 0);
    cr_assert(strstr(txm_error_last()->message, "2 notification") != NULL, "%s", txm_error_last()->message);
    cr_assert_eq(rec_attempts(p1), 2);
    R.fail = 0;
    cr_assert_eq(drain(b, c), 2);
    cr_assert_eq(rec_delivered(p1), 1);
    cr_assert_eq(rec_delivered(p2), 1);
    cr_assert_eq(outbox_delivered(c, p1), 1);
    cr_assert_eq(drain(b, c), 0, "a second drain delivered again");
    cr_assert_eq(rec_total(), 2);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, paid_without_a_hook_the_drain_delivers_once)
{
    txm_conn *c = bf_open();
    txm_billing *b0 = NULL;
    txm_billing *b = setup(c, &b0);
    int64_t acct = account(b, c, "hank");
    int64_t ids[3];
    size_t i;
    txm_tx *tx = NULL;

    make_payouts(b, c, acct, ids, 3);
    /* No notify configured when they were paid: like a crash between COMMIT and the hook. */
    BF_OK(txm_billing_payout_mark_paid(b0, c, ids[0]));
    BF_OK(txm_billing_payouts_mark_paid(b0, c, ids + 1, 2, NULL));
    cr_assert_eq(rec_total(), 0);
    cr_assert_eq(txm_billing_outbox_drain(b0, c, NULL), TXM_EINVALID, "a drain without notify");
    BF_OK(txm_begin(&tx, c, NULL));
    cr_assert_eq(txm_billing_outbox_drain(b, c, NULL), TXM_EMISUSE, "a drain inside a transaction");
    BF_OK(txm_rollback(tx));
    cr_assert_eq(rec_total(), 0);
    cr_assert_eq(drain(b, c), 3);
    for (i = 0; i < 3; i++)
        cr_assert_eq(rec_delivered(ids[i]), 1);
    cr_assert_eq(drain(b, c), 0);
    cr_assert_eq(rec_total(), 3);
    txm_billing_free(b0);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, the_drain_pages_through_a_large_backlog_in_payout_id_order)
{
    enum { N = 230 }; /* more than two of the drain's pages */
    txm_conn *c = bf_open();
    txm_billing *b0 = NULL;
    txm_billing *b = setup(c, &b0);
    int64_t acct = account(b, c, "olga"), ids[N];
    size_t i;

    make_payouts(b, c, acct, ids, N);
    /* Paid in reverse order: the outbox's insertion order is not the payout-id order. */
    for (i = 0; i < N; i++)
        BF_OK(txm_billing_payout_mark_paid(b0, c, ids[N - 1 - i]));
    cr_assert_eq(drain(b, c), N);
    cr_assert_eq(R.n_order, N);
    for (i = 1; i < N; i++)
        cr_assert_lt(R.order[i - 1], R.order[i], "delivery %zu out of payout-id order", i);
    for (i = 0; i < N; i++)
        cr_assert_eq(rec_delivered(ids[i]), 1);
    cr_assert_eq(drain(b, c), 0);
    txm_billing_free(b0);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, the_hook_does_not_need_the_billing_object_after_the_call)
{
    txm_conn *c = bf_open();
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b = setup(c, NULL), *tmp = NULL;
    int64_t acct = account(b, c, "pat"), id = payout(b, c, acct, 5);
    txm_tx *tx = NULL;

    o.notify = rec_notify;
    o.notify_payload = &R;
    BF_OK(txm_billing_new(&tmp, c, &o));
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_payout_mark_paid(tmp, c, id));
    txm_billing_free(tmp); /* freed before the commit that runs its hook */
    BF_OK(txm_commit(tx));
    cr_assert_eq(rec_delivered(id), 1);
    cr_assert_eq(outbox_delivered(c, id), 1);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, killed_connections_between_commit_and_delivery)
{
    txm_conn *c = bf_open(), *f = open_fault();
    txm_billing *b = setup(c, NULL), *bf = NULL;
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    int64_t acct = account(b, c, "ida");
    int64_t p1 = payout(b, c, acct, 1), p2 = payout(b, c, acct, 2), p3 = payout(b, c, acct, 3),
            p4 = payout(b, c, acct, 4), p5 = payout(b, c, acct, 5);
    unsigned long faults = 0;
    int rc;

    o.notify = rec_notify;
    o.notify_payload = &R;
    BF_OK(txm_billing_new(&bf, f, &o));

    /* 1. The connection dies with COMMIT executed: no hook runs, the payout is paid, its notification
     * waits in the outbox. */
    BF_OK(txm_fault_set(f, "fault=commit_unknown"));
    cr_assert_eq(txm_billing_payout_mark_paid(bf, f, p1), TXM_ECOMMIT_UNKNOWN);
    cr_assert_eq(txm_fault_count(f), ++faults, "the fault never fired");
    cr_assert_eq(rec_attempts(p1), 0);
    assert_status(c, p1, "paid");
    cr_assert_eq(drain(b, c), 1);
    cr_assert_eq(rec_delivered(p1), 1);
    BF_OK(txm_reconnect(f));

    /* 2. Dies before COMMIT executed: nothing paid, nothing to deliver. */
    BF_OK(txm_fault_set(f, "fault=commit_unknown_aborted"));
    cr_assert_eq(txm_billing_payout_mark_paid(bf, f, p2), TXM_ECOMMIT_UNKNOWN);
    cr_assert_eq(txm_fault_count(f), ++faults, "the fault never fired");
    assert_status(c, p2, "pending");
    cr_assert_eq(drain(b, c), 0);
    cr_assert_eq(rec_attempts(p2), 0);
    BF_OK(txm_reconnect(f));

    /* 3. Dies at the hook's claim (statement 4: update, select, insert, claim): committed, TXM_EHOOK,
     * the row is unclaimed and the drain delivers it. */
    BF_OK(txm_fault_set(f, "fault=disconnect&fault_at=4"));
    rc = txm_billing_payout_mark_paid(bf, f, p3);
    cr_assert_eq(rc, TXM_EHOOK, "%s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert_eq(txm_fault_count(f), ++faults, "the fault never fired");
    cr_assert_eq(rec_attempts(p3), 0);
    assert_status(c, p3, "paid");
    cr_assert_eq(drain(b, c), 1);
    cr_assert_eq(rec_delivered(p3), 1);
    BF_OK(txm_reconnect(f));

    /* 4. Dies after notify, at the mark (statement 5): delivered once, but the row stays claimed.
     * A drain leaves a live claim alone; once the lease has lapsed (simulated by ageing the claim)
     * it delivers again: at-least-once, the receiver dedupes by payout id. */
    BF_OK(txm_fault_set(f, "fault=disconnect&fault_at=5"));
    cr_assert_eq(txm_billing_payout_mark_paid(bf, f, p4), TXM_EHOOK);
    cr_assert_eq(txm_fault_count(f), ++faults, "the fault never fired");
    cr_assert_eq(rec_delivered(p4), 1);
    cr_assert_eq(outbox_delivered(c, p4), 0);
    cr_assert_eq(drain(b, c), 0, "a drain took over a live claim");
    BF_OK(txm_exec(c, "UPDATE billing_outbox SET claimed_at = claimed_at - 100000 WHERE delivered = 0", NULL, 0, NULL));
    cr_assert_eq(drain(b, c), 1);
    cr_assert_eq(rec_delivered(p4), 2);
    cr_assert_eq(outbox_delivered(c, p4), 1);
    BF_OK(txm_reconnect(f));

    /* 5. Healthy again. */
    BF_OK(txm_fault_set(f, NULL));
    BF_OK(txm_billing_payout_mark_paid(bf, f, p5));
    cr_assert_eq(rec_delivered(p5), 1);
    cr_assert_eq(drain(b, c), 0);
    cr_assert_eq(rec_total(), 5);
    txm_billing_free(bf);
    txm_billing_free(b);
    txm_close(f);
    txm_close(c);
}

/* ---- concurrency ----------------------------------------------------------------------------- */

typedef struct drainer {
    const txm_billing *b;
    pthread_barrier_t *bar;
    size_t delivered;
    int rc;
    char err[256];
} drainer;

static void *drain_thread(void *arg)
{
    drainer *d = arg;
    txm_conn *c = NULL;
    d->rc = txm_open(&c, bf_url(), NULL);
    pthread_barrier_wait(d->bar);
    if (d->rc == 0)
        d->rc = txm_billing_outbox_drain(d->b, c, &d->delivered);
    if (d->rc)
        snprintf(d->err, sizeof d->err, "%s", txm_error_last()->message);
    txm_close(c);
    return NULL;
}

Test(payout, two_concurrent_drains_deliver_each_notification_once)
{
    enum { N = 50, ROUNDS = 3 };
    txm_conn *c = bf_open();
    txm_billing *b0 = NULL;
    txm_billing *b = setup(c, &b0);
    int64_t acct = account(b, c, "jo"), ids[N * ROUNDS];
    int round;

    R.sleep_ns = 200000; /* 0.2 ms per notify: the drains overlap */
    for (round = 0; round < ROUNDS; round++) {
        pthread_barrier_t bar;
        pthread_t th[2];
        drainer d[2];
        int k;
        make_payouts(b, c, acct, ids + round * N, N);
        BF_OK(txm_billing_payouts_mark_paid(b0, c, ids + round * N, N, NULL));
        pthread_barrier_init(&bar, NULL, 2);
        for (k = 0; k < 2; k++) {
            memset(&d[k], 0, sizeof d[k]);
            d[k].b = b;
            d[k].bar = &bar;
            pthread_create(&th[k], NULL, drain_thread, &d[k]);
        }
        for (k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
        pthread_barrier_destroy(&bar);
        for (k = 0; k < 2; k++)
            cr_assert_eq(d[k].rc, 0, "drain %d: %s", k, d[k].err);
        printf("payout %s: round %d: two drains delivered %zu + %zu of %d\n", bf_engine(), round, d[0].delivered,
               d[1].delivered, N);
        cr_assert_eq(d[0].delivered + d[1].delivered, N);
    }
    assert_each_once(ids, N * ROUNDS);
    cr_assert_eq(rec_total(), N * ROUNDS);
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_outbox WHERE delivered = 0"), 0);
    txm_billing_free(b0);
    txm_billing_free(b);
    txm_close(c);
}

typedef struct payer {
    const txm_billing *b;
    const int64_t *ids;
    size_t n;
    volatile int done;
    int rc;
    char err[256];
} payer;

static void *pay_thread(void *arg)
{
    payer *p = arg;
    txm_conn *c = NULL;
    size_t i;
    p->rc = txm_open(&c, bf_url(), NULL);
    for (i = 0; p->rc == 0 && i < p->n; i++)
        p->rc = txm_billing_payout_mark_paid(p->b, c, p->ids[i]);
    if (p->rc)
        snprintf(p->err, sizeof p->err, "%s", txm_error_last()->message);
    __atomic_store_n(&p->done, 1, __ATOMIC_SEQ_CST);
    txm_close(c);
    return NULL;
}

Test(payout, hooks_and_a_concurrent_drain_deliver_each_notification_once)
{
    enum { N = 40 };
    txm_conn *c = bf_open(), *d = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "kim"), ids[N];
    size_t by_drain = 0, drains = 0;
    pthread_t th;
    payer p;

    R.sleep_ns = 100000;
    make_payouts(b, c, acct, ids, N);
    memset(&p, 0, sizeof p);
    p.b = b;
    p.ids = ids;
    p.n = N;
    pthread_create(&th, NULL, pay_thread, &p);
    while (!__atomic_load_n(&p.done, __ATOMIC_SEQ_CST)) {
        by_drain += drain(b, d);
        drains++;
    }
    pthread_join(th, NULL);
    cr_assert_eq(p.rc, 0, "%s", p.err);
    by_drain += drain(b, d);
    printf("payout %s: %d payouts paid while %zu drains ran: %zu delivered by the drains, %zu by hooks\n",
           bf_engine(), N, drains + 1, by_drain, (size_t)N - by_drain);
    assert_each_once(ids, N);
    cr_assert_eq(rec_total(), N);
    txm_billing_free(b);
    txm_close(d);
    txm_close(c);
}

typedef struct racer {
    const txm_billing *b;
    const int64_t *ids;
    size_t n, paid, refused;
    pthread_barrier_t *bar;
    int rc;
    char err[256];
} racer;

static void *race_thread(void *arg)
{
    racer *r = arg;
    txm_conn *c = NULL;
    size_t i;
    r->rc = txm_open(&c, bf_url(), NULL);
    pthread_barrier_wait(r->bar);
    for (i = 0; r->rc == 0 && i < r->n; i++) {
        int rc = txm_billing_payout_mark_paid(r->b, c, r->ids[i]);
        if (rc == 0)
            r->paid++;
        else if (rc == TXM_EINVALID)
            r->refused++;
        else {
            r->rc = rc;
            snprintf(r->err, sizeof r->err, "%s: %s", txm_err_name(rc), txm_error_last()->message);
        }
    }
    txm_close(c);
    return NULL;
}

Test(payout, two_threads_paying_the_same_payouts_pay_and_notify_each_once)
{
    enum { N = 30 };
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "quinn"), ids[N];
    pthread_barrier_t bar;
    pthread_t th[2];
    racer r[2];
    int k;

    make_payouts(b, c, acct, ids, N);
    pthread_barrier_init(&bar, NULL, 2);
    for (k = 0; k < 2; k++) {
        memset(&r[k], 0, sizeof r[k]);
        r[k].b = b;
        r[k].ids = ids;
        r[k].n = N;
        r[k].bar = &bar;
        pthread_create(&th[k], NULL, race_thread, &r[k]);
    }
    for (k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&bar);
    for (k = 0; k < 2; k++)
        cr_assert_eq(r[k].rc, 0, "thread %d: %s", k, r[k].err);
    printf("payout %s: two threads paying the same %d payouts: %zu + %zu paid, %zu + %zu refused\n", bf_engine(), N,
           r[0].paid, r[1].paid, r[0].refused, r[1].refused);
    cr_assert_eq(r[0].paid + r[1].paid, N);
    cr_assert_eq(r[0].refused + r[1].refused, N);
    assert_each_once(ids, N);
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_outbox"), N);
    txm_billing_free(b);
    txm_close(c);
}

/* ---- hooks, hostile input, misuse -------------------------------------------------------------- */

typedef struct hook_arg {
    const txm_billing *b;
    int64_t id;
    int rc;
} hook_arg;

static int pay_in_hook(txm_conn *c, void *payload)
{
    hook_arg *h = payload;
    h->rc = txm_billing_payout_mark_paid(h->b, c, h->id);
    return h->rc;
}

Test(payout, mark_paid_from_an_on_commit_hook)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "lee");
    int64_t p1 = payout(b, c, acct, 77);
    hook_arg h = {b, p1, 99};
    txm_tx *tx = NULL;

    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_exec(c, "UPDATE billing_accounts SET name = name WHERE id = 0", NULL, 0, NULL));
    BF_OK(txm_on_commit(c, pay_in_hook, &h, NULL));
    cr_assert_eq(rec_total(), 0);
    BF_OK(txm_commit(tx));
    cr_assert_eq(h.rc, 0, "%s", txm_error_last()->message);
    assert_status(c, p1, "paid");
    cr_assert_eq(rec_delivered(p1), 1, "the notification queued by the hook's transaction did not run");
    cr_assert_eq(outbox_delivered(c, p1), 1);
    /* A second hook paying the same payout fails: the commit reports it. */
    h.rc = 99;
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_on_commit(c, pay_in_hook, &h, NULL));
    cr_assert_eq(txm_commit(tx), TXM_EHOOK);
    cr_assert_eq(h.rc, TXM_EINVALID);
    cr_assert_eq(rec_total(), 1);
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, hostile_names_reach_notify_verbatim_and_bad_arguments_are_refused)
{
    static const char *const names[] = {"o'brien\"; DROP TABLE billing_payouts; --", "`tick` \\ back\\slash",
                                        "line\nbreak\ttab", "\xc3\xbcnic\xc3\xb6" "de \xe2\x82\xac 100%s %n ?",
                                        "?,?,?) --"};
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    char longname[201], want[512];
    int64_t acct, id, big;
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0] + 1; i++) {
        const char *name = names[i < sizeof names / sizeof names[0] ? i : 0];
        txm_rows *r = NULL;
        txm_value p;
        if (i == sizeof names / sizeof names[0]) {
            memset(longname, 'x', 200);
            longname[200] = '\0';
            name = longname;
        }
        acct = account(b, c, name);
        id = payout(b, c, acct, 12345);
        BF_OK(txm_billing_payout_mark_paid(b, c, id));
        snprintf(want, sizeof want, "payout %lld: 12345 paid to account %lld (%s)", (long long)id, (long long)acct,
                 name);
        cr_assert_str_eq(R.last_message, want);
        p = txm_int(id);
        BF_OK(txm_query(&r, c, "SELECT message FROM billing_outbox WHERE payout_id = ?", &p, 1));
        cr_assert(txm_rows_next(r));
        cr_assert_str_eq(txm_rows_get_text(r, 0, NULL), want);
        txm_rows_free(r);
        cr_assert_eq(rec_delivered(id), 1);
    }
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_payouts"), 6, "the tables survived");

    acct = account(b, c, "maximal");
    big = payout(b, c, acct, INT64_MAX);
    BF_OK(txm_billing_payout_mark_paid(b, c, big));
    snprintf(want, sizeof want, "payout %lld: 9223372036854775807 paid to account %lld (maximal)", (long long)big,
             (long long)acct);
    cr_assert_str_eq(R.last_message, want);

    cr_assert_eq(txm_billing_payout_create(b, c, acct, 0, &id), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_payout_create") != NULL);
    cr_assert_eq(txm_billing_payout_create(b, c, acct, -1, &id), TXM_EINVALID);
    cr_assert_eq(txm_billing_payout_create(b, c, acct, INT64_MIN, &id), TXM_EINVALID);
    cr_assert_eq(txm_billing_payout_create(b, c, 987654, 5, &id), TXM_ENOTFOUND);
    cr_assert(strstr(txm_error_last()->message, "no account") != NULL, "%s", txm_error_last()->message);
    cr_assert_eq(id, 0);
    cr_assert_eq(txm_billing_payout_create(b, c, acct, 5, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_payout_create(NULL, c, acct, 5, &id), TXM_EINVALID);
    cr_assert_eq(txm_billing_payout_mark_paid(b, NULL, 1), TXM_EINVALID);
    cr_assert_eq(txm_billing_payouts_mark_paid(NULL, c, &big, 1, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_outbox_drain(b, NULL, NULL), TXM_EINVALID);
    cr_assert_eq(count_sql(c, "SELECT COUNT(*) FROM billing_payouts"), 7, "a refused create wrote a row");
    txm_billing_free(b);
    txm_close(c);
}

Test(payout, constraints_are_named_and_enforced)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c, NULL);
    int64_t acct = account(b, c, "nina"), id = payout(b, c, acct, 9);
    txm_value p[2];
    int rc;

    /* Direct writes that bypass the API still cannot break the rules. */
    p[0] = txm_int(id);
    rc = txm_exec(c, "UPDATE billing_payouts SET status = 'refunded' WHERE id = ?", p, 1, NULL);
    cr_assert_eq(rc, TXM_ECHECK, "%s", txm_err_name(rc));
    BF_OK(txm_billing_payout_mark_paid(b, c, id));
    p[1] = txm_text("again");
    rc = txm_exec(c, "INSERT INTO billing_outbox (payout_id, message) VALUES (?, ?)", p, 2, NULL);
    cr_assert_eq(rc, TXM_EUNIQUE, "%s", txm_err_name(rc));
    if (strcmp(bf_engine(), "sqlite") != 0)
        cr_assert_str_eq(txm_error_last()->constraint_name, "billing_outbox_payout_key");
    rc = txm_exec(c, "UPDATE billing_payouts SET amount = 0 WHERE id = ?", p, 1, NULL);
    cr_assert_eq(rc, TXM_ECHECK, "%s", txm_err_name(rc));
    txm_billing_free(b);
    txm_close(c);
}
