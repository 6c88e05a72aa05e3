/* Ledger under real concurrency: several threads, one connection each, on one database.
 *  - mixed: 8 threads x 500 random posts and transfers over 4 accounts, some idempotency keys
 *    re-sent (by the thread that posted them, by other threads, and raced by two threads at once):
 *    every call succeeds (no unretried deadlock), money is conserved, no key is stored twice,
 *    every chain verifies.
 *  - hot account: 8 writers on one account; a global chain (one account for everything: the
 *    Payment.last design of the original incident) with signed amounts.
 * Each prints its throughput, the retries used (before_retry) and round trips per call
 * (txm_stats): figures, not assertions. */
#include "billing_fixture.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

TestSuite(concurrency, .fini = bf_cleanup);

#define THREADS 8
#define HOT_MAX 12 /* the issue: a dozen writers on one hot account must not exhaust the default */
#define ACCOUNTS 4

typedef struct sent {
    char key[32];
    int transfer;
    int64_t a, z, amount;
} sent;

typedef struct shared {
    txm_billing *b;
    int64_t acct[ACCOUNTS];
    pthread_mutex_t mu;
    sent *log; /* successful operations, for re-sends */
    size_t nlog, caplog;
    unsigned long retries;
    unsigned max_attempt;
    int ops; /* per thread */
} shared;

static void count_retry(unsigned attempt, const txm_error *err, void *payload)
{
    shared *sh = payload;
    (void)err;
    pthread_mutex_lock(&sh->mu);
    sh->retries++;
    if (attempt + 1 > sh->max_attempt)
        sh->max_attempt = attempt + 1;
    pthread_mutex_unlock(&sh->mu);
}

typedef struct worker {
    shared *sh;
    int no;
    int rc;               /* first failure */
    char err[300];
    int64_t posted_sum;   /* sum of non-replayed post amounts */
    long posts, transfers, replays, calls;
    uint64_t round_trips;
    unsigned seed;
} worker;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffffu;
}

static void fail(worker *w, int rc, const char *what)
{
    if (!w->rc) {
        w->rc = rc;
        snprintf(w->err, sizeof w->err, "thread %d, %s: %s: %s", w->no, what, txm_err_name(rc),
                 txm_error_last()->message);
    }
}

static void record(shared *sh, const sent *s)
{
    pthread_mutex_lock(&sh->mu);
    if (sh->nlog < sh->caplog)
        sh->log[sh->nlog++] = *s;
    pthread_mutex_unlock(&sh->mu);
}

static int pick(shared *sh, unsigned *seed, sent *out)
{
    int ok = 0;
    pthread_mutex_lock(&sh->mu);
    if (sh->nlog) {
        *out = sh->log[rnd(seed) % sh->nlog];
        ok = 1;
    }
    pthread_mutex_unlock(&sh->mu);
    return ok;
}

/* Runs one operation; new = 1 if it was not a replay. */
static int run(worker *w, txm_conn *c, const sent *s, int *fresh)
{
    txm_billing_entry e, d;
    int rc;
    w->calls++;
    if (s->transfer) {
        rc = txm_billing_transfer(w->sh->b, c, s->a, s->z, s->amount, s->key, &d, &e);
        if (rc == 0 && d.replayed != e.replayed)
            return txm_error_set(TXM_ERROR, "transfer %s: legs disagree on replayed", s->key);
    } else {
        rc = txm_billing_post(w->sh->b, c, s->a, s->amount, s->key, &e);
    }
    if (rc == 0)
        *fresh = !e.replayed;
    return rc;
}

static void *mixed_worker(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    txm_conn *c = NULL;
    txm_stats st;
    int i, rc;
    if ((rc = txm_open(&c, bf_url(), NULL)) != 0) {
        fail(w, rc, "open");
        return NULL;
    }
    for (i = 0; i < sh->ops && !w->rc; i++) {
        unsigned r = rnd(&w->seed) % 100;
        sent s;
        int fresh = 0;
        memset(&s, 0, sizeof s);
        if (r < 8 && pick(sh, &w->seed, &s)) {
            /* re-send a committed key (ours or another thread's): must be a replay */
            if ((rc = run(w, c, &s, &fresh)) != 0) {
                fail(w, rc, "re-send");
                break;
            }
            if (fresh) {
                fail(w, TXM_ERROR, "a re-sent key was posted again");
                break;
            }
            w->replays++;
            continue;
        }
        if (r < 14) {
            /* a key raced by every thread at once: parameters derived from the key alone */
            unsigned k = (unsigned)i / 10, h = k * 2654435761u;
            snprintf(s.key, sizeof s.key, "race-%u", k);
            s.transfer = (h >> 3) % 2;
            s.a = sh->acct[(h >> 5) % ACCOUNTS];
            s.z = sh->acct[((h >> 5) % ACCOUNTS + 1 + (h >> 9) % (ACCOUNTS - 1)) % ACCOUNTS];
            s.amount = (int64_t)((h >> 12) % 50) + 1;
        } else {
            snprintf(s.key, sizeof s.key, "t%d-%d", w->no, i);
            s.transfer = rnd(&w->seed) % 2;
            s.a = sh->acct[rnd(&w->seed) % ACCOUNTS];
            s.z = sh->acct[(rnd(&w->seed) % (ACCOUNTS - 1) + 1 + (unsigned)(s.a - sh->acct[0])) % ACCOUNTS];
            s.amount = (int64_t)(rnd(&w->seed) % 100) + 1;
            if (!s.transfer && rnd(&w->seed) % 2)
                s.amount = -s.amount;
        }
        if ((rc = run(w, c, &s, &fresh)) != 0) {
            fail(w, rc, s.key);
            break;
        }
        if (!fresh) {
            w->replays++;
            continue;
        }
        if (s.transfer)
            w->transfers++;
        else {
            w->posts++;
            w->posted_sum += s.amount;
        }
        record(sh, &s);
    }
    txm_stats_get(c, &st);
    w->round_trips = st.round_trips;
    txm_close(c);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static txm_billing *billing_counting(txm_conn *c, shared *sh, txm_retry_policy *p)
{
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_billing_retry_policy_default(p); /* the default policy, observed */
    p->before_retry = count_retry;
    p->payload = sh;
    o.retry = p;
    return bf_billing(c, &o);
}

/* verify() while the writers run: every run must see one consistent snapshot, across pages. */
typedef struct verifier {
    shared *sh;
    volatile int stop;
    int rc, runs;
    char err[300];
} verifier;

static void *verify_loop(void *arg)
{
    verifier *v = arg;
    txm_conn *c = NULL;
    int rc = txm_open(&c, bf_url(), NULL);
    while (rc == 0 && !__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE)) {
        txm_billing_report r;
        if ((rc = txm_billing_verify(v->sh->b, c, &r)) != 0)
            snprintf(v->err, sizeof v->err, "verify during writes: %s: %s", txm_err_name(rc), txm_error_last()->message);
        v->runs++;
    }
    v->rc = rc;
    txm_close(c);
    return NULL;
}

static void run_threads(worker *w, void *(*fn)(void *), verifier *v)
{
    pthread_t t[THREADS], vt;
    int i;
    cr_assert_eq(pthread_create(&vt, NULL, verify_loop, v), 0);
    for (i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, fn, &w[i]), 0);
    for (i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    __atomic_store_n(&v->stop, 1, __ATOMIC_RELEASE);
    pthread_join(vt, NULL);
    for (i = 0; i < THREADS; i++)
        cr_assert_eq(w[i].rc, 0, "%s", w[i].err);
    cr_assert_eq(v->rc, 0, "%s", v->err);
    cr_assert_gt(v->runs, 0);
}

Test(concurrency, mixed_posts_and_transfers_conserve_money_and_verify)
{
    txm_conn *c = bf_open();
    shared sh;
    txm_retry_policy pol;
    worker w[THREADS];
    verifier ver;
    txm_billing_report rep;
    int64_t total = 0, expect = 0, n = 0, dups = -1, entries = 0;
    long posts = 0, transfers = 0, replays = 0, calls = 0;
    uint64_t rt = 0;
    double t0, dt;
    int i;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    sh.ops = 500;
    sh.caplog = THREADS * 500;
    sh.log = calloc(sh.caplog, sizeof *sh.log);
    sh.b = billing_counting(c, &sh, &pol);
    for (i = 0; i < ACCOUNTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "acct%d", i);
        BF_OK(txm_billing_account(sh.b, c, name, 0, &sh.acct[i], NULL));
    }
    memset(w, 0, sizeof w);
    for (i = 0; i < THREADS; i++) {
        w[i].sh = &sh;
        w[i].no = i;
        w[i].seed = 7919u * (unsigned)(i + 1);
    }
    memset(&ver, 0, sizeof ver);
    ver.sh = &sh;
    t0 = now_s();
    run_threads(w, mixed_worker, &ver);
    dt = now_s() - t0;
    for (i = 0; i < THREADS; i++) {
        expect += w[i].posted_sum;
        posts += w[i].posts;
        transfers += w[i].transfers;
        replays += w[i].replays;
        calls += w[i].calls;
        rt += w[i].round_trips;
    }
    for (i = 0; i < ACCOUNTS; i++) {
        int64_t v = 0;
        BF_OK(txm_billing_balance(sh.b, c, sh.acct[i], &v));
        total += v;
    }
    cr_assert_eq(total, expect, "money not conserved: balances sum to %lld, posts to %lld", (long long)total,
                 (long long)expect);
    BF_OK(txm_query_i64(c, &n, "SELECT COUNT(*) FROM billing_entries", NULL, 0));
    entries = posts + 2 * transfers;
    cr_assert_eq(n, entries, "%lld entries, expected %lld posts + 2 x %lld transfers", (long long)n, (long long)posts,
                 (long long)transfers);
    BF_OK(txm_query_i64(c, &dups,
                        "SELECT COUNT(*) FROM (SELECT idem_key, leg FROM billing_entries GROUP BY idem_key, leg "
                        "HAVING COUNT(*) > 1) d",
                        NULL, 0));
    cr_assert_eq(dups, 0);
    cr_assert_gt(replays, 0, "no key was re-sent: the test did not test replays");
    cr_assert_eq(calls, THREADS * 500L);
    BF_OK(txm_billing_verify(sh.b, c, &rep));
    cr_assert_eq(rep.entries, n);
    printf("[%s] mixed: %ld calls in %.2f s = %.0f calls/s (%ld posts, %ld transfers, %ld replays); retries %lu, "
           "max attempt %u of %u; %.2f round trips per call; %d verify runs meanwhile\n",
           bf_engine(), calls, dt, (double)calls / dt, posts, transfers, replays, sh.retries, sh.max_attempt ? sh.max_attempt : 1,
           pol.max_attempts, (double)rt / (double)calls, ver.runs);
    fflush(stdout);
    txm_billing_free(sh.b);
    free(sh.log);
    pthread_mutex_destroy(&sh.mu);
    txm_close(c);
}

/* ---- one hot account -------------------------------------------------------------------------- */

typedef struct hot {
    worker w;
    int64_t account;
    int n;
    int signed_amounts;
    int bare; /* the anchor: a bare autocommit UPDATE balance = balance + 1, no entry */
} hot;

static void *hot_worker(void *arg)
{
    hot *h = arg;
    txm_conn *c = NULL;
    txm_stats st;
    int i, rc;
    if ((rc = txm_open(&c, bf_url(), NULL)) != 0) {
        fail(&h->w, rc, "open");
        return NULL;
    }
    txm_stats_reset(c);
    for (i = 0; i < h->n; i++) {
        char key[40];
        int64_t amount = 1;
        if (h->signed_amounts) {
            amount = (int64_t)(rnd(&h->w.seed) % 1000) - 500;
            if (amount == 0)
                amount = 7;
        }
        snprintf(key, sizeof key, "hot-%d-%d", h->w.no, i);
        if (h->bare) {
            txm_value p = txm_int(h->account);
            rc = txm_exec(c, "UPDATE billing_accounts SET balance = balance + 1 WHERE id = ?", &p, 1, NULL);
        } else {
            /* No entry wanted: the post is one flight with its COMMIT (docs/billing.md). */
            rc = txm_billing_post(h->w.sh->b, c, h->account, amount, key, NULL);
        }
        if (rc != 0) {
            fail(&h->w, rc, key);
            break;
        }
        h->w.posted_sum += amount;
        h->w.posts++;
    }
    txm_stats_get(c, &st);
    h->w.round_trips = st.round_trips;
    txm_close(c);
    return NULL;
}

static double hot_threads(hot *h, int writers, double *secs)
{
    pthread_t t[HOT_MAX];
    double t0 = now_s();
    long posts = 0;
    int i;
    for (i = 0; i < writers; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hot_worker, &h[i]), 0);
    for (i = 0; i < writers; i++)
        pthread_join(t[i], NULL);
    *secs = now_s() - t0;
    for (i = 0; i < writers; i++) {
        cr_assert_eq(h[i].w.rc, 0, "%s", h[i].w.err);
        posts += h[i].w.posts;
    }
    return (double)posts / *secs;
}

static void hot_run(const char *label, int signed_amounts, int writers)
{
    txm_conn *c = bf_open();
    shared sh;
    txm_retry_policy pol;
    hot h[HOT_MAX];
    txm_billing_report rep;
    int64_t acct = 0, bal = 0, expect = 0, maxseq = 0;
    long posts = 0;
    uint64_t rt = 0;
    double dt, rate, bare_dt, bare_rate;
    int i, per = 2400 / writers;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    sh.b = billing_counting(c, &sh, &pol);
    BF_OK(txm_billing_account(sh.b, c, label, 0, &acct, NULL));
    memset(h, 0, sizeof h);
    for (i = 0; i < writers; i++) {
        h[i].w.sh = &sh;
        h[i].w.no = i;
        h[i].w.seed = 104729u * (unsigned)(i + 3);
        h[i].account = acct;
        h[i].n = per;
        h[i].signed_amounts = signed_amounts;
    }
    rate = hot_threads(h, writers, &dt);
    for (i = 0; i < writers; i++) {
        expect += h[i].w.posted_sum;
        posts += h[i].w.posts;
        rt += h[i].w.round_trips;
    }
    BF_OK(txm_billing_balance(sh.b, c, acct, &bal));
    cr_assert_eq(bal, expect, "%s: balance %lld, posts sum to %lld", label, (long long)bal, (long long)expect);
    BF_OK(txm_query_i64(c, &maxseq, "SELECT MAX(seq) FROM billing_entries", NULL, 0));
    cr_assert_eq(maxseq, (int64_t)writers * per);
    BF_OK(txm_billing_verify(sh.b, c, &rep));
    cr_assert_eq(rep.entries, (int64_t)writers * per);
    /* The anchor on the same machine, same moment: the bare UPDATE loop. */
    for (i = 0; i < writers; i++) {
        memset(&h[i].w, 0, sizeof h[i].w);
        h[i].w.sh = &sh;
        h[i].w.no = i;
        h[i].bare = 1;
    }
    bare_rate = hot_threads(h, writers, &bare_dt);
    printf("[%s] %s: %d writers x %d posts on one account: %.2f s = %.0f posts/s (bare UPDATE loop: %.0f/s, ratio "
           "%.2f); retries %lu, max attempt %u of %u; %.2f round trips per post\n",
           bf_engine(), label, writers, per, dt, rate, bare_rate, rate / bare_rate, sh.retries,
           sh.max_attempt ? sh.max_attempt : 1, pol.max_attempts, (double)rt / (double)posts);
    fflush(stdout);
    txm_billing_free(sh.b);
    pthread_mutex_destroy(&sh.mu);
    txm_close(c);
}

Test(concurrency, hot_account_eight_writers)
{
    hot_run("hot", 0, 8);
}

Test(concurrency, hot_account_twelve_writers_within_the_default_retries)
{
    hot_run("hot12", 0, 12);
}

Test(concurrency, global_chain_eight_writers)
{
    hot_run("global", 1, 8);
}
