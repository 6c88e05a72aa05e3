/* txm_retry (docs/semantics.md "Retry"). Adapted from Sequel's retry_on/num_retries/before_retry specs and
 * cockroach-go crdb/tx_test.go (retry to success, retry budget, non-retryable errors). Real transient
 * errors: a lock wait that times out (every engine, second connection) and a real deadlock between two
 * threads (servers). Recipes per engine: docs/conformance.md. */
#include "harness.h"
#include "internal.h" /* txm__backoff_us: the jitter sequence of a seed */

#include <pthread.h>
#include <time.h>

typedef struct probe {
    int calls;
    int nseen;
    unsigned attempts_seen[16];
    int codes_seen[16];
    txm_tx *release_on_first_retry; /* the blocker's transaction, committed by before_retry(1) */
    int release_rc;
} probe;

static void record_before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    probe *p = payload;
    if (p->nseen < 16) {
        p->attempts_seen[p->nseen] = attempt;
        p->codes_seen[p->nseen] = err ? err->code : 0;
        p->nseen++;
    }
    if (attempt == 1 && p->release_on_first_retry) {
        p->release_rc = txm_commit(p->release_on_first_retry);
        p->release_on_first_retry = NULL;
    }
}

static int body_bump_counter(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    return txm_exec(c, "UPDATE t_counter SET n = n + 10 WHERE id = 1", NULL, 0, NULL);
}

static int body_insert_item(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    return conf_item(c, p->calls);
}

/* Opens `blocker` on conf.url and makes it hold the write lock on t_counter row 1. */
static txm_tx *hold_row_lock(txm_conn *blocker)
{
    txm_tx *t = conf_begin(blocker);
    CONF_OK(txm_exec(blocker, "UPDATE t_counter SET n = n + 1 WHERE id = 1", NULL, 0, NULL));
    return t;
}

Test(retry, refused_inside_transaction, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    txm_tx *t = conf_begin(conf.c);
    CONF_RC(TXM_EMISUSE, txm_retry(conf.c, NULL, body_insert_item, &p));
    cr_assert(p.calls == 0, "the body ran inside an open transaction");
    cr_assert(txm_depth(conf.c) == 1);
    CONF_OK(txm_rollback(t));
}

Test(retry, success_first_time_one_call, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    txm_stats before = conf_stats(conf.c);
    CONF_OK(txm_retry(conf.c, &pol, body_insert_item, &p));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(p.calls == 1 && p.nseen == 0, "calls=%d before_retry calls=%d", p.calls, p.nseen);
    cr_assert(d.retries == 0 && d.begins == 1 && d.commits == 1, "retries=%llu begins=%llu commits=%llu",
              (unsigned long long)d.retries, (unsigned long long)d.begins, (unsigned long long)d.commits);
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

Test(retry, lock_timeout_retried_after_other_commits, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    txm_conn *blocker = conf_open_other();
    txm_conn *a = conf_open_short_wait();
    probe p = {0};
    p.release_on_first_retry = hold_row_lock(blocker);
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.retry_on |= TXM_RETRY_LOCK_TIMEOUT;
    pol.max_attempts = 3;
    pol.base_delay_us = 1000;
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    pol.seed = 42;
    txm_stats before = conf_stats(a);
    int rc = txm_retry(a, &pol, body_bump_counter, &p);
    cr_assert(rc == 0, "txm_retry: %s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert(p.calls == 2, "body called %d times, expected 2", p.calls);
    cr_assert(p.nseen == 1 && p.attempts_seen[0] == 1, "before_retry: %d calls, first attempt %u", p.nseen,
              p.attempts_seen[0]);
    cr_assert(p.codes_seen[0] == TXM_ELOCK_TIMEOUT, "before_retry saw %s, expected TXM_ELOCK_TIMEOUT",
              txm_err_name(p.codes_seen[0]));
    cr_assert(p.release_rc == 0, "committing the blocker failed: %s", txm_err_name(p.release_rc));
    txm_stats d = conf_delta(a, &before);
    cr_assert(d.retries == 1, "stats.retries=%llu", (unsigned long long)d.retries);
    cr_assert(conf_counter(conf.c, 1) == 111, "counter %lld, expected 100 + 1 (blocker) + 10 (retried body)",
              (long long)conf_counter(conf.c, 1));
    txm_close(a);
    txm_close(blocker);
}

Test(retry, exhausted_attempts_return_last_error, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    txm_conn *blocker = conf_open_other();
    txm_conn *a = conf_open_short_wait();
    txm_tx *held = hold_row_lock(blocker);
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.retry_on |= TXM_RETRY_LOCK_TIMEOUT;
    pol.max_attempts = 3;
    pol.base_delay_us = 1000;
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    txm_stats before = conf_stats(a);
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_retry(a, &pol, body_bump_counter, &p));
    cr_assert(p.calls == 3, "max_attempts=3: body called %d times", p.calls);
    cr_assert(p.nseen == 2 && p.attempts_seen[0] == 1 && p.attempts_seen[1] == 2, "before_retry calls: %d", p.nseen);
    txm_stats d = conf_delta(a, &before);
    cr_assert(d.retries == 2, "stats.retries=%llu", (unsigned long long)d.retries);
    cr_assert(txm_depth(a) == 0);
    CONF_OK(txm_rollback(held));
    cr_assert(conf_counter(conf.c, 1) == 100, "a failed attempt changed the counter");
    txm_close(a);
    txm_close(blocker);
}

Test(retry, lock_timeout_not_retried_by_default, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    txm_conn *blocker = conf_open_other();
    txm_conn *a = conf_open_short_wait();
    txm_tx *held = hold_row_lock(blocker);
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT; /* TXM_RETRY_DEFAULT: deadlock, serialization */
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_retry(a, &pol, body_bump_counter, &p));
    cr_assert(p.calls == 1 && p.nseen == 0, "calls=%d before_retry=%d", p.calls, p.nseen);
    CONF_OK(txm_rollback(held));
    txm_close(a);
    txm_close(blocker);
}

static int body_duplicate(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    int rc = conf_uniq(c, 1, "a");
    if (rc)
        return rc;
    return conf_uniq(c, 2, "a");
}

Test(retry, non_retryable_error_returned_at_once, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.retry_on = TXM_RETRY_DEADLOCK | TXM_RETRY_SERIALIZATION | TXM_RETRY_LOCK_TIMEOUT;
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    CONF_RC(TXM_EUNIQUE, txm_retry(conf.c, &pol, body_duplicate, &p));
    conf_err e = conf_last_err();
    cr_assert(p.calls == 1 && p.nseen == 0, "calls=%d before_retry=%d", p.calls, p.nseen);
    conf_assert_unique_names(e.constraint_name, e.table_name, e.column_name);
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_uniq") == 0, "the failed attempt's first insert was kept");
}

static int body_app_code(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    int rc = conf_item(c, 1);
    return rc ? rc : 7;
}

Test(retry, body_result_returned_and_rolled_back, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    int rc = txm_retry(conf.c, NULL, body_app_code, &p);
    cr_assert(rc == 7, "txm_retry must return the body's non-retryable result (7), got %d", rc);
    cr_assert(p.calls == 1);
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

static int body_fail_twice_with_hooks(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    char name[32];
    int rc = conf_item(c, p->calls);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "commit%d", p->calls);
    rc = conf_on_commit(c, name, NULL);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "rollback%d", p->calls);
    rc = conf_on_rollback(c, name, NULL);
    if (rc)
        return rc;
    if (p->calls < 3)
        return txm_error_set(TXM_ESERIALIZATION, "synthetic serialization failure in attempt %d", p->calls);
    return 0;
}

Test(retry, hooks_only_of_successful_attempt_run, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.base_delay_us = 100;
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    CONF_OK(txm_retry(conf.c, &pol, body_fail_twice_with_hooks, &p));
    cr_assert(p.calls == 3 && p.nseen == 2, "calls=%d before_retry=%d", p.calls, p.nseen);
    cr_assert(p.codes_seen[0] == TXM_ESERIALIZATION && p.codes_seen[1] == TXM_ESERIALIZATION,
              "before_retry saw %s, %s", txm_err_name(p.codes_seen[0]), txm_err_name(p.codes_seen[1]));
    cr_assert_str_eq(conf_log, "rollback1,rollback2,commit3,",
                     "failed attempts roll back (their on-rollback hooks run), only the last commits");
    conf_assert_freed_once();
    cr_assert(conf_count(conf.c, "t_item") == 1, "rows of failed attempts were kept");
    cr_assert(conf_count_id(conf.c, "t_item", 3) == 1);
}

static int body_slow_conflict(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    int rc = conf_item(c, p->calls);
    if (rc)
        return rc;
    struct timespec ts = {0, 5 * 1000 * 1000}; /* 5 ms: more than the 1 ms budget */
    nanosleep(&ts, NULL);
    return txm_error_set(TXM_ESERIALIZATION, "synthetic serialization failure");
}

Test(retry, deadline_limits_attempts, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.max_attempts = 50;
    pol.base_delay_us = 1;
    pol.max_delay_us = 1;
    pol.deadline_ms = 1;
    CONF_RC(TXM_ESERIALIZATION, txm_retry(conf.c, &pol, body_slow_conflict, &p));
    cr_assert(p.calls == 1, "no attempt may start after the 1 ms budget is spent: %d calls", p.calls);

    probe q = {0};
    pol.deadline_ms = 600000; /* far away: max_attempts decides */
    pol.max_attempts = 3;
    CONF_RC(TXM_ESERIALIZATION, txm_retry(conf.c, &pol, body_slow_conflict, &q));
    cr_assert(q.calls == 3, "a distant deadline must not cut attempts: %d calls", q.calls);
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

Test(retry, seed_gives_deterministic_backoff, .init = conf_init, .fini = conf_fini)
{
    /* The jitter sequence is a function of the seed: equal seeds, equal sleeps; each sleep is in
     * [0, min(cap, base * 2^(attempt-1))]. */
    uint64_t s1 = 12345, s2 = 12345, s3 = 999;
    bool differs = false;
    for (unsigned attempt = 1; attempt <= 12; attempt++) {
        uint64_t a = txm__backoff_us(attempt, 1000, 50000, &s1);
        uint64_t b = txm__backoff_us(attempt, 1000, 50000, &s2);
        uint64_t c = txm__backoff_us(attempt, 1000, 50000, &s3);
        uint64_t bound = 1000ull << (attempt - 1);
        if (bound > 50000)
            bound = 50000;
        cr_assert(a == b, "attempt %u: seed 12345 gave %llu then %llu", attempt, (unsigned long long)a,
                  (unsigned long long)b);
        cr_assert(a <= bound && c <= bound, "attempt %u: %llu/%llu above the bound %llu", attempt,
                  (unsigned long long)a, (unsigned long long)c, (unsigned long long)bound);
        differs |= a != c;
    }
    cr_assert(differs, "seeds 12345 and 999 gave the same 12 sleeps");
    /* and through the public API: the same seed and failures give the same attempt count */
    probe p = {0}, q = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.seed = 7;
    pol.base_delay_us = 10;
    pol.max_attempts = 4;
    pol.before_retry = record_before_retry;
    pol.payload = &p;
    CONF_RC(TXM_ESERIALIZATION, txm_retry(conf.c, &pol, body_slow_conflict, &p));
    pol.payload = &q;
    CONF_RC(TXM_ESERIALIZATION, txm_retry(conf.c, &pol, body_slow_conflict, &q));
    cr_assert(p.calls == 4 && q.calls == 4 && p.nseen == 3 && q.nseen == 3);
}

Test(retry, policy_validated, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.version = 0;
    CONF_RC(TXM_EINVALID, txm_retry(conf.c, &pol, body_insert_item, &p));
    pol.version = 99;
    CONF_RC(TXM_EINVALID, txm_retry(conf.c, &pol, body_insert_item, &p));
    pol = (txm_retry_policy)TXM_RETRY_POLICY_INIT;
    pol.max_attempts = 0;
    CONF_RC(TXM_EINVALID, txm_retry(conf.c, &pol, body_insert_item, &p));
    CONF_RC(TXM_EINVALID, txm_retry(conf.c, NULL, NULL, &p));
    CONF_RC(TXM_EINVALID, txm_retry(NULL, NULL, body_insert_item, &p));
    cr_assert(p.calls == 0, "the body ran under an invalid policy");
    CONF_RC(TXM_EINVALID, txm_retry_policy_init(&pol, 0));
    CONF_RC(TXM_EINVALID, txm_retry_policy_init(&pol, 99));
    CONF_OK(txm_retry_policy_init(&pol, TXM_RETRY_POLICY_VERSION));
    cr_assert(pol.max_attempts == 30 && pol.base_delay_us == 2000 && pol.max_delay_us == 200000 &&
              pol.deadline_ms == 0 && pol.retry_on == TXM_RETRY_DEFAULT);
}

/* ---- a real deadlock between two connections (servers) ---- */
typedef struct dl_side {
    txm_conn *c;
    int64_t from, to, amount;
    pthread_barrier_t *barrier;
    bool swallow;   /* the body ignores the error of its second statement and returns 0 */
    int rc;
    int calls;
    int deadlocks;  /* before_retry saw TXM_EDEADLOCK (or TXM_ETX_ABORTED caused by one) */
    int other_errs; /* before_retry saw something else */
    int other_code;
    char message[256];
} dl_side;

static int dl_body(txm_conn *c, void *payload)
{
    dl_side *s = payload;
    s->calls++;
    txm_value p1[2] = {txm_int(s->amount), txm_int(s->from)};
    int rc = txm_exec(c, "UPDATE t_counter SET n = n - ? WHERE id = ?", p1, 2, NULL);
    if (s->calls == 1)
        pthread_barrier_wait(s->barrier); /* both hold their first row lock */
    if (rc)
        return rc;
    txm_value p2[2] = {txm_int(s->amount), txm_int(s->to)};
    rc = txm_exec(c, "UPDATE t_counter SET n = n + ? WHERE id = ?", p2, 2, NULL);
    return s->swallow ? 0 : rc;
}

static void dl_before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    dl_side *s = payload;
    (void)attempt;
    bool deadlock = err && (err->code == TXM_EDEADLOCK ||
                            (s->swallow && err->code == TXM_ETX_ABORTED && err->cause &&
                             err->cause->code == TXM_EDEADLOCK));
    if (deadlock) {
        s->deadlocks++;
    } else {
        s->other_errs++;
        s->other_code = err ? err->code : 0;
    }
}

static void *dl_thread(void *payload)
{
    dl_side *s = payload;
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    pol.retry_on = TXM_RETRY_DEADLOCK;
    pol.max_attempts = 5;
    pol.base_delay_us = 1000;
    pol.before_retry = dl_before_retry;
    pol.payload = s;
    s->rc = txm_retry(s->c, &pol, dl_body, s);
    if (s->rc)
        snprintf(s->message, sizeof s->message, "%s", txm_error_last()->message);
    return NULL;
}

static void run_deadlock(bool swallow)
{
    if (conf_is_embedded())
        CONF_SKIP("%s: an embedded engine cannot deadlock (SQLite: write transactions start with BEGIN IMMEDIATE "
                  "and wait on the busy timeout; see retry/lock_timeout_retried_after_other_commits)",
                  conf.driver);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    dl_side s[2] = {{0}, {0}};
    s[0].c = conf_open_other();
    s[1].c = conf_open_other();
    s[0].from = 1, s[0].to = 2, s[0].amount = 10;
    s[1].from = 2, s[1].to = 1, s[1].amount = 5;
    s[0].barrier = s[1].barrier = &barrier;
    s[0].swallow = s[1].swallow = swallow;
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert(pthread_create(&th[i], NULL, dl_thread, &s[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "[%s] deadlock side %d: rc=%s calls=%d deadlocks=%d\n", conf.driver, i,
                txm_err_name(s[i].rc), s[i].calls, s[i].deadlocks);
        cr_assert(s[i].rc == 0, "side %d: %s: %s", i, txm_err_name(s[i].rc), s[i].message);
        cr_assert(s[i].other_errs == 0, "side %d retried on %s, expected only TXM_EDEADLOCK", i,
                  txm_err_name(s[i].other_code));
        cr_assert(s[i].calls == s[i].deadlocks + 1);
    }
    cr_assert(s[0].deadlocks + s[1].deadlocks >= 1, "no side saw TXM_EDEADLOCK: the engine did not deadlock");
    cr_assert(conf_counter(conf.c, 1) == 95 && conf_counter(conf.c, 2) == 105,
              "both transfers must be applied exactly once: counters %lld, %lld", (long long)conf_counter(conf.c, 1),
              (long long)conf_counter(conf.c, 2));
    txm_close(s[0].c);
    txm_close(s[1].c);
}

Test(retry, deadlock_retried_to_success, .init = conf_init_shared, .fini = conf_fini, .timeout = 120)
{
    run_deadlock(false);
}

Test(retry, swallowed_deadlock_surfaces_at_commit_and_is_retried, .init = conf_init_shared, .fini = conf_fini,
     .timeout = 120)
{
    /* The body ignores the deadlock and returns 0: COMMIT must refuse (TXM_ETX_ABORTED caused by
     * TXM_EDEADLOCK) and txm_retry must retry it, never commit half a transfer. */
    run_deadlock(true);
}

static int body_insert_with_failing_hook(txm_conn *c, void *payload)
{
    probe *p = payload;
    p->calls++;
    int rc = conf_item(c, p->calls);
    if (rc)
        return rc;
    conf_hook *h = NULL;
    rc = conf_on_commit(c, "fails", &h);
    if (rc == 0)
        h->fail = TXM_EDEADLOCK; /* even a "retryable" hook error must not cause a retry */
    return rc;
}

Test(retry, failing_hook_after_commit_is_not_retried, .init = conf_init, .fini = conf_fini)
{
    probe p = {0};
    CONF_RC(TXM_EHOOK, txm_retry(conf.c, NULL, body_insert_with_failing_hook, &p));
    cr_assert(p.calls == 1, "the data was committed: a failing hook must not re-run the body (%d calls)", p.calls);
    cr_assert(conf_count(conf.c, "t_item") == 1);
    conf_assert_freed_once();
}
