/* Usage snapshots with FK-null retry (docs/billing.md, "Usage snapshots"): the five cases, each
 * outside and inside a caller's transaction, and a two-connection race of deletes against
 * recorders with the quota totals checked exactly. */
#include "billing_fixture.h"

#include <pthread.h>

TestSuite(usage, .fini = bf_cleanup);

typedef struct fx {
    txm_conn *c;
    txm_billing *b;
    int64_t account, key, key2, upstream;
} fx;

static void fx_open(fx *f)
{
    memset(f, 0, sizeof *f);
    f->c = bf_open();
    f->b = bf_billing(f->c, NULL);
    BF_OK(txm_billing_account(f->b, f->c, "acme", 0, &f->account, NULL));
    BF_OK(txm_billing_api_key_create(f->b, f->c, "key-1", &f->key));
    BF_OK(txm_billing_api_key_create(f->b, f->c, "key-2", &f->key2));
    BF_OK(txm_billing_upstream_create(f->b, f->c, "up-1", &f->upstream));
}

static void fx_close(fx *f)
{
    cr_assert_eq(txm_depth(f->c), 0);
    txm_billing_free(f->b);
    txm_close(f->c);
}

static int64_t q(txm_conn *c, const char *sql, int64_t arg)
{
    txm_value p = txm_int(arg);
    int64_t v = -1;
    int rc = txm_query_i64(c, &v, sql, strchr(sql, '?') ? &p : NULL, strchr(sql, '?') ? 1 : 0);
    cr_assert_eq(rc, 0, "%s: %s", sql, txm_error_last()->message);
    return v;
}

static void del(txm_conn *c, const char *table, int64_t id)
{
    char sql[128];
    txm_value p = txm_int(id);
    int64_t n = 0;
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = ?", table);
    BF_OK(txm_exec(c, sql, &p, 1, &n));
    cr_assert_eq(n, 1);
}

/* A caller's transaction around a scenario (mode 1): work before the call, work after it, and a
 * commit that must keep both (the call's failure undoes only its own level). */
typedef struct caller {
    txm_tx *tx;
    int64_t before, after;
} caller;

static void caller_begin(fx *f, int mode, caller *k)
{
    memset(k, 0, sizeof *k);
    if (!mode)
        return;
    BF_OK(txm_begin(&k->tx, f->c, NULL));
    BF_OK(txm_billing_upstream_create(f->b, f->c, "caller-before", &k->before));
}

static void caller_end(fx *f, int mode, caller *k)
{
    if (!mode)
        return;
    cr_assert_eq(txm_depth(f->c), 1, "the call left levels open or ended the caller's");
    BF_OK(txm_billing_upstream_create(f->b, f->c, "caller-after", &k->after));
    BF_OK(txm_commit(k->tx));
    cr_assert_eq(q(f->c, "SELECT COUNT(*) FROM billing_upstreams WHERE name LIKE 'caller-%'", 0), 2,
                 "the caller's work around the call did not commit");
}

typedef struct saved_err {
    int code;
    unsigned flags;
    int native_code;
    char message[512], sqlstate[8], constraint_name[128], table_name[128], detail[512];
} saved_err;

static void save_err(saved_err *s)
{
    const txm_error *e = txm_error_last();
    memset(s, 0, sizeof *s);
    s->code = e->code;
    s->flags = e->flags;
    s->native_code = e->native_code;
    snprintf(s->message, sizeof s->message, "%s", e->message);
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", e->sqlstate);
    snprintf(s->constraint_name, sizeof s->constraint_name, "%s", e->constraint_name);
    snprintf(s->table_name, sizeof s->table_name, "%s", e->table_name);
    snprintf(s->detail, sizeof s->detail, "%s", e->detail);
}

/* The engine's own error for this snapshot, provoked by hand in a level of its own. */
static void expected_err(fx *f, const txm_billing_usage *u, saved_err *out)
{
    txm_tx *t = NULL;
    txm_value p[4];
    p[0] = u->account_id ? txm_int(u->account_id) : txm_null();
    p[1] = u->api_key_id ? txm_int(u->api_key_id) : txm_null();
    p[2] = u->upstream_id ? txm_int(u->upstream_id) : txm_null();
    p[3] = txm_int(u->units);
    BF_OK(txm_begin(&t, f->c, NULL));
    cr_assert_neq(txm_exec(f->c,
                           "INSERT INTO billing_usage (account_id, api_key_id, upstream_id, units) VALUES (?, ?, ?, ?)",
                           p, 4, NULL),
                  0, "the hand-made insert was accepted");
    save_err(out);
    BF_OK(txm_rollback(t));
}

static void assert_same_err(const saved_err *want)
{
    saved_err got;
    save_err(&got);
    cr_assert_eq(got.code, want->code, "%s instead of %s: %s", txm_err_name(got.code), txm_err_name(want->code),
                 got.message);
    cr_assert_str_eq(got.message, want->message);
    cr_assert_str_eq(got.sqlstate, want->sqlstate);
    cr_assert_eq(got.native_code, want->native_code);
    cr_assert_str_eq(got.constraint_name, want->constraint_name);
    cr_assert_str_eq(got.table_name, want->table_name);
    if (want->code == TXM_ECHECK && strncmp(want->detail, "Failing row contains (", 22) == 0)
        /* PostgreSQL quotes the row, whose identity value differs between the two attempts */
        cr_assert(strncmp(got.detail, "Failing row contains (", 22) == 0, "%s", got.detail);
    else
        cr_assert_str_eq(got.detail, want->detail);
    cr_assert_eq(got.flags, want->flags);
}

static int server(void) { return strcmp(bf_engine(), "sqlite") != 0; }

/* 1. The api key vanished: retried with api_key_id NULL, no quota charged to anyone. */
static void api_key_vanished(int mode)
{
    fx f;
    caller k;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    int64_t id;
    fx_open(&f);
    del(f.c, "billing_api_keys", f.key); /* between the caller reading the id and recording */
    caller_begin(&f, mode, &k);
    u.account_id = f.account;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    u.units = 7;
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
    cr_assert_eq(r.retried, 1);
    cr_assert_eq(r.api_key_id, 0);
    cr_assert_eq(r.upstream_id, f.upstream);
    cr_assert_eq(r.quota_delta, 0);
    cr_assert_gt(r.id, 0);
    caller_end(&f, mode, &k);
    id = r.id;
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage WHERE id = ? AND api_key_id IS NULL AND units = 7", id),
                 1);
    cr_assert_eq(q(f.c, "SELECT upstream_id FROM billing_usage WHERE id = ?", id), f.upstream);
    /* 3. No ghost quota: nothing charged anywhere. */
    cr_assert_eq(q(f.c, "SELECT COALESCE(SUM(quota_used), 0) FROM billing_api_keys", 0), 0);
    fx_close(&f);
}
Test(usage, api_key_fk_retried_with_null) { api_key_vanished(0); }
Test(usage, api_key_fk_retried_with_null_in_caller_tx) { api_key_vanished(1); }

/* 2. The upstream vanished: retried with upstream_id NULL; the key is still charged. */
static void upstream_vanished(int mode)
{
    fx f;
    caller k;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    fx_open(&f);
    del(f.c, "billing_upstreams", f.upstream);
    caller_begin(&f, mode, &k);
    u.account_id = f.account;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    u.units = 11;
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
    cr_assert_eq(r.retried, 1);
    cr_assert_eq(r.api_key_id, f.key);
    cr_assert_eq(r.upstream_id, 0);
    cr_assert_eq(r.quota_delta, 11);
    caller_end(&f, mode, &k);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage WHERE id = ? AND upstream_id IS NULL", r.id), 1);
    cr_assert_eq(q(f.c, "SELECT api_key_id FROM billing_usage WHERE id = ?", r.id), f.key);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), 11);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key2), 0);
    fx_close(&f);
}
Test(usage, upstream_fk_retried_with_null) { upstream_vanished(0); }
Test(usage, upstream_fk_retried_with_null_in_caller_tx) { upstream_vanished(1); }

/* 3. Both references vanished in the same race: one retry nulls both; no quota delta. A live key
 * recorded afterwards is charged exactly its units (the delta follows what was written). */
static void both_vanished(int mode)
{
    fx f;
    caller k;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    fx_open(&f);
    del(f.c, "billing_api_keys", f.key);
    del(f.c, "billing_upstreams", f.upstream);
    caller_begin(&f, mode, &k);
    u.account_id = f.account;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    u.units = 5;
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
    cr_assert_eq(r.retried, 1);
    cr_assert_eq(r.api_key_id, 0);
    cr_assert_eq(r.upstream_id, 0);
    cr_assert_eq(r.quota_delta, 0);
    u.api_key_id = f.key2;
    u.upstream_id = 0;
    u.units = 3;
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
    cr_assert_eq(r.retried, 0);
    cr_assert_eq(r.api_key_id, f.key2);
    cr_assert_eq(r.quota_delta, 3);
    caller_end(&f, mode, &k);
    cr_assert_eq(q(f.c, "SELECT COALESCE(SUM(quota_used), 0) FROM billing_api_keys", 0), 3);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage WHERE api_key_id IS NULL AND upstream_id IS NULL", 0), 1);
    fx_close(&f);
}
Test(usage, no_quota_delta_for_a_nulled_key) { both_vanished(0); }
Test(usage, no_quota_delta_for_a_nulled_key_in_caller_tx) { both_vanished(1); }

/* 4. A CHECK violation (units < 0) is not retried and propagates with the engine's record intact,
 * even with a vanished key in the same snapshot (the CHECK comes first on every engine). */
static void check_propagates(int mode)
{
    fx f;
    caller k;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    saved_err want;
    txm_stats s0, s1;
    int rc;
    fx_open(&f);
    u.account_id = f.account;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    u.units = -1;
    caller_begin(&f, mode, &k);
    expected_err(&f, &u, &want);
    cr_assert_eq(want.code, TXM_ECHECK, "%s", want.message);
    txm_stats_get(f.c, &s0);
    rc = txm_billing_usage_record(f.b, f.c, &u, &r);
    txm_stats_get(f.c, &s1);
    cr_assert_eq(rc, TXM_ECHECK);
    assert_same_err(&want);
    if (server())
        cr_assert(strstr(txm_error_last()->constraint_name, "usage_units_nonneg") != NULL, "constraint '%s'",
                  txm_error_last()->constraint_name);
    /* One statement: the insert. A retry (or a probe) would have sent more. */
    cr_assert_eq(s1.statements - s0.statements, 1, "%llu statements",
                 (unsigned long long)(s1.statements - s0.statements));
    cr_assert_eq(s1.retries, s0.retries);
    cr_assert_eq(r.id, 0);
    cr_assert_eq(r.retried, 0);
    caller_end(&f, mode, &k);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), 0);
    fx_close(&f);
}
Test(usage, check_error_propagated_without_retry) { check_propagates(0); }
Test(usage, check_error_propagated_without_retry_in_caller_tx) { check_propagates(1); }

/* 5. An FK error on a reference that is not retried (the account) propagates as the engine
 * reported it (category, constraint name, message, detail); the key's quota charge made before the
 * insert is undone with the call's level. */
static void account_fk_propagates(int mode)
{
    fx f;
    caller k;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    saved_err want;
    int rc;
    fx_open(&f);
    u.account_id = f.account + 1000;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    u.units = 9;
    caller_begin(&f, mode, &k);
    expected_err(&f, &u, &want);
    cr_assert_eq(want.code, TXM_EFOREIGN_KEY, "%s", want.message);
    rc = txm_billing_usage_record(f.b, f.c, &u, &r);
    cr_assert_eq(rc, TXM_EFOREIGN_KEY);
    assert_same_err(&want);
    if (server()) /* SQLite names no constraint (docs/errors.md) */
        cr_assert(strstr(txm_error_last()->constraint_name, "usage_account_fk") != NULL, "constraint '%s'",
                  txm_error_last()->constraint_name);
    cr_assert_eq(r.id, 0);
    caller_end(&f, mode, &k);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), 0, "ghost quota");
    fx_close(&f);
}
Test(usage, unknown_constraint_propagated_intact) { account_fk_propagates(0); }
Test(usage, unknown_constraint_propagated_intact_in_caller_tx) { account_fk_propagates(1); }

/* A vanished key together with a missing account: nothing is retried into success, the error is an
 * account FK error, nothing is charged. (Which FK the engine checks first differs; either way the
 * caller learns the account is wrong.) */
Test(usage, vanished_key_and_missing_account)
{
    fx f;
    txm_billing_usage u = {0, 0, 0, 0};
    int rc;
    fx_open(&f);
    del(f.c, "billing_api_keys", f.key);
    u.account_id = f.account + 1000;
    u.api_key_id = f.key;
    u.units = 2;
    rc = txm_billing_usage_record(f.b, f.c, &u, NULL);
    cr_assert_eq(rc, TXM_EFOREIGN_KEY, "%s", txm_error_last()->message);
    if (server())
        cr_assert(strstr(txm_error_last()->constraint_name, "usage_account_fk") != NULL, "constraint '%s'",
                  txm_error_last()->constraint_name);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    fx_close(&f);
}

Test(usage, plain_snapshots_and_quota)
{
    fx f;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    fx_open(&f);
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r)); /* no references at all */
    cr_assert_eq(r.retried, 0);
    cr_assert_eq(r.quota_delta, 0);
    u.api_key_id = f.key;
    u.units = 4;
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, NULL));
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
    cr_assert_eq(r.api_key_id, f.key);
    cr_assert_eq(r.quota_delta, 4);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), 8);
    u.units = 0; /* zero units: written, nothing charged */
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
    cr_assert_eq(r.api_key_id, f.key);
    cr_assert_eq(r.quota_delta, 0);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 4);
    fx_close(&f);
}

Test(usage, quota_overflow_is_an_error)
{
    fx f;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_value p[2];
    int rc;
    fx_open(&f);
    p[0] = txm_int(INT64_MAX - 10);
    p[1] = txm_int(f.key);
    BF_OK(txm_exec(f.c, "UPDATE billing_api_keys SET quota_used = ? WHERE id = ?", p, 2, NULL));
    u.api_key_id = f.key;
    u.units = 11;
    rc = txm_billing_usage_record(f.b, f.c, &u, NULL);
    cr_assert_eq(rc, TXM_EDATA, "%s -> %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_usage_record") != NULL);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), INT64_MAX - 10);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    u.units = 10; /* exactly to the limit is fine */
    BF_OK(txm_billing_usage_record(f.b, f.c, &u, NULL));
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), INT64_MAX);
    fx_close(&f);
}

Test(usage, bad_arguments)
{
    fx f;
    txm_billing_usage u = {0, 0, 0, 0};
    txm_billing_usage_result r;
    int64_t id = 5;
    fx_open(&f);
    cr_assert_eq(txm_billing_usage_record(f.b, f.c, NULL, &r), TXM_EINVALID);
    cr_assert_eq(txm_billing_usage_record(NULL, f.c, &u, &r), TXM_EINVALID);
    cr_assert_eq(txm_billing_usage_record(f.b, NULL, &u, &r), TXM_EINVALID);
    u.api_key_id = -3;
    cr_assert_eq(txm_billing_usage_record(f.b, f.c, &u, &r), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_usage_record") != NULL);
    cr_assert_eq(txm_billing_api_key_create(f.b, f.c, "", &id), TXM_EINVALID);
    cr_assert_eq(id, 0);
    cr_assert_eq(txm_billing_api_key_create(f.b, f.c, NULL, &id), TXM_EINVALID);
    cr_assert_eq(txm_billing_upstream_create(f.b, f.c, "x", NULL), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_upstream_create") != NULL);
    cr_assert_eq(txm_billing_api_key_create(NULL, f.c, "x", &id), TXM_EINVALID);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    fx_close(&f);
}

/* ---- the race: a deleter and a recorder on two connections -------------------------------- */

#define POOL 4
#define LOCKSTEP 250
#define FREE_RUN 500

typedef struct race {
    txm_billing *b;
    pthread_mutex_t mu;
    pthread_barrier_t bar;
    int64_t keys[POOL], ups[POOL];
    volatile int stop;
    /* deleter's totals */
    int64_t deleted_quota, deleted_keys, deleted_ups;
    /* recorder's totals */
    int64_t recorded, charged, charged_units_written, retried, in_tx;
    int64_t account;
    int failed;
    char failure[512];
} race;

typedef struct del_call {
    const char *sql;
    int64_t id, quota;
} del_call;

static int del_body(txm_conn *c, void *payload)
{
    del_call *d = payload;
    txm_value p = txm_int(d->id);
    d->quota = 0;
    return txm_query_i64(c, &d->quota, d->sql, &p, 1);
}

/* Deletes pool slot i's key (what = 1), upstream (2) or both (3) and puts fresh ones in its place. */
static int replace(race *R, txm_conn *c, int i, int what, char *err, size_t errsz)
{
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    del_call d;
    int64_t fresh;
    int rc;
    pol.max_attempts = 50;
    if (what & 1) {
        d.sql = "DELETE FROM billing_api_keys WHERE id = ? RETURNING quota_used";
        pthread_mutex_lock(&R->mu);
        d.id = R->keys[i];
        pthread_mutex_unlock(&R->mu);
        if ((rc = txm_retry(c, &pol, del_body, &d)) != 0)
            goto fail;
        R->deleted_quota += d.quota;
        R->deleted_keys++;
        if ((rc = txm_billing_api_key_create(R->b, c, "k", &fresh)) != 0)
            goto fail;
        pthread_mutex_lock(&R->mu);
        R->keys[i] = fresh;
        pthread_mutex_unlock(&R->mu);
    }
    if (what & 2) {
        txm_value p;
        pthread_mutex_lock(&R->mu);
        p = txm_int(R->ups[i]);
        pthread_mutex_unlock(&R->mu);
        if ((rc = txm_exec(c, "DELETE FROM billing_upstreams WHERE id = ?", &p, 1, NULL)) != 0)
            goto fail;
        R->deleted_ups++;
        if ((rc = txm_billing_upstream_create(R->b, c, "u", &fresh)) != 0)
            goto fail;
        pthread_mutex_lock(&R->mu);
        R->ups[i] = fresh;
        pthread_mutex_unlock(&R->mu);
    }
    return 0;
fail:
    snprintf(err, errsz, "deleter: %s: %s", txm_err_name(rc), txm_error_last()->message);
    return rc;
}

typedef struct rec_call {
    race *R;
    txm_billing_usage u;
    txm_billing_usage_result r;
} rec_call;

static int rec_body(txm_conn *c, void *payload)
{
    rec_call *rc = payload;
    return txm_billing_usage_record(rc->R->b, c, &rc->u, &rc->r);
}

/* Records a snapshot for pool slot i (ids read before the call, as the incident's writer did). */
static int record(race *R, txm_conn *c, int i, unsigned n)
{
    rec_call k;
    int rc;
    memset(&k, 0, sizeof k);
    k.R = R;
    pthread_mutex_lock(&R->mu);
    k.u.api_key_id = R->keys[i];
    k.u.upstream_id = R->ups[i];
    pthread_mutex_unlock(&R->mu);
    k.u.account_id = R->account;
    k.u.units = 1 + (int64_t)(n % 7);
    if (n % 3 == 0) {
        /* Inside a caller's transaction (retried as a whole by the caller: a deadlock on MySQL
         * loses the caller's transaction, that is the caller's to retry). */
        txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
        pol.max_attempts = 50;
        rc = txm_retry(c, &pol, rec_body, &k);
        R->in_tx++;
    } else {
        rc = txm_billing_usage_record(R->b, c, &k.u, &k.r);
    }
    if (rc) {
        snprintf(R->failure, sizeof R->failure, "recorder: %s: %s", txm_err_name(rc), txm_error_last()->message);
        return rc;
    }
    if ((k.r.api_key_id != 0 && k.r.api_key_id != k.u.api_key_id) ||
        (k.r.upstream_id != 0 && k.r.upstream_id != k.u.upstream_id) ||
        k.r.quota_delta != (k.r.api_key_id ? k.u.units : 0) || k.r.id <= 0 ||
        (!k.r.retried && (k.r.api_key_id != k.u.api_key_id || k.r.upstream_id != k.u.upstream_id))) {
        snprintf(R->failure, sizeof R->failure,
                 "recorder: inconsistent result: key %lld->%lld up %lld->%lld delta %lld units %lld retried %d",
                 (long long)k.u.api_key_id, (long long)k.r.api_key_id, (long long)k.u.upstream_id,
                 (long long)k.r.upstream_id, (long long)k.r.quota_delta, (long long)k.u.units, k.r.retried);
        return TXM_ERROR;
    }
    R->recorded++;
    R->retried += k.r.retried;
    R->charged += k.r.quota_delta;
    return 0;
}

static void *deleter_lockstep(void *arg)
{
    race *R = arg;
    txm_conn *c = NULL;
    char err[512] = "";
    unsigned n;
    if (txm_open(&c, bf_url(), NULL) != 0) {
        __atomic_store_n(&R->failed, 1, __ATOMIC_SEQ_CST);
        snprintf(R->failure, sizeof R->failure, "open: %s", txm_error_last()->message);
    }
    for (n = 0; n < LOCKSTEP; n++) {
        pthread_barrier_wait(&R->bar); /* the recorder has read slot n % POOL's ids */
        if (c && !__atomic_load_n(&R->failed, __ATOMIC_SEQ_CST) && replace(R, c, (int)(n % POOL), (int)(n % 4), err, sizeof err) != 0) {
            __atomic_store_n(&R->failed, 1, __ATOMIC_SEQ_CST);
            snprintf(R->failure, sizeof R->failure, "%s", err);
        }
        pthread_barrier_wait(&R->bar); /* the recorder may insert now */
    }
    txm_close(c);
    return NULL;
}

static void *deleter_free(void *arg)
{
    race *R = arg;
    txm_conn *c = NULL;
    char err[512] = "";
    unsigned n = 0;
    if (txm_open(&c, bf_url(), NULL) != 0) {
        __atomic_store_n(&R->failed, 1, __ATOMIC_SEQ_CST);
        snprintf(R->failure, sizeof R->failure, "open: %s", txm_error_last()->message);
        return NULL;
    }
    while (!__atomic_load_n(&R->stop, __ATOMIC_SEQ_CST) && !__atomic_load_n(&R->failed, __ATOMIC_SEQ_CST)) {
        if (replace(R, c, (int)(n % POOL), 1 + (int)(n % 3), err, sizeof err) != 0) {
            __atomic_store_n(&R->failed, 1, __ATOMIC_SEQ_CST);
            snprintf(R->failure, sizeof R->failure, "%s", err);
        }
        n++;
    }
    txm_close(c);
    return NULL;
}

/* The recorder side of the lockstep phase: reads ids, lets the deleter delete, then records. The
 * read happens inside record() before the barrier in the incident order: read, delete, insert. */
static int record_after_delete(race *R, txm_conn *c, unsigned n)
{
    rec_call k;
    int i = (int)(n % POOL);
    int rc;
    memset(&k, 0, sizeof k);
    k.R = R;
    pthread_mutex_lock(&R->mu);
    k.u.api_key_id = R->keys[i];
    k.u.upstream_id = R->ups[i];
    pthread_mutex_unlock(&R->mu);
    k.u.account_id = R->account;
    k.u.units = 1 + (int64_t)(n % 5);
    pthread_barrier_wait(&R->bar);
    pthread_barrier_wait(&R->bar); /* deleted (n % 4: nothing, key, upstream, both) */
    rc = txm_billing_usage_record(R->b, c, &k.u, &k.r);
    if (rc) {
        snprintf(R->failure, sizeof R->failure, "recorder: %s: %s", txm_err_name(rc), txm_error_last()->message);
        return rc;
    }
    if (k.r.retried != (n % 4 != 0) || (k.r.api_key_id == 0) != ((n % 4) & 1) ||
        (k.r.upstream_id == 0) != (((n % 4) & 2) != 0) || k.r.quota_delta != (k.r.api_key_id ? k.u.units : 0)) {
        snprintf(R->failure, sizeof R->failure, "lockstep %u: retried %d key %lld up %lld delta %lld", n, k.r.retried,
                 (long long)k.r.api_key_id, (long long)k.r.upstream_id, (long long)k.r.quota_delta);
        return TXM_ERROR;
    }
    R->recorded++;
    R->retried += k.r.retried;
    R->charged += k.r.quota_delta;
    return 0;
}

Test(usage, race_deleter_against_recorder, .timeout = 240)
{
    race R;
    txm_conn *c = bf_open(), *rc2 = NULL;
    pthread_t t;
    unsigned n;
    int i, err = 0;
    memset(&R, 0, sizeof R);
    R.b = bf_billing(c, NULL);
    pthread_mutex_init(&R.mu, NULL);
    pthread_barrier_init(&R.bar, NULL, 2);
    BF_OK(txm_billing_account(R.b, c, "racer", 0, &R.account, NULL));
    for (i = 0; i < POOL; i++) {
        BF_OK(txm_billing_api_key_create(R.b, c, "k", &R.keys[i]));
        BF_OK(txm_billing_upstream_create(R.b, c, "u", &R.ups[i]));
    }
    BF_OK(txm_open(&rc2, bf_url(), NULL));

    /* Phase 1, lockstep: the delete lands exactly between the read and the insert. */
    pthread_create(&t, NULL, deleter_lockstep, &R);
    for (n = 0; n < LOCKSTEP; n++)
        if (!err && !__atomic_load_n(&R.failed, __ATOMIC_SEQ_CST))
            err = record_after_delete(&R, rc2, n);
        else {
            pthread_barrier_wait(&R.bar);
            pthread_barrier_wait(&R.bar);
        }
    pthread_join(t, NULL);
    cr_assert(!err && !__atomic_load_n(&R.failed, __ATOMIC_SEQ_CST), "%s", R.failure);
    {
        int64_t want = 0; /* every iteration that deleted something retried once */
        for (n = 0; n < LOCKSTEP; n++)
            want += n % 4 != 0;
        cr_assert_eq(R.retried, want, "lockstep retries %lld, expected %lld", (long long)R.retried, (long long)want);
    }
    printf("usage race (%s): lockstep %u iterations, %lld FK-null retries\n", bf_engine(), LOCKSTEP, (long long)R.retried);

    /* Phase 2, free-running: deletes and records at full speed, lock waits and all. */
    {
        int64_t before = R.retried;
        __atomic_store_n(&R.stop, 0, __ATOMIC_SEQ_CST);
        pthread_create(&t, NULL, deleter_free, &R);
        for (n = 0; n < FREE_RUN && !err && !__atomic_load_n(&R.failed, __ATOMIC_SEQ_CST); n++)
            err = record(&R, rc2, (int)(n % POOL), n);
        __atomic_store_n(&R.stop, 1, __ATOMIC_SEQ_CST);
        pthread_join(t, NULL);
        cr_assert(!err && !__atomic_load_n(&R.failed, __ATOMIC_SEQ_CST), "%s", R.failure);
        txm_stats st;
        txm_stats_get(rc2, &st);
        printf("usage race (%s): free-running %u records (%lld in a caller's transaction) against %lld key and "
               "%lld upstream deletes: %lld FK-null retries, %llu transaction retries (deadlocks)\n",
               bf_engine(), FREE_RUN, (long long)R.in_tx, (long long)R.deleted_keys, (long long)R.deleted_ups,
               (long long)(R.retried - before), (unsigned long long)st.retries);
    }

    /* Totals: every unit charged is in a live key's quota or was deleted with its key; the units
     * of snapshots still referencing a key are exactly the live keys' quotas (deleting a key
     * nulled its snapshots and took its quota along). */
    cr_assert_eq(q(c, "SELECT COUNT(*) FROM billing_usage", 0), R.recorded);
    cr_assert_eq(q(c, "SELECT COALESCE(SUM(quota_used), 0) FROM billing_api_keys", 0) + R.deleted_quota, R.charged);
    cr_assert_eq(q(c, "SELECT COALESCE(SUM(units), 0) FROM billing_usage WHERE api_key_id IS NOT NULL", 0),
                 q(c, "SELECT COALESCE(SUM(quota_used), 0) FROM billing_api_keys", 0));
    cr_assert_eq(q(c,
                   "SELECT COUNT(*) FROM billing_usage u WHERE (api_key_id IS NOT NULL AND NOT EXISTS "
                   "(SELECT 1 FROM billing_api_keys k WHERE k.id = u.api_key_id)) OR (upstream_id IS NOT NULL AND "
                   "NOT EXISTS (SELECT 1 FROM billing_upstreams p WHERE p.id = u.upstream_id))",
                   0),
                 0, "a snapshot references a deleted parent");
    pthread_barrier_destroy(&R.bar);
    pthread_mutex_destroy(&R.mu);
    txm_close(rc2);
    txm_billing_free(R.b);
    txm_close(c);
}

/* ---- faults at exact places (the fault driver, docs/fault-driver.md) -------------------------- */

#include <txm/fault.h>

static txm_conn *fault_open(void)
{
    char url[600];
    txm_conn *c = NULL;
    const char *u = bf_url();
    snprintf(url, sizeof url, "fault+%s", u);
    BF_OK(txm_open(&c, url, NULL));
    return c;
}

/* A deadlock at the insert (statement 2: after the charge) loses the attempt; the retry charges
 * and writes once. */
Test(usage, deadlock_at_the_insert_is_retried_once_charged_once)
{
    fx f;
    txm_conn *fc;
    txm_billing_usage u = {0, 0, 0, 6};
    txm_billing_usage_result r;
    txm_stats st;
    fx_open(&f);
    fc = fault_open();
    u.account_id = f.account;
    u.api_key_id = f.key;
    BF_OK(txm_fault_set(fc, "fault=deadlock&fault_at=2"));
    BF_OK(txm_billing_usage_record(f.b, fc, &u, &r));
    cr_assert_eq(txm_fault_count(fc), 1);
    txm_stats_get(fc, &st);
    cr_assert_eq(st.retries, 1);
    cr_assert_eq(r.quota_delta, 6);
    cr_assert_eq(r.retried, 0);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), 6);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 1);
    txm_close(fc);
    fx_close(&f);
}

/* A deadlock at the retried insert (the key vanished: 1 charge, 2 its probe, 3 insert, 4 upstream
 * probe, 5 retried insert; SQLite probes account, key and upstream: 7): the whole attempt is redone
 * and its result is the second attempt's. */
Test(usage, deadlock_at_the_retried_insert)
{
    fx f;
    txm_conn *fc;
    txm_billing_usage u = {0, 0, 0, 6};
    txm_billing_usage_result r;
    fx_open(&f);
    fc = fault_open();
    del(f.c, "billing_api_keys", f.key);
    u.account_id = f.account;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    BF_OK(txm_fault_set(fc, server() ? "fault=deadlock&fault_at=5" : "fault=deadlock&fault_at=7"));
    BF_OK(txm_billing_usage_record(f.b, fc, &u, &r));
    cr_assert_eq(txm_fault_count(fc), 1);
    cr_assert_eq(r.retried, 1);
    cr_assert_eq(r.api_key_id, 0);
    cr_assert_eq(r.upstream_id, f.upstream);
    cr_assert_eq(r.quota_delta, 0);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 1);
    txm_close(fc);
    fx_close(&f);
}

/* A lost connection during the insert, inside a caller's transaction: propagated as such (never
 * mistaken for a vanished reference), the caller's transaction is lost, nothing is written. */
Test(usage, lost_connection_propagates)
{
    fx f;
    txm_conn *fc;
    txm_tx *tx = NULL;
    txm_billing_usage u = {0, 0, 0, 6};
    int rc;
    fx_open(&f);
    fc = fault_open();
    u.account_id = f.account;
    u.api_key_id = f.key;
    BF_OK(txm_begin(&tx, fc, NULL));
    BF_OK(txm_fault_set(fc, "fault=disconnect&fault_at=2"));
    rc = txm_billing_usage_record(f.b, fc, &u, NULL);
    cr_assert_eq(rc, TXM_ECONNECTION, "%s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    cr_assert_eq(txm_fault_count(fc), 1);
    txm_rollback(tx);
    txm_close(fc);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    cr_assert_eq(q(f.c, "SELECT quota_used FROM billing_api_keys WHERE id = ?", f.key), 0);
    fx_close(&f);
}

/* A failing probe (a lock timeout on the upstream probe, statement 4) ends the call with that error;
 * the charge and everything else is undone. */
Test(usage, failing_probe_undoes_everything)
{
    fx f;
    txm_conn *fc;
    txm_billing_usage u = {0, 0, 0, 6};
    int rc;
    fx_open(&f);
    fc = fault_open();
    del(f.c, "billing_api_keys", f.key);
    u.account_id = f.account;
    u.api_key_id = f.key;
    u.upstream_id = f.upstream;
    BF_OK(txm_fault_set(fc, "fault=lock_timeout&fault_at=4"));
    rc = txm_billing_usage_record(f.b, fc, &u, NULL);
    cr_assert_eq(rc, TXM_ELOCK_TIMEOUT, "%s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert_eq(txm_fault_count(fc), 1);
    cr_assert_eq(txm_depth(fc), 0);
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage", 0), 0);
    txm_close(fc);
    fx_close(&f);
}

/* A caller's REPEATABLE READ transaction whose snapshot still shows the key that another session
 * deleted since. MySQL: the charge and the FK check read the newest rows, so the key is nulled by
 * the retry as usual. PostgreSQL refuses to charge a row deleted after the snapshot
 * (TXM_ESERIALIZATION, transaction lost): the caller's retried transaction succeeds. */
Test(usage, repeatable_read_caller)
{
    fx f;
    txm_conn *o = NULL;
    txm_tx_options rr = TXM_TX_OPTIONS_INIT;
    txm_tx *tx = NULL;
    txm_billing_usage u = {0, 0, 0, 4};
    txm_billing_usage_result r;
    int64_t n = 0;
    int rc;
    fx_open(&f);
    if (!server()) {
        fx_close(&f);
        cr_skip_test("SQLite: the caller's write transaction excludes the deleting session");
    }
    BF_OK(txm_open(&o, bf_url(), NULL));
    rr.isolation = TXM_ISOLATION_REPEATABLE_READ;
    u.account_id = f.account;
    u.api_key_id = f.key;
    BF_OK(txm_begin(&tx, f.c, &rr));
    BF_OK(txm_query_i64(f.c, &n, "SELECT COUNT(*) FROM billing_api_keys", NULL, 0)); /* snapshot: 2 keys */
    cr_assert_eq(n, 2);
    del(o, "billing_api_keys", f.key);
    rc = txm_billing_usage_record(f.b, f.c, &u, &r);
    if (strcmp(bf_engine(), "mysql") == 0) {
        cr_assert_eq(rc, 0, "%s: %s", txm_err_name(rc), txm_error_last()->message);
        cr_assert_eq(r.retried, 1);
        cr_assert_eq(r.api_key_id, 0);
        cr_assert_eq(r.quota_delta, 0);
        BF_OK(txm_commit(tx));
    } else {
        cr_assert_eq(rc, TXM_ESERIALIZATION, "%s: %s", txm_err_name(rc), txm_error_last()->message);
        cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
        BF_OK(txm_rollback(tx));
        BF_OK(txm_begin(&tx, f.c, &rr)); /* what the caller's txm_retry does */
        BF_OK(txm_billing_usage_record(f.b, f.c, &u, &r));
        cr_assert_eq(r.retried, 1);
        cr_assert_eq(r.api_key_id, 0);
        BF_OK(txm_commit(tx));
    }
    cr_assert_eq(q(f.c, "SELECT COUNT(*) FROM billing_usage WHERE api_key_id IS NULL", 0), 1);
    cr_assert_eq(q(f.c, "SELECT COALESCE(SUM(quota_used), 0) FROM billing_api_keys", 0), 0);
    txm_close(o);
    fx_close(&f);
}
