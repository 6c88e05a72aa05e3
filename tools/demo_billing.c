/*
 * txm demo, billing stories (libtxm-billing, docs/billing.md), each the incident it prevents:
 *   5. ledger: two payments computed their running balance from the same "last" row. Posts,
 *      an idempotent replay, a transfer, a refused overdraft; then several threads (one connection
 *      each) post and transfer at once, and txm_billing_verify recomputes every chain.
 *   6. usage: an api key is deleted (ON DELETE SET NULL) between reading its id and inserting the
 *      snapshot; the insert is retried once with the key nulled, and no quota goes to a ghost key.
 *   7. get-or-create: several threads get-or-create the same customer at once: one row, one id.
 *   8. payouts: a bulk run with one bad item pays nothing and notifies nobody; the re-run after the
 *      fix notifies each payout exactly once, after the commit.
 *   9. import: cancel returns only after running workers finished; no row appears after it.
 * Tables are named txm_demo_b_* and dropped at the end.
 */
#include "tool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "txm.h"
#include "txm/billing.h"

#define THREADS 4
#define OPS_PER_THREAD 250
#define PREFIX "txm_demo_b_"

typedef struct bdemo {
    txm_conn *c;
    const char *url; /* for the worker threads' own connections */
    txm_billing *b;
    pthread_mutex_t mu;
    int notified[64]; /* notifications per payout id (ids are small in the demo) */
    int notified_total;
    int finished; /* ledger threads done (under mu) */
} bdemo;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- 5. ledger ------------------------------------------------------------------------------ */

typedef struct worker {
    bdemo *d;
    int index;
    int64_t acct[3];
    int64_t posted;   /* sum of amounts this thread posted (money entering the system) */
    unsigned long retries;
    int rc;
    char err[300];
} worker;

static void count_retry(unsigned attempt, const txm_error *err, void *payload)
{
    (void)attempt;
    (void)err;
    ((worker *)payload)->retries++;
}

static void *ledger_worker(void *arg)
{
    worker *w = arg;
    txm_conn *c = NULL;
    txm_billing *b = NULL;
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_retry_policy p;
    unsigned seed = 77u + (unsigned)w->index;
    int i, rc;
    txm_billing_retry_policy_default(&p);
    p.before_retry = count_retry;
    p.payload = w;
    o.prefix = PREFIX;
    o.retry = &p;
    if ((rc = txm_open(&c, w->d->url, NULL)) != 0 || (rc = txm_billing_new(&b, c, &o)) != 0)
        goto out;
    for (i = 0; i < OPS_PER_THREAD && rc == 0; i++) {
        char key[64];
        int r = rand_r(&seed) % 10;
        int64_t amount = 1 + rand_r(&seed) % 100;
        snprintf(key, sizeof key, "demo-%d-%d", w->index, i);
        if (r < 6) {
            txm_billing_entry e;
            rc = txm_billing_post(b, c, w->acct[r % 3], amount, key, &e);
            if (rc == 0 && !e.replayed)
                w->posted += amount;
        } else {
            int from = r % 3, to = (r + 1) % 3;
            rc = txm_billing_transfer(b, c, w->acct[from], w->acct[to], amount, key, NULL, NULL);
            if (rc == TXM_ECHECK) /* the source account has no overdraft and too little money */
                rc = 0;
        }
    }
out:
    w->rc = rc;
    if (rc)
        snprintf(w->err, sizeof w->err, "%s: %s", txm_err_name(rc), txm_error_last()->message);
    txm_billing_free(b);
    txm_close(c);
    pthread_mutex_lock(&w->d->mu);
    w->d->finished++;
    pthread_mutex_unlock(&w->d->mu);
    return NULL;
}

static int story_ledger(bdemo *d)
{
    txm_billing_entry e1, e2, replay, debit, credit;
    txm_billing_report rep;
    int64_t alice, bob, house, before, after, total = 0;
    pthread_t th[THREADS];
    worker w[THREADS];
    double t0, t1;
    int i, rc;

    printf("\n5. Ledger: running balances that concurrent payments cannot corrupt\n");
    if ((rc = txm_billing_account(d->b, d->c, "alice", TXM_BILLING_NO_OVERDRAFT, &alice, NULL)) ||
        (rc = txm_billing_account(d->b, d->c, "bob", TXM_BILLING_NO_OVERDRAFT, &bob, NULL)) ||
        (rc = txm_billing_account(d->b, d->c, "house", 0, &house, NULL)))
        return txm_tool_demo_fail("opening accounts", rc);
    if ((rc = txm_billing_post(d->b, d->c, alice, 500, "deposit-1", &e1)) ||
        (rc = txm_billing_post(d->b, d->c, alice, -120, "card-1", &e2)))
        return txm_tool_demo_fail("posting", rc);
    printf("   alice: +500 -> entry %lld, balance %lld; -120 -> entry %lld, balance %lld\n", (long long)e1.seq,
           (long long)e1.balance, (long long)e2.seq, (long long)e2.balance);
    if ((rc = txm_billing_post(d->b, d->c, alice, -120, "card-1", &replay)))
        return txm_tool_demo_fail("re-posting card-1", rc);
    printf("   the same payment re-sent (key card-1): replayed=%d, same entry %lld, balance still %lld\n",
           replay.replayed, (long long)replay.seq, (long long)replay.balance);
    if (txm_tool_demo_check(replay.replayed && replay.id == e2.id, "the replay was posted again"))
        return 1;
    if ((rc = txm_billing_transfer(d->b, d->c, alice, bob, 80, "gift-1", &debit, &credit)))
        return txm_tool_demo_fail("transfer", rc);
    printf("   transfer 80 alice -> bob: alice %lld, bob %lld (locks taken in account-id order)\n",
           (long long)debit.balance, (long long)credit.balance);
    txm_billing_balance(d->b, d->c, bob, &before);
    rc = txm_billing_transfer(d->b, d->c, bob, alice, 1000, "too-much", NULL, NULL);
    txm_billing_balance(d->b, d->c, bob, &after);
    printf("   transfer 1000 bob -> alice (no overdraft) -> %s; bob still %lld\n", txm_err_name(rc),
           (long long)after);
    if (txm_tool_demo_check(rc == TXM_ECHECK && before == after, "an overdraft went through (%s)", txm_err_name(rc)))
        return 1;

    printf("   %d threads, one connection each, %d random posts and transfers each over 3 accounts...\n", THREADS,
           OPS_PER_THREAD);
    fflush(stdout);
    t0 = now_s();
    for (i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].d = d;
        w[i].index = i;
        w[i].acct[0] = alice;
        w[i].acct[1] = bob;
        w[i].acct[2] = house;
        pthread_create(&th[i], NULL, ledger_worker, &w[i]);
    }
    for (;;) {
        /* A progress line for anything over a second. */
        int finished, k;
        int64_t n = 0;
        for (k = 0; k < 10; k++) {
            usleep(100000);
            pthread_mutex_lock(&d->mu);
            finished = d->finished;
            pthread_mutex_unlock(&d->mu);
            if (finished == THREADS)
                break;
        }
        if (finished == THREADS)
            break;
        if (txm_query_i64(d->c, &n, "SELECT COUNT(*) FROM " PREFIX "entries", NULL, 0) == 0)
            printf("   ... %lld entries so far (%.0f s)\n", (long long)n, now_s() - t0);
        fflush(stdout);
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    t1 = now_s();
    {
        unsigned long retries = 0;
        for (i = 0; i < THREADS; i++) {
            if (w[i].rc)
                return txm_tool_demo_check(0, "ledger thread %d: %s", i, w[i].err);
            total += w[i].posted;
            retries += w[i].retries;
        }
        printf("   done in %.1f s (%.0f operations/s), %lu retries after deadlocks or serialization failures\n",
               t1 - t0, (double)(THREADS * OPS_PER_THREAD) / (t1 - t0), retries);
    }
    if ((rc = txm_billing_verify(d->b, d->c, &rep)))
        return txm_tool_demo_fail("verify", rc);
    {
        int64_t a, bb, h;
        txm_billing_balance(d->b, d->c, alice, &a);
        txm_billing_balance(d->b, d->c, bob, &bb);
        txm_billing_balance(d->b, d->c, house, &h);
        printf("   verify: %lld accounts, %lld entries, every chain recomputed: ok\n", (long long)rep.accounts,
               (long long)rep.entries);
        printf("   money conserved: balances %lld = deposits %lld\n", (long long)(a + bb + h),
               (long long)(500 - 120 + total));
        return txm_tool_demo_check(a + bb + h == 500 - 120 + total, "money was created or lost");
    }
}

/* ---- 6. usage ------------------------------------------------------------------------------- */

static int story_usage(bdemo *d)
{
    txm_billing_usage u;
    txm_billing_usage_result r;
    txm_conn *other = NULL;
    int64_t key, up, acct, quota = -1;
    char sql[200];
    txm_value p;
    int rc;

    printf("\n6. Usage: an api key deleted between reading its id and inserting the snapshot\n");
    if ((rc = txm_billing_api_key_create(d->b, d->c, "key-of-carol", &key)) ||
        (rc = txm_billing_upstream_create(d->b, d->c, "upstream-eu", &up)) ||
        (rc = txm_billing_account(d->b, d->c, "carol", 0, &acct, NULL)))
        return txm_tool_demo_fail("creating the api key", rc);
    printf("   read api key id %lld; meanwhile another connection deletes it (ON DELETE SET NULL)\n",
           (long long)key);
    if ((rc = txm_open(&other, d->url, NULL)))
        return txm_tool_demo_fail("opening a second connection", rc);
    snprintf(sql, sizeof sql, "DELETE FROM " PREFIX "api_keys WHERE id = ?");
    p = txm_int(key);
    rc = txm_exec(other, sql, &p, 1, NULL);
    txm_close(other);
    if (rc)
        return txm_tool_demo_fail("deleting the key", rc);
    memset(&u, 0, sizeof u);
    u.account_id = acct;
    u.api_key_id = key;
    u.upstream_id = up;
    u.units = 42;
    if ((rc = txm_billing_usage_record(d->b, d->c, &u, &r)))
        return txm_tool_demo_fail("recording usage", rc);
    printf("   snapshot %lld written: api_key_id %s, upstream_id %lld, retried %d, quota delta %lld\n",
           (long long)r.id, r.api_key_id ? "kept" : "NULL (the key was gone: nulled, insert retried once)",
           (long long)r.upstream_id, r.retried, (long long)r.quota_delta);
    if (txm_tool_demo_check(r.retried == 1 && r.api_key_id == 0 && r.upstream_id == up && r.quota_delta == 0,
               "the snapshot did not survive the race as told"))
        return 1;
    rc = txm_query_i64(d->c, &quota, "SELECT COALESCE(SUM(quota_used), 0) FROM " PREFIX "api_keys", NULL, 0);
    if (rc)
        return txm_tool_demo_fail("summing quotas", rc);
    printf("   quota charged to api keys: %lld (no ghost quota for the deleted key)\n", (long long)quota);
    return txm_tool_demo_check(quota == 0, "ghost quota %lld", (long long)quota);
}

/* ---- 7. get-or-create ----------------------------------------------------------------------- */

typedef struct goc_arg {
    bdemo *d;
    int64_t id;
    int created;
    int rc;
} goc_arg;

static void *goc_thread(void *arg)
{
    goc_arg *g = arg;
    txm_conn *c = NULL;
    txm_billing *b = NULL;
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    o.prefix = PREFIX;
    g->rc = txm_open(&c, g->d->url, NULL);
    if (!g->rc)
        g->rc = txm_billing_new(&b, c, &o);
    if (!g->rc)
        g->rc = txm_billing_account(b, c, "customer-dora", 0, &g->id, &g->created);
    txm_billing_free(b);
    txm_close(c);
    return NULL;
}

static int story_get_or_create(bdemo *d)
{
    pthread_t th[THREADS];
    goc_arg g[THREADS];
    int i, created = 0;
    int64_t rows = 0;
    printf("\n7. Get-or-create: %d requests create the same customer at once\n", THREADS);
    for (i = 0; i < THREADS; i++) {
        memset(&g[i], 0, sizeof g[i]);
        g[i].d = d;
        pthread_create(&th[i], NULL, goc_thread, &g[i]);
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < THREADS; i++) {
        if (g[i].rc)
            return txm_tool_demo_check(0, "get-or-create thread %d failed: %s", i, txm_err_name(g[i].rc));
        created += g[i].created;
        if (txm_tool_demo_check(g[i].id == g[0].id, "two ids for one customer"))
            return 1;
    }
    if (txm_query_i64(d->c, &rows, "SELECT COUNT(*) FROM " PREFIX "accounts WHERE name = 'customer-dora'", NULL,
                      0))
        return txm_tool_demo_fail("counting", TXM_ERROR);
    printf("   every request got id %lld; created by %d of them; rows with that name: %lld\n",
           (long long)g[0].id, created, (long long)rows);
    return txm_tool_demo_check(created == 1 && rows == 1, "get-or-create made %d rows", (int)rows);
}

/* ---- 8. payouts ----------------------------------------------------------------------------- */

static int notify(int64_t payout_id, const char *message, void *payload)
{
    bdemo *d = payload;
    pthread_mutex_lock(&d->mu);
    if (payout_id >= 0 && payout_id < 64)
        d->notified[payout_id]++;
    d->notified_total++;
    pthread_mutex_unlock(&d->mu);
    printf("   >> notification: %s\n", message);
    return 0;
}

static int story_payouts(bdemo *d)
{
    int64_t acct, ids[3], paid = -1;
    size_t failed = 0;
    int i, rc;
    printf("\n8. Payouts: \"your money has arrived\" only for payouts that were committed\n");
    if ((rc = txm_billing_account(d->b, d->c, "erin", 0, &acct, NULL)))
        return txm_tool_demo_fail("account", rc);
    for (i = 0; i < 3; i++)
        if ((rc = txm_billing_payout_create(d->b, d->c, acct, 100 * (i + 1), &ids[i])))
            return txm_tool_demo_fail("creating payouts", rc);
    if ((rc = txm_billing_payout_mark_paid(d->b, d->c, ids[2])))
        return txm_tool_demo_fail("paying the third payout", rc);
    printf("   payout %lld paid on its own; now a bulk run of all three (the third is already paid)\n",
           (long long)ids[2]);
    d->notified_total = 0;
    rc = txm_billing_payouts_mark_paid(d->b, d->c, ids, 3, &failed);
    printf("   bulk run -> %s at item %zu; notifications sent: %d\n", txm_err_name(rc), failed, d->notified_total);
    if (txm_tool_demo_check(rc == TXM_EINVALID && failed == 2 && d->notified_total == 0, "the failed bulk run leaked"))
        return 1;
    if ((rc = txm_query_i64(d->c, &paid, "SELECT COUNT(*) FROM " PREFIX "payouts WHERE status = 'paid'", NULL, 0)))
        return txm_tool_demo_fail("counting", rc);
    printf("   paid payouts: %lld (nothing of the failed run)\n", (long long)paid);
    if (txm_tool_demo_check(paid == 1, "the failed bulk run paid %lld", (long long)paid))
        return 1;
    printf("   re-run with the input fixed (the first two only)\n");
    if ((rc = txm_billing_payouts_mark_paid(d->b, d->c, ids, 2, &failed)))
        return txm_tool_demo_fail("bulk re-run", rc);
    for (i = 0; i < 3; i++)
        if (txm_tool_demo_check(ids[i] < 64 && d->notified[ids[i]] == 1, "payout %lld notified %d times",
                                (long long)ids[i], ids[i] < 64 ? d->notified[ids[i]] : -1))
            return 1;
    {
        size_t n = 9;
        if ((rc = txm_billing_outbox_drain(d->b, d->c, &n)))
            return txm_tool_demo_fail("drain", rc);
        printf("   each payout notified exactly once; outbox drain finds %zu left to deliver\n", n);
        return txm_tool_demo_check(n == 0, "the drain delivered %zu again", n);
    }
}

/* ---- 9. import ------------------------------------------------------------------------------ */

typedef struct import_arg {
    bdemo *d;
    int64_t import_id;
    int rc;
    size_t done;
} import_arg;

static int import_task(txm_conn *c, int64_t import_id, int64_t task_id, const char *payload, void *arg)
{
    txm_value p[2];
    (void)arg;
    (void)payload;
    usleep(30000); /* a row that takes a while to import */
    p[0] = txm_int(import_id);
    p[1] = txm_int(task_id);
    return txm_exec(c, "INSERT INTO " PREFIX "rows (import_id, task_id) VALUES (?, ?)", p, 2, NULL);
}

static void *import_worker(void *arg)
{
    import_arg *a = arg;
    txm_conn *c = NULL;
    txm_billing *b = NULL;
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    o.prefix = PREFIX;
    a->rc = txm_open(&c, a->d->url, NULL);
    if (!a->rc)
        a->rc = txm_billing_new(&b, c, &o);
    if (!a->rc)
        a->rc = txm_billing_import_run(b, c, a->import_id, import_task, NULL, &a->done);
    txm_billing_free(b);
    txm_close(c);
    return NULL;
}

static int story_import(bdemo *d)
{
    pthread_t th[2];
    import_arg a[2];
    int64_t imp, deleted = 0, rows1 = 0, rows2 = 0;
    int i, rc;
    printf("\n9. Import: cancel returns only after the running workers finished\n");
    if ((rc = txm_exec(d->c, "CREATE TABLE " PREFIX "rows (import_id BIGINT NOT NULL, task_id BIGINT NOT NULL)",
                       NULL, 0, NULL)))
        return txm_tool_demo_fail("creating the output table", rc);
    if ((rc = txm_billing_import_create(d->b, d->c, "customers.csv", &imp)))
        return txm_tool_demo_fail("creating the import", rc);
    for (i = 0; i < 40; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "line %d", i + 1);
        if ((rc = txm_billing_import_add_task(d->b, d->c, imp, payload, NULL)))
            return txm_tool_demo_fail("adding tasks", rc);
    }
    for (i = 0; i < 2; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].d = d;
        a[i].import_id = imp;
        pthread_create(&th[i], NULL, import_worker, &a[i]);
    }
    usleep(200000);
    rc = txm_billing_import_cancel(d->b, d->c, imp, 10000, &deleted);
    if (rc)
        return txm_tool_demo_fail("cancel", rc);
    txm_query_i64(d->c, &rows1, "SELECT COUNT(*) FROM " PREFIX "rows", NULL, 0);
    printf("   2 workers running, 40 tasks; cancel deleted %lld pending tasks and returned; rows imported: %lld\n",
           (long long)deleted, (long long)rows1);
    usleep(300000);
    txm_query_i64(d->c, &rows2, "SELECT COUNT(*) FROM " PREFIX "rows", NULL, 0);
    for (i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    printf("   0.3 s later: rows imported: %lld (no row appeared after cancel returned)\n", (long long)rows2);
    for (i = 0; i < 2; i++)
        if (txm_tool_demo_check(a[i].rc == 0, "worker %d: %s", i, txm_err_name(a[i].rc)))
            return 1;
    return txm_tool_demo_check(rows1 == rows2 && rows1 + deleted == 40, "rows after cancel: %lld -> %lld, deleted %lld",
                  (long long)rows1, (long long)rows2, (long long)deleted);
}

/* ---- entry ---------------------------------------------------------------------------------- */

int txm_tool_demo_billing(const char *url)
{
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_conn *c = NULL;
    bdemo d;
    int rc, status;
    memset(&d, 0, sizeof d);
    if ((rc = txm_open(&c, url, NULL)))
        return txm_tool_demo_fail("opening the billing connection", rc);
    pthread_mutex_init(&d.mu, NULL);
    d.c = c;
    d.url = url;
    o.prefix = PREFIX;
    o.notify = notify;
    o.notify_payload = &d;
    if ((rc = txm_billing_new(&d.b, c, &o))) {
        pthread_mutex_destroy(&d.mu);
        txm_close(c);
        return txm_tool_demo_fail("txm_billing_new", rc);
    }
    txm_exec(c, "DROP TABLE IF EXISTS " PREFIX "rows", NULL, 0, NULL);
    if ((rc = txm_billing_schema_drop(d.b, c)) || (rc = txm_billing_schema_create(d.b, c)))
        status = txm_tool_demo_fail("creating the billing schema", rc);
    else
        status = story_ledger(&d) || story_usage(&d) || story_get_or_create(&d) || story_payouts(&d) ||
                 story_import(&d);
    /* Leave nothing behind on a shared server. */
    if (txm_depth(c) == 0) {
        txm_exec(c, "DROP TABLE IF EXISTS " PREFIX "rows", NULL, 0, NULL);
        txm_billing_schema_drop(d.b, c);
    }
    txm_billing_free(d.b);
    txm_close(c);
    pthread_mutex_destroy(&d.mu);
    return status;
}
