/* txm_retry: whole-transaction retry with capped exponential backoff (full jitter by default). */
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

uint64_t txm__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void txm__sleep_us(uint64_t us)
{
    struct timespec ts, rem;
    ts.tv_sec = (time_t)(us / 1000000u);
    ts.tv_nsec = (long)(us % 1000000u) * 1000L;
    while (nanosleep(&ts, &rem) == -1 && errno == EINTR)
        ts = rem;
}

uint64_t txm__rand_next(uint64_t *state)
{
    /* xorshift64*: small, fast, good enough for jitter (not for secrets). */
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t txm__backoff_bound_us(unsigned attempt, unsigned base_us, unsigned cap_us)
{
    uint64_t bound = base_us;
    unsigned i;
    if (attempt == 0)
        attempt = 1;
    for (i = 1; i < attempt && bound < cap_us; i++)
        bound <<= 1; /* stops doubling at the cap, so it cannot overflow */
    return bound > cap_us ? cap_us : bound;
}

uint64_t txm__backoff_us(unsigned attempt, unsigned base_us, unsigned cap_us, uint64_t *state)
{
    uint64_t bound = txm__backoff_bound_us(attempt, base_us, cap_us);
    if (bound == 0)
        return 0;
    return txm__rand_next(state) % (bound + 1);
}

uint64_t txm__retry_delay_us(const txm_retry_policy *p, unsigned attempt, uint64_t *state)
{
    if (p->jitter == TXM_RETRY_JITTER_NONE)
        return txm__backoff_bound_us(attempt, p->base_delay_us, p->max_delay_us);
    return txm__backoff_us(attempt, p->base_delay_us, p->max_delay_us, state);
}

/* Bytes of a txm_retry_policy of `version` (0 for an unknown version): a caller compiled against
 * an older txm.h has a smaller struct, so neither read nor write past its version's fields. */
static size_t retry_policy_size(unsigned version)
{
    switch (version) {
    case 1:
        return offsetof(txm_retry_policy, jitter);
    case 2:
        return sizeof(txm_retry_policy);
    default:
        return 0;
    }
}

int txm_retry_policy_init(txm_retry_policy *p, unsigned version)
{
    static const txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    size_t size = retry_policy_size(version);
    if (!p)
        return txm__err(TXM_EINVALID, "txm_retry_policy_init: policy is NULL");
    if (!size)
        return txm__err(TXM_EINVALID, "txm_retry_policy_init: unknown version %u (this txm knows 1..%u)", version,
                        (unsigned)TXM_RETRY_POLICY_VERSION);
    memcpy(p, &def, size);
    p->version = version;
    return 0;
}

/* Copies the caller's policy (of any known version) into a current-version struct; fields the
 * caller's version lacks keep their defaults. Validates what the loop relies on. */
static int retry_policy_load(txm_retry_policy *dst, const txm_retry_policy *src, const char *who)
{
    static const txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    size_t size = retry_policy_size(src->version);
    if (!size)
        return txm__err(TXM_EINVALID, "%s: retry policy has unknown version %u (this txm knows 1..%u)", who,
                        src->version, (unsigned)TXM_RETRY_POLICY_VERSION);
    *dst = def;
    memcpy(dst, src, size);
    dst->version = TXM_RETRY_POLICY_VERSION;
    if (dst->max_attempts == 0)
        return txm__err(TXM_EINVALID, "%s: max_attempts must be at least 1", who);
    if (dst->jitter != TXM_RETRY_JITTER_FULL && dst->jitter != TXM_RETRY_JITTER_NONE)
        return txm__err(TXM_EINVALID,
                        "%s: retry policy jitter %u is unknown (TXM_RETRY_JITTER_FULL or TXM_RETRY_JITTER_NONE)", who,
                        dst->jitter);
    return 0;
}

static bool is_retryable(const txm_error *e, unsigned retry_on)
{
    int code = e->code;
    if (code == TXM_ETX_ABORTED && e->cause)
        code = e->cause->code; /* a swallowed deadlock surfaces at COMMIT as an aborted transaction */
    switch (code) {
    case TXM_EDEADLOCK:
        return (retry_on & TXM_RETRY_DEADLOCK) != 0;
    case TXM_ESERIALIZATION:
        return (retry_on & TXM_RETRY_SERIALIZATION) != 0;
    case TXM_ELOCK_TIMEOUT:
        return (retry_on & TXM_RETRY_LOCK_TIMEOUT) != 0;
    default:
        return false;
    }
}

static uint64_t seed_from_env(const void *addr)
{
    uint64_t s = txm__now_us() ^ ((uint64_t)(uintptr_t)addr << 17) ^ (uint64_t)(uintptr_t)pthread_self();
    return s ? s : 1;
}

typedef struct atomic_attempt {
    const txm_retry_policy *p; /* read only once the loop has checked its version */
    txm_body_cb body;
    void *payload;
} atomic_attempt;

static int run_atomic(txm_conn *c, void *payload)
{
    const atomic_attempt *a = payload;
    return txm_atomic(c, a->p ? a->p->tx : NULL, a->body, a->payload);
}

int txm_retry(txm_conn *c, const txm_retry_policy *p, txm_body_cb body, void *payload)
{
    atomic_attempt a;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_retry: connection is NULL");
    if (!body)
        return txm__err(TXM_EINVALID, "txm_retry: body is NULL");
    if ((rc = txm__enter(c, "txm_retry")) != 0)
        return rc;
    a.p = p;
    a.body = body;
    a.payload = payload;
    return txm__leave(c, txm__retry_loop(c, p, "txm_retry", run_atomic, &a));
}

/* The loop behind txm_retry, txm_batch's retry and the autocommit retry; `counter` is the
 * txm_stats field that counts its retries. */
static int retry_loop(txm_conn *c, const txm_retry_policy *p, const char *who, txm__attempt_fn attempt, void *payload,
                      uint64_t *counter)
{
    static const txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    txm_retry_policy cur;
    txm_err_rec last;
    uint64_t rng, start;
    unsigned n;
    int rc = 0;

    if ((rc = retry_policy_load(&cur, p ? p : &def, who)) != 0)
        return rc;
    p = &cur;
    if (txm_depth(c) > 0)
        return txm__err(TXM_EMISUSE,
                        "%s: a transaction is already open (depth %d); retrying an inner part would not "
                        "undo the outer transaction's work",
                        who, txm_depth(c));
    rng = p->seed ? p->seed : seed_from_env(c);
    start = txm__now_us();
    for (n = 1;; n++) {
        rc = attempt(c, payload);
        if (rc == 0)
            return 0;
        txm__err_copy(&last, txm_error_last());
        if (last.pub.code != rc) {
            /* The body returned a code without setting the error record: describe it. */
            txm__err_init(&last);
            last.pub.code = rc;
            txm__strlcpy(last.message, txm_strerror(rc), sizeof last.message);
        } else if (txm_error_last()->cause) {
            last.pub.cause = txm_error_last()->cause; /* thread record, valid until the next error */
        }
        if (!is_retryable(&last.pub, p->retry_on) || c->closing)
            return rc; /* closing: txm_close was called from the body or a hook; no further attempt */
        if (n >= p->max_attempts)
            return rc;
        {
            uint64_t delay = txm__retry_delay_us(p, n, &rng);
            if (p->deadline_ms && txm__now_us() + delay - start >= (uint64_t)p->deadline_ms * 1000u)
                return rc; /* the next attempt could not start within the budget */
            if (p->before_retry) {
                p->before_retry(n, &last.pub, p->payload);
                if (c->closing)
                    return rc;
            }
            (*counter)++;
            txm__sleep_us(delay);
        }
    }
}

int txm__retry_loop(txm_conn *c, const txm_retry_policy *p, const char *who, txm__attempt_fn attempt, void *payload)
{
    return retry_loop(c, p, who, attempt, payload, &c->stats.retries);
}

/* ---- autocommit statements ------------------------------------------------------------------ */

typedef struct autocommit_ctx {
    txm_conn *c;
    const char *who;
    unsigned max_attempts;
} autocommit_ctx;

/* Only the category and SQLSTATE are logged: the engine's message may quote row values. */
static void log_autocommit_retry(unsigned attempt, const txm_error *err, void *payload)
{
    const autocommit_ctx *a = payload;
    txm__log(a->c, TXM_LOG_INFO,
             "%s: statement outside a transaction failed with %s (SQLSTATE '%s', native %d), attempt %u of %u; the "
             "engine rolled it back: running it again",
             a->who, txm_err_name(err->code), err->sqlstate, err->native_code, attempt, a->max_attempts);
}

int txm__autocommit_retry(txm_conn *c, const char *who, txm__attempt_fn attempt, void *payload)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    autocommit_ctx a;
    uint64_t before = c->stats.autocommit_retries;
    int rc;
    a.c = c;
    a.who = who;
    a.max_attempts = c->opts.autocommit_retries + 1;
    p.max_attempts = a.max_attempts;
    p.retry_on = TXM_RETRY_DEADLOCK | TXM_RETRY_SERIALIZATION; /* never ELOCK_TIMEOUT, ECONNECTION... */
    p.before_retry = log_autocommit_retry;
    p.payload = &a;
    rc = retry_loop(c, &p, who, attempt, payload, &c->stats.autocommit_retries);
    if (c->stats.autocommit_retries != before)
        txm__log(c, rc ? TXM_LOG_INFO : TXM_LOG_DEBUG, "%s: %s after %llu retr%s outside a transaction%s%s", who,
                 rc ? "gave up" : "succeeded", (unsigned long long)(c->stats.autocommit_retries - before),
                 c->stats.autocommit_retries - before == 1 ? "y" : "ies", rc ? ": " : "", rc ? txm_err_name(rc) : "");
    return rc;
}
