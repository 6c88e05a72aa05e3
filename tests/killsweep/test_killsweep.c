/*
 * Kill sweep (issue 7, "make the testing permanent" item 2; documented in docs/testing.md): a
 * ledger post over txm's public API, with the server session killed at every position, on
 * PostgreSQL (pg_terminate_backend) and MariaDB (KILL, and a second sweep with KILL QUERY).
 *
 * One post (k = 6 statements, two hook kinds, a transaction-scoped advisory lock, a nested level):
 *   txm_begin; on-commit + on-rollback hooks
 *   [0] txm_lock("ks:acct:N", TXM_LOCK_TX)
 *   [1] SELECT balance, last_seq FROM ks_accounts WHERE id = ? FOR UPDATE
 *   [2] SELECT COUNT(*) FROM ks_entries WHERE idem_key = ?          (idempotency check)
 *   [3] INSERT INTO ks_entries (account_id, seq, amount, balance_after, idem_key)
 *   [4] UPDATE ks_accounts SET balance = ?, last_seq = ?
 *       txm_begin (nested: a savepoint) + an on-rollback hook
 *   [5] INSERT INTO ks_audit (idem_key)
 *       txm_commit (nested)
 *       txm_commit
 * A per-step callback kills the session synchronously from a second connection before each
 * statement and before COMMIT; a third connection holds what [0] and [1] wait for, and the kill
 * lands while they wait; COMMIT is made to block (PostgreSQL: a deferred constraint trigger waits
 * for an advisory lock the killer holds; MariaDB: the killer holds FLUSH TABLES WITH READ LOCK)
 * and is killed while blocked; and a proxy withholds the answer of an executed COMMIT, cuts the
 * connection and the session is killed ("after COMMIT executed": committed, outcome unknown).
 *
 * Then it recovers as an application would (txm_reconnect) and retries the post with the same
 * idempotency key unless it is known to be applied. Checked after every attempt and position: the
 * chains verify, no acknowledged post is lost, none is applied twice, a post reported failed did
 * not commit (not even later), hooks ran exactly as the outcome says, and TXM_ECOMMIT_UNKNOWN is
 * resolved correctly (txm_resolve_outcome on PostgreSQL, the idempotency key on both).
 *
 * TXM_TEST_PG_URL / TXM_TEST_MYSQL_URL pick the servers (each test skips with the reason when its
 * variable is unset); TXM_KILLSWEEP_ROUNDS (default 3) the number of full sweeps per kill kind.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_proxy.h"
#include "txm.h"
#include "txm_check.h"

enum {
    P_LOCK,
    P_LOCK_WAIT,
    P_READ,
    P_READ_WAIT,
    P_IDEM,
    P_INSERT,
    P_UPDATE,
    P_NESTED,
    P_BEFORE_COMMIT,
    P_DURING_COMMIT,
    P_AFTER_COMMIT,
    P_COUNT,
    P_NONE = -1
};
static const char *const pos_name[P_COUNT] = {"before txm_lock",
                                              "during txm_lock (waiting for the lock)",
                                              "before SELECT ... FOR UPDATE",
                                              "during SELECT ... FOR UPDATE (waiting for the row)",
                                              "before idempotency check",
                                              "before INSERT entry",
                                              "before UPDATE account",
                                              "before nested INSERT",
                                              "before COMMIT",
                                              "during COMMIT (blocked)",
                                              "after COMMIT executed"};

typedef enum engine { ENG_PG, ENG_MY } engine;
typedef enum kill_kind { K_SESSION, K_QUERY } kill_kind;

/* What the hooks of one attempt saw. */
typedef struct attempt {
    int commit_runs, rollback_runs, nested_rollback_runs;
    bool nested_registered;
} attempt;

typedef struct sweep {
    engine eng;
    kill_kind kind;
    const char *url;
    txm_conn *admin;  /* the killer and the auditor */
    txm_conn *holder; /* holds what makes a statement wait (a lock, a row) */
    txm_conn *c;      /* the application's connection */
    int kill_at;      /* P_*, or P_NONE on a retry */
    int64_t victim;   /* the session id of c (taken before each attempt) */
    pg_proxy *proxy; /* "after COMMIT executed": withholds COMMIT's answer (both protocols) */
    char proxy_url[2048];
    /* expected state: per account, the number of posts and the sum of their amounts */
    int64_t posts[2], sum[2];
    /* figures */
    int first_rc[P_COUNT]; /* first round: what the killed attempt returned */
    unsigned kills, acked, unknown, resolved_committed, resolved_aborted, resolved_unknown, failed, retries,
        already, violations;
} sweep;

#define VIOLATION(s, ...)                                                                          \
    do {                                                                                           \
        (s)->violations++;                                                                         \
        fprintf(stderr, "[killsweep] VIOLATION: " __VA_ARGS__);                                    \
        fputc('\n', stderr);                                                                       \
    } while (0)

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t qi(txm_conn *c, const char *sql, const txm_value *p, size_t n)
{
    int64_t v = 0;
    OK(txm_query_i64(c, &v, sql, p, n));
    return v;
}

/* Polls `sql` (one int parameter) on the admin connection until it returns non-zero (for up to
 * 20 s). InnoDB refreshes information_schema.innodb_trx only when nobody read it for 100 ms, so
 * polling it faster would never see a change. */
static void wait_until(sweep *s, const char *sql, int64_t id, const char *what)
{
    txm_value p = txm_int(id);
    int i, every = strstr(sql, "innodb_trx") ? 150 : 5;
    for (i = 0; i < 20000 / every; i++) {
        if (qi(s->admin, sql, &p, 1) != 0)
            return;
        sleep_ms(every);
    }
    cr_assert_fail("killsweep: timed out waiting for %s (session %lld, killed %s)", what, (long long)id,
                   s->kill_at >= 0 ? pos_name[s->kill_at] : "nowhere");
}

static int64_t session_id(txm_conn *c, engine eng)
{
    return q1(c, eng == ENG_PG ? "SELECT pg_backend_pid()" : "SELECT CONNECTION_ID()");
}

/* Kills the session `id` and, for a session kill, waits until it is gone. */
static void kill_session(sweep *s, int64_t id)
{
    txm_value p = txm_int(id);
    char sql[64];
    s->kills++;
    if (s->eng == ENG_PG) {
        /* 0 when the backend already died (the after-COMMIT cut) */
        (void)qi(s->admin, "SELECT pg_terminate_backend(?::int)::int", &p, 1);
        wait_until(s, "SELECT COUNT(*) = 0 FROM pg_stat_activity WHERE pid = ?", id, "the backend to exit");
        return;
    }
    snprintf(sql, sizeof sql, "%s %lld", s->kind == K_QUERY ? "KILL QUERY" : "KILL", (long long)id);
    {
        int rc = txm_exec(s->admin, sql, NULL, 0, NULL);
        /* ENOTFOUND-ish "unknown thread" when it is already gone: fine */
        cr_assert(rc == 0 || txm_error_last()->native_code == 1094, "%s: %s", sql, txm_error_last()->message);
    }
    if (s->kind == K_SESSION)
        wait_until(s, "SELECT COUNT(*) = 0 FROM information_schema.processlist WHERE id = ?", id,
                   "the killed connection to disappear");
    else /* the interrupted statement has ended (before the test lets go of what it waited for) */
        wait_until(s, "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ? AND info IS NULL", id,
                   "the killed statement to end");
}

/* The per-step callback: kills the session when the post reaches the chosen position. */
static void step(sweep *s, int pos)
{
    if (s->kill_at == pos)
        kill_session(s, s->victim);
}

/* ---- hooks ------------------------------------------------------------------------------- */

static int on_commit(txm_conn *c, void *p)
{
    (void)c;
    ((attempt *)p)->commit_runs++;
    return 0;
}
static int on_rollback(txm_conn *c, void *p)
{
    (void)c;
    ((attempt *)p)->rollback_runs++;
    return 0;
}
static int on_nested_rollback(txm_conn *c, void *p)
{
    (void)c;
    ((attempt *)p)->nested_rollback_runs++;
    return 0;
}

/* ---- COMMIT that blocks until the killer lets it go ---------------------------------------- */

typedef struct committer {
    txm_tx *t;
    int rc;
    int code;
    char message[512];
} committer;

static void *commit_thread(void *p)
{
    committer *k = p;
    k->rc = txm_commit(k->t);
    k->code = txm_error_last()->code;
    snprintf(k->message, sizeof k->message, "%s", k->rc ? txm_error_last()->message : "");
    return NULL;
}

/* The gate: PostgreSQL's deferred trigger takes this lock shared at COMMIT; the killer holds it. */
#define PG_GATE_LOCK "31337, 1"

static void gate_close(sweep *s)
{
    if (s->eng == ENG_PG)
        x(s->admin, "SELECT pg_advisory_lock(" PG_GATE_LOCK ")");
    else
        x(s->admin, "FLUSH TABLES WITH READ LOCK");
}

static void gate_open(sweep *s)
{
    if (s->eng == ENG_PG)
        x(s->admin, "SELECT pg_advisory_unlock(" PG_GATE_LOCK ")");
    else
        x(s->admin, "UNLOCK TABLES");
}

/* Kills the session while its COMMIT waits at the gate. */
static int commit_killed_at_the_gate(sweep *s, txm_tx *t)
{
    committer k;
    pthread_t th;
    memset(&k, 0, sizeof k);
    k.t = t;
    gate_close(s);
    cr_assert_eq(pthread_create(&th, NULL, commit_thread, &k), 0);
    if (s->eng == ENG_PG)
        wait_until(s,
                   "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ? AND wait_event_type = 'Lock' AND "
                   "wait_event = 'advisory'",
                   s->victim, "COMMIT to wait in the deferred trigger");
    else
        wait_until(s,
                   "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ? AND info LIKE 'COMMIT%' "
                   "AND state LIKE 'Waiting for%lock%'",
                   s->victim, "COMMIT to wait for the commit lock");
    kill_session(s, s->victim);
    pthread_join(th, NULL);
    gate_open(s);
    if (k.rc)
        txm_error_set(k.code, "%s", k.message); /* the committer thread's error, for the caller */
    return k.rc;
}

/* A statement that the holder makes wait; the session is killed while it waits. */
typedef struct blocked {
    int (*fn)(struct blocked *);
    txm_conn *c;
    const char *lock_key;
    txm_value param;
    txm_rows *rows;
    int rc, code;
    char message[512];
} blocked;

static void *blocked_thread(void *p)
{
    blocked *b = p;
    b->rc = b->fn(b);
    b->code = txm_error_last()->code;
    snprintf(b->message, sizeof b->message, "%s", b->rc ? txm_error_last()->message : "");
    return NULL;
}

static int do_lock(blocked *b) { return txm_lock(b->c, b->lock_key, TXM_LOCK_TX, 10000); }
static int do_read(blocked *b)
{
    return txm_query(&b->rows, b->c, "SELECT balance, last_seq FROM ks_accounts WHERE id = ? FOR UPDATE", &b->param,
                     1);
}

/* Runs b->fn; at position `pos` of the sweep, the holder first takes the advisory lock (P_LOCK_WAIT)
 * or the account row (P_READ_WAIT), and the session is killed while the statement waits for it. */
static int run_blocked(sweep *s, int pos, blocked *b)
{
    pthread_t th;
    txm_tx *ht = NULL;
    if (s->kill_at != pos)
        return b->fn(b);
    if (pos == P_LOCK_WAIT) {
        OK(txm_lock(s->holder, b->lock_key, TXM_LOCK_SESSION, -1));
    } else {
        txm_rows *r = NULL;
        OK(txm_begin(&ht, s->holder, NULL));
        OK(txm_query(&r, s->holder, "SELECT balance FROM ks_accounts WHERE id = ? FOR UPDATE", &b->param, 1));
        txm_rows_free(r);
    }
    cr_assert_eq(pthread_create(&th, NULL, blocked_thread, b), 0);
    if (pos == P_LOCK_WAIT)
        wait_until(s,
                   s->eng == ENG_PG ? "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ? AND wait_event = 'advisory'"
                                    : "SELECT COUNT(*) FROM information_schema.processlist WHERE id = ? AND "
                                      "state = 'User lock'",
                   s->victim, "txm_lock to wait for the held lock");
    else
        wait_until(s,
                   s->eng == ENG_PG ? "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ? AND wait_event_type = 'Lock'"
                                    : "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE "
                                      "trx_mysql_thread_id = ? AND trx_state = 'LOCK WAIT'",
                   s->victim, "SELECT ... FOR UPDATE to wait for the held row");
    kill_session(s, s->victim);
    if (pos == P_LOCK_WAIT)
        OK(txm_unlock(s->holder, b->lock_key, TXM_LOCK_SESSION));
    else
        OK(txm_rollback(ht));
    pthread_join(th, NULL);
    if (b->rc)
        txm_error_set(b->code, "%s", b->message);
    return b->rc;
}

/* ---- one post ------------------------------------------------------------------------------ */

enum { POST_DONE = 0, POST_ALREADY = 1 };

/* Ends every open level after a failure (innermost first). */
static void unwind(txm_tx *nested, txm_tx *t)
{
    if (nested)
        (void)txm_rollback(nested);
    (void)txm_rollback(t);
}

/* One attempt of the post. Returns POST_DONE, POST_ALREADY (the idempotency check found the key:
 * rolled back) or a negative TXM_E* code. */
static int post_attempt(sweep *s, int acct, int64_t amount, const char *key, attempt *a)
{
    txm_tx *t = NULL, *nested = NULL;
    txm_rows *r = NULL;
    txm_value p[5];
    blocked b;
    char lock_key[32];
    int64_t balance, seq;
    int rc;

    if ((rc = txm_begin(&t, s->c, NULL)))
        return rc;
    if ((rc = txm_on_commit(s->c, on_commit, a, NULL)) || (rc = txm_on_rollback(s->c, on_rollback, a, NULL))) {
        unwind(NULL, t);
        return rc;
    }
    snprintf(lock_key, sizeof lock_key, "ks:acct:%d", acct);
    memset(&b, 0, sizeof b);
    b.c = s->c;
    b.lock_key = lock_key;
    b.param = txm_int(acct);
    step(s, P_LOCK);
    b.fn = do_lock;
    if ((rc = run_blocked(s, P_LOCK_WAIT, &b)))
        goto fail;
    step(s, P_READ);
    b.fn = do_read;
    if ((rc = run_blocked(s, P_READ_WAIT, &b)))
        goto fail;
    r = b.rows;
    cr_assert(txm_rows_next(r), "account %d missing", acct);
    balance = txm_rows_get_i64(r, 0);
    seq = txm_rows_get_i64(r, 1);
    txm_rows_free(r);
    step(s, P_IDEM);
    p[0] = txm_text(key);
    {
        int64_t n = 0;
        if ((rc = txm_query_i64(s->c, &n, "SELECT COUNT(*) FROM ks_entries WHERE idem_key = ?", p, 1)))
            goto fail;
        if (n > 0) {
            unwind(NULL, t);
            return POST_ALREADY;
        }
    }
    step(s, P_INSERT);
    p[0] = txm_int(acct);
    p[1] = txm_int(seq + 1);
    p[2] = txm_int(amount);
    p[3] = txm_int(balance + amount);
    p[4] = txm_text(key);
    if ((rc = txm_exec(s->c,
                       "INSERT INTO ks_entries (account_id, seq, amount, balance_after, idem_key) "
                       "VALUES (?, ?, ?, ?, ?)",
                       p, 5, NULL)))
        goto fail;
    step(s, P_UPDATE);
    p[0] = txm_int(balance + amount);
    p[1] = txm_int(seq + 1);
    p[2] = txm_int(acct);
    if ((rc = txm_exec(s->c, "UPDATE ks_accounts SET balance = ?, last_seq = ? WHERE id = ?", p, 3, NULL)))
        goto fail;
    if ((rc = txm_begin(&nested, s->c, NULL)))
        goto fail;
    if ((rc = txm_on_rollback(s->c, on_nested_rollback, a, NULL)))
        goto fail;
    a->nested_registered = true;
    step(s, P_NESTED);
    p[0] = txm_text(key);
    if ((rc = txm_exec(s->c, "INSERT INTO ks_audit (idem_key) VALUES (?)", p, 1, NULL)))
        goto fail;
    rc = txm_commit(nested);
    nested = NULL; /* the handle is invalid after commit, whatever it returned */
    if (rc)
        goto fail;
    step(s, P_BEFORE_COMMIT);
    if (s->kill_at == P_DURING_COMMIT)
        return commit_killed_at_the_gate(s, t);
    if (s->kill_at == P_AFTER_COMMIT) {
        pg_proxy_arm(s->proxy);
        rc = txm_commit(t);
        cr_assert(pg_proxy_cut_done(s->proxy), "the proxy did not see COMMIT's answer");
        kill_session(s, s->victim);
        return rc;
    }
    return txm_commit(t);
fail:
    unwind(nested, t);
    return rc;
}

/* ---- auditing ------------------------------------------------------------------------------ */

static int64_t key_count(sweep *s, const char *key)
{
    txm_value p = txm_text(key);
    return qi(s->admin, "SELECT COUNT(*) FROM ks_entries WHERE idem_key = ?", &p, 1);
}

/* The chains verify and hold exactly the posts the test expects. */
static void audit(sweep *s, const char *where)
{
    txm_rows *r = NULL;
    int64_t prev_bal[2] = {0, 0}, prev_seq[2] = {0, 0}, n[2] = {0, 0}, sum[2] = {0, 0};
    int acct;
    OK(txm_query(&r, s->admin, "SELECT account_id, seq, amount, balance_after FROM ks_entries ORDER BY account_id, seq",
                 NULL, 0));
    while (txm_rows_next(r)) {
        int64_t a = txm_rows_get_i64(r, 0), seq = txm_rows_get_i64(r, 1), amt = txm_rows_get_i64(r, 2),
                after = txm_rows_get_i64(r, 3);
        if (a < 1 || a > 2) {
            VIOLATION(s, "%s: entry for unknown account %lld", where, (long long)a);
            continue;
        }
        if (seq != prev_seq[a - 1] + 1)
            VIOLATION(s, "%s: account %lld: seq %lld follows %lld", where, (long long)a, (long long)seq,
                      (long long)prev_seq[a - 1]);
        if (after != prev_bal[a - 1] + amt)
            VIOLATION(s, "%s: account %lld seq %lld: balance_after %lld != %lld + %lld", where, (long long)a,
                      (long long)seq, (long long)after, (long long)prev_bal[a - 1], (long long)amt);
        prev_seq[a - 1] = seq;
        prev_bal[a - 1] = after;
        n[a - 1]++;
        sum[a - 1] += amt;
    }
    txm_rows_free(r);
    for (acct = 1; acct <= 2; acct++) {
        txm_value p = txm_int(acct);
        int64_t bal = qi(s->admin, "SELECT balance FROM ks_accounts WHERE id = ?", &p, 1);
        int64_t last = qi(s->admin, "SELECT last_seq FROM ks_accounts WHERE id = ?", &p, 1);
        if (bal != prev_bal[acct - 1] || last != prev_seq[acct - 1])
            VIOLATION(s, "%s: account %d holds balance %lld seq %lld, its chain ends at %lld seq %lld", where, acct,
                      (long long)bal, (long long)last, (long long)prev_bal[acct - 1], (long long)prev_seq[acct - 1]);
        if (n[acct - 1] < s->posts[acct - 1] || sum[acct - 1] != s->sum[acct - 1])
            VIOLATION(s, "%s: account %d: %lld entries summing %lld, expected %lld summing %lld (lost)", where, acct,
                      (long long)n[acct - 1], (long long)sum[acct - 1], (long long)s->posts[acct - 1],
                      (long long)s->sum[acct - 1]);
        if (n[acct - 1] > s->posts[acct - 1])
            VIOLATION(s, "%s: account %d: %lld entries, expected %lld (applied twice)", where, acct,
                      (long long)n[acct - 1], (long long)s->posts[acct - 1]);
    }
    if (q1(s->admin, "SELECT COUNT(*) FROM ks_audit") != q1(s->admin, "SELECT COUNT(*) FROM ks_entries"))
        VIOLATION(s, "%s: the nested level's audit rows do not match the entries", where);
}

/* The application's recovery: a usable connection again. */
static void recover(sweep *s)
{
    int i, rc = 0;
    for (i = 0; i < 200; i++) {
        rc = txm_exec(s->c, "SELECT 1", NULL, 0, NULL);
        if (rc == 0)
            return;
        if (rc == TXM_ECONNECTION)
            (void)txm_reconnect(s->c);
        else
            sleep_ms(5); /* a KILL QUERY that arrived late interrupts one statement */
    }
    cr_assert_fail("killsweep: cannot recover the connection: %s: %s", txm_err_name(rc), txm_error_last()->message);
}

/* Posts `amount` to `acct` under `key`, killed at s->kill_at on the first attempt, retried with the
 * same key until it is known to be applied; checks every attempt against the database. */
static void post(sweep *s, int acct, int64_t amount, const char *key)
{
    int attempt_no;
    bool prior_unknown = false; /* an earlier attempt ended with TXM_ECOMMIT_UNKNOWN */
    char where[160];
    for (attempt_no = 0; attempt_no < 8; attempt_no++) {
        attempt a;
        int rc;
        int64_t before, after;
        memset(&a, 0, sizeof a);
        if (attempt_no > 0) {
            s->kill_at = P_NONE;
            s->retries++;
        }
        snprintf(where, sizeof where, "%s %s, post %s attempt %d",
                 s->kind == K_QUERY ? "KILL QUERY" : s->eng == ENG_PG ? "pg_terminate_backend" : "KILL",
                 s->kill_at >= 0 ? pos_name[s->kill_at] : "(no kill)", key, attempt_no + 1);
        recover(s);
        s->victim = session_id(s->c, s->eng);
        before = key_count(s, key);
        rc = post_attempt(s, acct, amount, key, &a);
        after = key_count(s, key);
        if (attempt_no == 0 && s->kill_at >= 0) {
            if (rc != s->first_rc[s->kill_at] && strstr(where, "-0-") == NULL)
                fprintf(stderr, "killsweep: note: %s returned %s, in the first round %s\n", where,
                        rc == POST_DONE ? "0 (committed)" : txm_err_name(rc),
                        s->first_rc[s->kill_at] == POST_DONE ? "0 (committed)" : txm_err_name(s->first_rc[s->kill_at]));
            else
                s->first_rc[s->kill_at] = rc;
        }
        if (txm_depth(s->c) != 0)
            VIOLATION(s, "%s: txm_depth %d after the post", where, txm_depth(s->c));
        if (after > 1)
            VIOLATION(s, "%s: key applied %lld times", where, (long long)after);
        if (rc == POST_ALREADY) {
            if (!prior_unknown)
                VIOLATION(s, "%s: the key was found applied, but no earlier attempt of the post ended with an "
                             "unknown outcome (a failed one committed after all)",
                          where);
            if (a.commit_runs || a.rollback_runs != 1)
                VIOLATION(s, "%s: the rolled-back duplicate ran %d on-commit, %d on-rollback hooks", where,
                          a.commit_runs, a.rollback_runs);
            s->already++;
            s->acked++;
            s->posts[acct - 1]++;
            s->sum[acct - 1] += amount;
            return;
        }
        if (rc == POST_DONE) {
            if (attempt_no == 0 && s->kind == K_SESSION)
                VIOLATION(s, "%s: the post committed although its session was killed: the kill missed its position",
                          where);
            if (before != 0 || after != 1)
                VIOLATION(s, "%s: txm_commit returned 0 but the entry count went %lld -> %lld", where,
                          (long long)before, (long long)after);
            if (a.commit_runs != 1 || a.rollback_runs != 0 || a.nested_rollback_runs != 0)
                VIOLATION(s, "%s: committed, but hooks ran: %d on-commit, %d on-rollback, %d nested on-rollback",
                          where, a.commit_runs, a.rollback_runs, a.nested_rollback_runs);
            s->acked++;
            s->posts[acct - 1]++;
            s->sum[acct - 1] += amount;
            return;
        }
        if (rc == TXM_ECOMMIT_UNKNOWN) {
            txm_outcome out = TXM_OUTCOME_UNKNOWN;
            s->unknown++;
            prior_unknown = true;
            if (a.commit_runs || a.rollback_runs || a.nested_rollback_runs)
                VIOLATION(s, "%s: COMMIT_UNKNOWN, but hooks ran (%d on-commit, %d on-rollback)", where,
                          a.commit_runs, a.rollback_runs + a.nested_rollback_runs);
            if (s->eng == ENG_PG) {
                int r2 = txm_resolve_outcome(s->c, &out);
                if (r2)
                    VIOLATION(s, "%s: txm_resolve_outcome failed: %s: %s", where, txm_err_name(r2),
                              txm_error_last()->message);
                if (out == TXM_OUTCOME_COMMITTED) {
                    s->resolved_committed++;
                    if (after != 1)
                        VIOLATION(s, "%s: resolved COMMITTED, but the entry is absent", where);
                } else if (out == TXM_OUTCOME_ABORTED) {
                    s->resolved_aborted++;
                    if (after != before)
                        VIOLATION(s, "%s: resolved ABORTED, but the entry appeared", where);
                } else {
                    /* The backend has exited and the id is recent: the server knows. UNKNOWN here
                     * means txm lost the id (or reported a failure before COMMIT as unknown). */
                    s->resolved_unknown++;
                    VIOLATION(s, "%s: txm_resolve_outcome answered UNKNOWN (the entry is %s)", where,
                              after ? "present" : "absent");
                }
            } else {
                /* MariaDB: the idempotency key is the resolution: the retry below finds it
                 * (POST_ALREADY) exactly when this COMMIT happened */
                if (after > before)
                    s->resolved_committed++;
                else
                    s->resolved_aborted++;
            }
            /* Retry with the same key in every case (an application that cannot resolve does
             * this): the post's idempotency check must turn a committed one into a no-op. */
            continue;
        }
        /* a definite failure: nothing of this attempt may have committed */
        s->failed++;
        if (after != before)
            VIOLATION(s, "%s: txm reported %s (%s), but the post committed", where, txm_err_name(rc),
                      txm_error_last()->message);
        if (a.commit_runs != 0 || a.rollback_runs != 1 || a.nested_rollback_runs != (a.nested_registered ? 1 : 0))
            VIOLATION(s, "%s: failed with %s, but hooks ran: %d on-commit, %d on-rollback, %d/%d nested on-rollback",
                      where, txm_err_name(rc), a.commit_runs, a.rollback_runs, a.nested_rollback_runs,
                      a.nested_registered ? 1 : 0);
    }
    cr_assert_fail("killsweep: %s: the post never went through", where);
}

/* ---- the sweep ------------------------------------------------------------------------------- */

static void schema(sweep *s)
{
    x(s->admin, "DROP TABLE IF EXISTS ks_audit");
    x(s->admin, "DROP TABLE IF EXISTS ks_entries");
    x(s->admin, "DROP TABLE IF EXISTS ks_accounts");
    x(s->admin, "CREATE TABLE ks_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL, last_seq INT NOT NULL)");
    x(s->admin, "CREATE TABLE ks_entries (account_id INT NOT NULL, seq INT NOT NULL, amount BIGINT NOT NULL, "
                "balance_after BIGINT NOT NULL, idem_key VARCHAR(64) NOT NULL UNIQUE, PRIMARY KEY (account_id, seq))");
    x(s->admin, "CREATE TABLE ks_audit (idem_key VARCHAR(64) PRIMARY KEY)");
    x(s->admin, "INSERT INTO ks_accounts VALUES (1, 0, 0), (2, 0, 0)");
    if (s->eng == ENG_PG) {
        /* The gate for "during COMMIT": a deferred trigger that takes the killer's lock shared. */
        x(s->admin, "CREATE OR REPLACE FUNCTION ks_gate() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_advisory_xact_lock_shared(" PG_GATE_LOCK "); RETURN NULL; END $$");
        x(s->admin, "CREATE CONSTRAINT TRIGGER ks_gate AFTER INSERT ON ks_entries DEFERRABLE INITIALLY DEFERRED "
                    "FOR EACH ROW EXECUTE FUNCTION ks_gate()");
    }
}

static unsigned rounds(void)
{
    const char *e = getenv("TXM_KILLSWEEP_ROUNDS");
    long n = e && *e ? strtol(e, NULL, 10) : 3;
    return n >= 1 && n <= 1000 ? (unsigned)n : 3;
}

static void run_sweep(sweep *s, const char *label)
{
    unsigned round, nrounds = rounds(), positions = 0;
    int pos, serial = 0;
    char key[64], where[96];
    for (round = 0; round < nrounds; round++) {
        for (pos = 0; pos < P_COUNT; pos++) {
            txm_conn *app = s->c;
            int acct = 1 + (serial % 2);
            int64_t amount = (serial % 3 == 0 ? -1 : 1) * (100 + serial);
            if (pos == P_AFTER_COMMIT) {
                if (s->kind == K_QUERY)
                    continue; /* nothing left to interrupt */
                s->c = check_open(s->proxy_url, NULL);
            }
            snprintf(key, sizeof key, "%s-%u-%d", label, round, pos);
            s->kill_at = pos;
            post(s, acct, amount, key);
            positions++;
            serial++;
            snprintf(where, sizeof where, "%s after %s", label, pos_name[pos]);
            audit(s, where);
            if (s->c != app) {
                txm_close(s->c);
                s->c = app;
            }
        }
    }
    for (pos = 0; pos < P_COUNT; pos++) {
        if (pos != P_AFTER_COMMIT || s->kind != K_QUERY)
            fprintf(stderr, "killsweep %s: killed %-50s -> %s\n", label, pos_name[pos],
                    s->first_rc[pos] == POST_DONE ? "committed (the kill had no effect)" : txm_err_name(s->first_rc[pos]));
    }
    fprintf(stderr,
            "killsweep %s: %u positions x %u rounds = %u posts killed (%u kills), %u acknowledged, %u failed "
            "definitely, %u COMMIT_UNKNOWN (%u committed, %u aborted, %u unresolved), %u retries, "
            "%u retries found the post already applied, %u violations\n",
            label, positions / nrounds, nrounds, positions, s->kills, s->acked, s->failed, s->unknown,
            s->resolved_committed, s->resolved_aborted, s->resolved_unknown, s->retries, s->already, s->violations);
}

static void sweep_init(sweep *s, engine eng, kill_kind kind, const char *url)
{
    memset(s, 0, sizeof *s);
    s->eng = eng;
    s->kind = kind;
    s->url = url;
    s->admin = check_open(url, NULL);
    s->holder = check_open(url, NULL);
    s->c = check_open(url, NULL);
    s->proxy = pg_proxy_start(url, s->proxy_url, sizeof s->proxy_url);
    cr_assert_not_null(s->proxy, "cannot start the proxy");
}

static void sweep_end(sweep *s)
{
    txm_close(s->c);
    txm_close(s->holder);
    txm_close(s->admin);
    pg_proxy_stop(s->proxy);
    cr_assert_eq(s->violations, 0, "the kill sweep found %u violations (see stderr)", s->violations);
}

Test(killsweep, postgresql, .timeout = 600)
{
    sweep s;
    NEED_URL("TXM_TEST_PG_URL", "scripts/pg-server.sh");
    sweep_init(&s, ENG_PG, K_SESSION, getenv("TXM_TEST_PG_URL"));
    schema(&s);
    run_sweep(&s, "postgresql");
    x(s.admin, "DROP TABLE ks_audit");
    x(s.admin, "DROP TABLE ks_entries");
    x(s.admin, "DROP TABLE ks_accounts");
    x(s.admin, "DROP FUNCTION ks_gate()");
    sweep_end(&s);
}

static void mysql_sweep(kill_kind kind, const char *label)
{
    sweep s;
    sweep_init(&s, ENG_MY, kind, getenv("TXM_TEST_MYSQL_URL"));
    schema(&s);
    run_sweep(&s, label);
    x(s.admin, "DROP TABLE ks_audit");
    x(s.admin, "DROP TABLE ks_entries");
    x(s.admin, "DROP TABLE ks_accounts");
    sweep_end(&s);
}

Test(killsweep, mysql_kill, .timeout = 600)
{
    NEED_URL("TXM_TEST_MYSQL_URL", "scripts/mariadb-server.sh");
    mysql_sweep(K_SESSION, "mysql-kill");
}

Test(killsweep, mysql_kill_query, .timeout = 600)
{
    NEED_URL("TXM_TEST_MYSQL_URL", "scripts/mariadb-server.sh");
    mysql_sweep(K_QUERY, "mysql-kill-query");
}
