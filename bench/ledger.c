/*
 * Group "ledger": a running-balance ledger under contention, txm's billing ledger against the
 * designs people write by hand (docs/bench.md, "Group ledger"). W writers (--lg-writers, default
 * 1,2,4,8,16), each on its own connection and thread, post +1 for --lg-seconds (default 1 s):
 *   case hot/wN     every writer posts to ONE account
 *   case spread/wN  writer k posts to account k (one account each)
 * Implementations (--lg-impl), all in the same txm transaction API so only the design differs:
 *   txm           txm_billing_post (out == NULL): one flight, the account row is the lock
 *   naive         read the last entry, add, insert (no lock): loses updates
 *   lock-last     the same with SELECT ... ORDER BY id DESC LIMIT 1 FOR UPDATE
 *   lock-table    SELECT COUNT(*) ... FOR UPDATE first (the original incident's "fix")
 *   update-floor  a bare autocommit UPDATE ... SET balance = balance + 1 on the account row through
 *                 the raw client library: the lock-hold floor (no entry written)
 * naive, lock-last and lock-table run inside txm_retry (default policy); txm through the billing
 * object's own retry. After every run the chain is verified: wrong running balances are entries
 * whose balance is not the previous entry's balance + amount (the lost updates), and txm's ledger
 * must also pass txm_billing_verify with one entry per committed post: the group fails otherwise.
 */
#include "bench.h"

#include <txm/billing.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LG_MAX_WRITERS 64
#define LG_PREFIX "txm_bench_lg_"
#define LG_CHAIN "txm_bench_lg_chain"

typedef enum lg_impl { I_TXM, I_NAIVE, I_LOCK_LAST, I_LOCK_TABLE, I_FLOOR, I_N } lg_impl;
static const char *const impl_names[I_N] = {"txm", "naive", "lock-last", "lock-table", "update-floor"};

/* One configuration: engine, case, writers, implementation. */
typedef struct lg_run {
    const bench_engine *e;
    lg_impl impl;
    unsigned writers;
    int spread;                      /* 1: one account per writer */
    double seconds;
    int64_t account[LG_MAX_WRITERS]; /* writer k's account */
    char last_sql[256], insert_sql[256], table_sql[256];
} lg_run;

typedef struct lg_thread {
    const lg_run *r;
    bench_engine e; /* a copy: the raw clients write server_version into it */
    unsigned k;
    pthread_barrier_t *bar;
    int ok;
    char err[512];
    uint64_t committed, failed, retries, deadlocks;
    double elapsed;
    char floor_sql[160];
} lg_thread;

typedef struct lg_result {
    double per_s;
    uint64_t committed, failed, retries, deadlocks, wrong;
    int checked; /* 1: the counters below were read back */
    int ok;      /* the implementation's own correctness check */
    char note[1024];
} lg_result;

static void lg_before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    lg_thread *t = payload;
    int code = err->code == TXM_ETX_ABORTED && err->cause ? err->cause->code : err->code;
    (void)attempt;
    t->retries++;
    if (code == TXM_EDEADLOCK)
        t->deadlocks++;
}

/* naive / lock-last / lock-table: one post of +1 to the thread's account. */
static int chain_body(txm_conn *c, void *payload)
{
    lg_thread *t = payload;
    txm_value a = txm_int(t->r->account[t->k]), p[3];
    int64_t last = 0, n;
    int rc;
    if (t->r->impl == I_LOCK_TABLE && (rc = txm_query_i64(c, &n, t->r->table_sql, NULL, 0)) != 0)
        return rc;
    if ((rc = txm_query_i64(c, &last, t->r->last_sql, &a, 1)) != 0)
        return rc;
    p[0] = a;
    p[1] = txm_int(1);
    p[2] = txm_int(last + 1);
    return txm_exec(c, t->r->insert_sql, p, 3, NULL);
}

static int fatal(int rc) { return rc == TXM_ECONNECTION || rc == TXM_EMISUSE || rc == TXM_ESYNTAX; }

/* The loop of the txm-based implementations; returns after r->seconds. */
static void txm_loop(lg_thread *t, txm_conn *c)
{
    txm_retry_policy pol = TXM_RETRY_POLICY_INIT;
    txm_billing_options bo = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b = NULL;
    double t0, now;
    char key[48];
    int rc = 0;
    if (t->r->impl == I_TXM) {
        txm_billing_retry_policy_default(&pol);
        pol.before_retry = lg_before_retry;
        pol.payload = t;
        bo.retry = &pol;
        bo.prefix = LG_PREFIX;
        if (txm_billing_new(&b, c, &bo) != 0) {
            bench_txm_err(t->err, sizeof t->err);
            pthread_barrier_wait(t->bar);
            return;
        }
    } else {
        pol.before_retry = lg_before_retry;
        pol.payload = t;
    }
    pthread_barrier_wait(t->bar);
    t0 = now = bench_now();
    while (now - t0 < t->r->seconds) {
        if (b) {
            snprintf(key, sizeof key, "w%u-%llu", t->k, (unsigned long long)(t->committed + t->failed));
            rc = txm_billing_post(b, c, t->r->account[t->k], 1, key, NULL);
        } else
            rc = txm_retry(c, &pol, chain_body, t);
        if (rc == 0)
            t->committed++;
        else {
            t->failed++;
            bench_txm_err(t->err, sizeof t->err);
            if (fatal(rc))
                break;
        }
        now = bench_now();
    }
    t->elapsed = now - t0;
    t->ok = 1;
    txm_billing_free(b);
}

static void floor_loop(lg_thread *t)
{
    const bench_raw *raw = bench_raw_for(t->e.kind);
    void *st = NULL;
    double t0, now;
    int rc = raw ? raw->open(&st, &t->e, 0, t->err, sizeof t->err) : -1;
    if (!raw)
        snprintf(t->err, sizeof t->err, "no raw client library for %s", t->e.name);
    if (rc == 0 && t->e.kind == BENCH_SQLITE)
        rc = raw->exec(st, "PRAGMA busy_timeout=5000", t->err, sizeof t->err);
    pthread_barrier_wait(t->bar);
    if (rc != 0) {
        if (st)
            raw->close(st);
        return;
    }
    t0 = now = bench_now();
    while (now - t0 < t->r->seconds) {
        if (raw->exec(st, t->floor_sql, t->err, sizeof t->err) == 0)
            t->committed++;
        else
            t->failed++;
        now = bench_now();
    }
    t->elapsed = now - t0;
    t->ok = 1;
    raw->close(st);
}

static void *lg_main(void *arg)
{
    lg_thread *t = arg;
    txm_conn *c = NULL;
    if (t->r->impl == I_FLOOR) {
        floor_loop(t);
        return NULL;
    }
    if (bench_txm_open(&c, &t->e, t->err, sizeof t->err) != 0) {
        pthread_barrier_wait(t->bar);
        return NULL;
    }
    txm_loop(t, c);
    txm_close(c);
    return NULL;
}

/* ---- setup and verification (untimed, on the engine's admin connection) ------------------- */

static int fail_txm(char *err, size_t errsz, const char *what)
{
    char buf[512];
    snprintf(err, errsz, "%s: %s", what, bench_txm_err(buf, sizeof buf));
    return -1;
}

static int exec0(txm_conn *c, const char *sql, char *err, size_t errsz)
{
    return txm_exec(c, sql, NULL, 0, NULL) ? fail_txm(err, errsz, sql) : 0;
}

static const char *chain_ddl(bench_kind k)
{
    switch (k) {
    case BENCH_PG:
        return "CREATE TABLE " LG_CHAIN " (id BIGSERIAL PRIMARY KEY, account_id BIGINT NOT NULL, "
               "amount BIGINT NOT NULL, balance BIGINT NOT NULL)";
    case BENCH_MYSQL:
        return "CREATE TABLE " LG_CHAIN " (id BIGINT AUTO_INCREMENT PRIMARY KEY, account_id BIGINT NOT NULL, "
               "amount BIGINT NOT NULL, balance BIGINT NOT NULL) ENGINE=InnoDB";
    default:
        return "CREATE TABLE " LG_CHAIN " (id INTEGER PRIMARY KEY, account_id BIGINT NOT NULL, "
               "amount BIGINT NOT NULL, balance BIGINT NOT NULL)";
    }
}

/* Fresh tables for the engine: the billing schema (prefix txm_bench_lg_) and the hand-written
 * designs' entry table. */
static int engine_setup(txm_conn *c, txm_billing *b, const bench_engine *e, char *err, size_t errsz)
{
    if (exec0(c, "DROP TABLE IF EXISTS " LG_CHAIN, err, errsz) || exec0(c, chain_ddl(e->kind), err, errsz) ||
        exec0(c, "CREATE INDEX " LG_CHAIN "_acct ON " LG_CHAIN " (account_id, id)", err, errsz))
        return -1;
    if (txm_billing_schema_drop(b, c) != 0)
        return fail_txm(err, errsz, "txm_billing_schema_drop");
    if (txm_billing_schema_create(b, c) != 0)
        return fail_txm(err, errsz, "txm_billing_schema_create");
    return 0;
}

/* Empties the tables and creates the accounts of one run (and the opening entry every account of
 * the hand-written designs needs: "the last entry" must exist, and lock-last needs a row). */
static int run_setup(txm_conn *c, txm_billing *b, lg_run *r, char *err, size_t errsz)
{
    unsigned k, naccts = r->spread ? r->writers : 1;
    if (exec0(c, "DELETE FROM " LG_CHAIN, err, errsz) || exec0(c, "DELETE FROM " LG_PREFIX "entries", err, errsz) ||
        exec0(c, "DELETE FROM " LG_PREFIX "accounts", err, errsz))
        return -1;
    if (r->e->kind == BENCH_PG &&
        exec0(c, "VACUUM " LG_CHAIN ", " LG_PREFIX "entries, " LG_PREFIX "accounts", err, errsz))
        return -1;
    for (k = 0; k < naccts; k++) {
        char name[32];
        int64_t id = 0;
        if (r->impl == I_TXM || r->impl == I_FLOOR) {
            snprintf(name, sizeof name, "lg-%u", k);
            if (txm_billing_account(b, c, name, 0, &id, NULL) != 0)
                return fail_txm(err, errsz, "txm_billing_account");
        } else {
            txm_value p;
            id = (int64_t)k + 1;
            p = txm_int(id);
            if (txm_exec(c, "INSERT INTO " LG_CHAIN " (account_id, amount, balance) VALUES (?, 0, 0)", &p, 1, NULL))
                return fail_txm(err, errsz, "seed entry");
        }
        r->account[k] = id;
    }
    for (k = naccts; k < r->writers; k++)
        r->account[k] = r->account[0];
    return 0;
}

/* Entries whose balance is not the previous entry's (0 before the first) + amount. */
static int count_wrong(txm_conn *c, const char *table, const char *order, int64_t *wrong, int64_t *entries,
                       char *err, size_t errsz)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM (SELECT balance - amount - COALESCE(LAG(balance) OVER "
             "(PARTITION BY account_id ORDER BY %s), 0) AS d FROM %s) x WHERE d <> 0",
             order, table);
    if (txm_query_i64(c, wrong, sql, NULL, 0) != 0)
        return fail_txm(err, errsz, "chain check");
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    if (txm_query_i64(c, entries, sql, NULL, 0) != 0)
        return fail_txm(err, errsz, "entry count");
    return 0;
}

static void verify(txm_conn *c, txm_billing *b, const lg_run *r, lg_result *res)
{
    int64_t wrong = 0, entries = 0, sum = 0;
    char err[512];
    if (r->impl == I_FLOOR) {
        if (txm_query_i64(c, &sum, "SELECT COALESCE(SUM(balance), 0) FROM " LG_PREFIX "accounts", NULL, 0) != 0) {
            fail_txm(res->note, sizeof res->note, "sum");
            return;
        }
        res->checked = 1;
        res->ok = sum == (int64_t)res->committed;
        if (!res->ok)
            snprintf(res->note, sizeof res->note, "balances sum to %lld, %llu updates committed", (long long)sum,
                     (unsigned long long)res->committed);
        return;
    }
    if (r->impl == I_TXM) {
        txm_billing_report rep;
        if (count_wrong(c, LG_PREFIX "entries", "seq", &wrong, &entries, err, sizeof err) != 0) {
            bench_strlcpy(res->note, err, sizeof res->note);
            return;
        }
        res->checked = 1;
        res->wrong = (uint64_t)wrong;
        if (txm_billing_verify(b, c, &rep) != 0)
            snprintf(res->note, sizeof res->note, "txm_billing_verify: %s", rep.message[0] ? rep.message : "failed");
        else if (entries != (int64_t)res->committed)
            snprintf(res->note, sizeof res->note, "%lld entries for %llu committed posts", (long long)entries,
                     (unsigned long long)res->committed);
        else if (wrong == 0)
            res->ok = 1;
        return;
    }
    if (count_wrong(c, LG_CHAIN, "id", &wrong, &entries, err, sizeof err) != 0) {
        bench_strlcpy(res->note, err, sizeof res->note);
        return;
    }
    res->checked = 1;
    res->wrong = (uint64_t)wrong;
    /* the opening entries are not posts */
    entries -= r->spread ? (int64_t)r->writers : 1;
    res->ok = entries == (int64_t)res->committed && wrong == 0;
    if (entries != (int64_t)res->committed)
        snprintf(res->note, sizeof res->note, "%lld entries for %llu committed posts", (long long)entries,
                 (unsigned long long)res->committed);
}

static void impl_sql(lg_run *r, const txm_conn *c)
{
    const char *lock = r->impl == I_LOCK_LAST ? txm_sql_row_lock(c, TXM_ROW_LOCK_UPDATE) : "";
    snprintf(r->last_sql, sizeof r->last_sql,
             "SELECT balance FROM " LG_CHAIN " WHERE account_id = ? ORDER BY id DESC LIMIT 1%s", lock);
    snprintf(r->insert_sql, sizeof r->insert_sql, "INSERT INTO " LG_CHAIN " (account_id, amount, balance) VALUES (?, ?, ?)");
    /* PostgreSQL refuses FOR UPDATE with an aggregate: the same lock (every row) in a subquery.
     * SQLite has no row locks; its write transaction (BEGIN IMMEDIATE) is the table lock already. */
    if (r->e->kind == BENCH_PG)
        snprintf(r->table_sql, sizeof r->table_sql, "SELECT COUNT(*) FROM (SELECT id FROM " LG_CHAIN " FOR UPDATE) x");
    else
        snprintf(r->table_sql, sizeof r->table_sql, "SELECT COUNT(*) FROM " LG_CHAIN "%s",
                 txm_sql_row_lock(c, TXM_ROW_LOCK_UPDATE));
}

static void run_one(txm_conn *c, txm_billing *b, lg_run *r, lg_result *res)
{
    pthread_barrier_t bar;
    pthread_t th[LG_MAX_WRITERS];
    lg_thread *t = calloc(r->writers, sizeof *t);
    unsigned k;
    double el = 0;
    char err[512];
    memset(res, 0, sizeof *res);
    if (!t) {
        snprintf(res->note, sizeof res->note, "out of memory");
        return;
    }
    if (run_setup(c, b, r, err, sizeof err) != 0) {
        snprintf(res->note, sizeof res->note, "setup: %s", err);
        free(t);
        return;
    }
    impl_sql(r, c);
    pthread_barrier_init(&bar, NULL, r->writers);
    for (k = 0; k < r->writers; k++) {
        t[k].r = r;
        t[k].e = *r->e;
        t[k].k = k;
        t[k].bar = &bar;
        /* an id read back from the database: an integer, never text from outside */
        snprintf(t[k].floor_sql, sizeof t[k].floor_sql,
                 "UPDATE " LG_PREFIX "accounts SET balance = balance + 1 WHERE id = %lld", (long long)r->account[k]);
        pthread_create(&th[k], NULL, lg_main, &t[k]);
    }
    for (k = 0; k < r->writers; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&bar);
    for (k = 0; k < r->writers; k++) {
        if (!t[k].ok) {
            snprintf(res->note, sizeof res->note, "writer %u: %s", k, t[k].err);
            free(t);
            return;
        }
        res->committed += t[k].committed;
        res->failed += t[k].failed;
        res->retries += t[k].retries;
        res->deadlocks += t[k].deadlocks;
        if (t[k].elapsed > el)
            el = t[k].elapsed;
    }
    res->per_s = el > 0 ? (double)res->committed / el : 0;
    verify(c, b, r, res);
    if (res->failed && !res->note[0])
        for (k = 0; k < r->writers; k++)
            if (t[k].failed) {
                snprintf(res->note, sizeof res->note, "%llu failed, e.g. %s", (unsigned long long)res->failed,
                         t[k].err);
                break;
            }
    free(t);
}

/* ---- the group ------------------------------------------------------------------------------ */

static int parse_writers(const char *s, unsigned *out, size_t max, size_t *n)
{
    const char *p = s;
    *n = 0;
    while (*p) {
        char *end;
        if (*n == max)
            return -1;
        long w = strtol(p, &end, 10);
        if (end == p || w < 1 || w > LG_MAX_WRITERS || (*end && *end != ','))
            return -1;
        out[(*n)++] = (unsigned)w;
        p = *end ? end + 1 : end;
    }
    return *n ? 0 : -1;
}

static void accumulate(lg_result *sum, const lg_result *one, unsigned rep)
{
    if (rep == 0) {
        sum->checked = sum->ok = 1;
        sum->note[0] = '\0';
    }
    sum->committed += one->committed;
    sum->failed += one->failed;
    sum->retries += one->retries;
    sum->deadlocks += one->deadlocks;
    sum->wrong += one->wrong;
    sum->checked = sum->checked && one->checked;
    sum->ok = sum->ok && one->ok;
    if (!sum->note[0] && one->note[0])
        bench_strlcpy(sum->note, one->note, sizeof sum->note);
}

static void print_row(const char *cas, int i, lg_result *res, const double *rate, unsigned reps)
{
    double sorted[BENCH_MAX_REPS];
    char wrong[24], range[40];
    memcpy(sorted, rate, reps * sizeof *sorted);
    res->per_s = bench_median(sorted, reps);
    snprintf(range, sizeof range, "[%.0f-%.0f]", sorted[0], sorted[reps - 1]);
    if (res->checked && i != I_FLOOR)
        snprintf(wrong, sizeof wrong, "%llu", (unsigned long long)res->wrong);
    else
        snprintf(wrong, sizeof wrong, "-");
    printf("   %-11s %-12s %10.0f %-15s %9llu %8llu %9llu %7s %7llu  %s%s%s\n", cas, impl_names[i], res->per_s, range,
           (unsigned long long)res->committed, (unsigned long long)res->retries, (unsigned long long)res->deadlocks,
           wrong, (unsigned long long)res->failed,
           res->ok ? "ok" : i == I_TXM ? "TXM LEDGER WRONG" : res->checked ? "WRONG" : "FAILED",
           res->note[0] ? ": " : "", res->note);
}

static void print_ratios(const char *cas, const lg_result *res)
{
    if (res[I_TXM].per_s <= 0 || (res[I_FLOOR].per_s <= 0 && res[I_LOCK_TABLE].per_s <= 0))
        return;
    printf("   %-11s %-12s", cas, "ratios");
    if (res[I_FLOOR].per_s > 0)
        printf(" txm/update-floor %.2f", res[I_TXM].per_s / res[I_FLOOR].per_s);
    if (res[I_LOCK_TABLE].per_s > 0)
        printf(" txm/lock-table %.2f", res[I_TXM].per_s / res[I_LOCK_TABLE].per_s);
    printf("\n");
}

static void record(const char *engine, const char *cas, const char *impl, const lg_result *res)
{
    bench_record("ledger", engine, cas, impl, "commits_per_s", res->per_s);
    bench_record("ledger", engine, cas, impl, "committed", (double)res->committed);
    bench_record("ledger", engine, cas, impl, "retries", (double)res->retries);
    bench_record("ledger", engine, cas, impl, "deadlocks", (double)res->deadlocks);
    bench_record("ledger", engine, cas, impl, "wrong_balances", (double)res->wrong);
}

/* Runs every case of one engine; returns -1 if txm's ledger was ever wrong (or failed to run). */
static int run_engine(const bench_opts *o, const bench_engine *e, const unsigned *wv, size_t nw)
{
    txm_conn *c = NULL;
    txm_billing *b = NULL;
    txm_billing_options bo = TXM_BILLING_OPTIONS_INIT;
    char err[512];
    int bad = 0, mode;
    size_t j;
    double seconds = o->lg_seconds > 0 ? o->lg_seconds : o->quick ? 0.1 : 0.5;
    unsigned reps = o->quick ? 1 : o->reps < 1 ? 1 : o->reps > BENCH_MAX_REPS ? BENCH_MAX_REPS : o->reps;

    bo.prefix = LG_PREFIX;
    if (bench_txm_open(&c, e, err, sizeof err) != 0) {
        printf("   %-11s skipped: %s\n", e->name, err);
        return -1;
    }
    if (txm_billing_new(&b, c, &bo) != 0 || engine_setup(c, b, e, err, sizeof err) != 0) {
        if (!b)
            fail_txm(err, sizeof err, "txm_billing_new");
        printf("   %-11s skipped: %s\n", e->name, err);
        txm_billing_free(b);
        txm_close(c);
        return -1;
    }
    printf("\n# ledger on %s: %u interleaved repetitions of %.2f s per configuration; commits/s of all writers\n"
           "#   (median, [min-max]); committed, retries, deadlocks, wrong and failed are sums over the repetitions;\n"
           "#   ratios: of the medians in the same case\n", e->name, reps, seconds);
    printf("   %-11s %-12s %10s %-15s %9s %8s %9s %7s %7s  %s\n", "case", "impl", "commits/s", " [min-max]",
           "committed", "retries", "deadlocks", "wrong", "failed", "check");
    for (mode = 0; mode < 2; mode++)
        for (j = 0; j < nw; j++) {
            lg_result res[I_N];
            double rate[I_N][BENCH_MAX_REPS];
            char cas[32];
            unsigned rep;
            int i;
            snprintf(cas, sizeof cas, "%s/w%u", mode ? "spread" : "hot", wv[j]);
            memset(res, 0, sizeof res);
            /* interleaved: repetition 1 of every implementation, then repetition 2, ... */
            for (rep = 0; rep < reps; rep++)
                for (i = 0; i < I_N; i++) {
                    lg_run r;
                    lg_result one;
                    if (!bench_selected(o->lg_impls, impl_names[i]))
                        continue;
                    memset(&r, 0, sizeof r);
                    r.e = e;
                    r.impl = (lg_impl)i;
                    r.writers = wv[j];
                    r.seconds = seconds;
                    r.spread = mode;
                    bench_progress("ledger", "%s %s %s rep %u/%u", e->name, cas, impl_names[i], rep + 1, reps);
                    run_one(c, b, &r, &one);
                    accumulate(&res[i], &one, rep);
                    rate[i][rep] = one.per_s;
                }
            bench_progress_clear();
            for (i = 0; i < I_N; i++) {
                if (!bench_selected(o->lg_impls, impl_names[i]))
                    continue;
                print_row(cas, i, &res[i], rate[i], reps);
                /* txm's chain verified and one entry per committed post: a counter, never a time */
                if (i == I_TXM && bench_check("ledger", e->name, cas, impl_names[i], "chain verified", res[i].ok, 1) != 0)
                    bad = 1;
                record(e->name, cas, impl_names[i], &res[i]);
            }
            print_ratios(cas, res);
        }
    txm_billing_free(b);
    txm_close(c);
    return bad ? -1 : 0;
}

/* Unknown names in --lg-impl are refused rather than silently measuring nothing. */
static int check_impls(const char *list)
{
    const char *p = list;
    while (p && *p) {
        size_t len = strcspn(p, ","), i, found = 0;
        for (i = 0; i < I_N; i++)
            if (strlen(impl_names[i]) == len && strncmp(impl_names[i], p, len) == 0)
                found = 1;
        if (!found) {
            printf("# ledger: unknown implementation '%.*s' in --lg-impl (txm, naive, lock-last, lock-table, "
                   "update-floor)\n", (int)len, p);
            return -1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

int bench_group_ledger(const bench_opts *o, bench_engine *engines, size_t n)
{
    unsigned wv[16];
    size_t nw, i;
    int rc = 0;
    if (parse_writers(o->lg_writers ? o->lg_writers : o->quick ? "1,4" : "1,2,4,8,16", wv, 16, &nw) != 0) {
        printf("# ledger: --lg-writers wants a comma-separated list of 1..%d (at most 16 entries)\n", LG_MAX_WRITERS);
        return 1;
    }
    if (check_impls(o->lg_impls) != 0)
        return 1;
    printf("\n# ledger: W writers x own connection post +1 to ONE account (hot/wW) or one account each\n"
           "#   (spread/wW): txm_billing_post vs hand-written designs (naive, lock-last, lock-table) vs a bare\n"
           "#   autocommit UPDATE balance = balance + 1 loop (update-floor, raw client). wrong = entries whose\n"
           "#   balance is not the previous one's + amount (lost updates), checked after every run.\n");
    for (i = 0; i < n; i++) {
        bench_engine *e = &engines[i];
        if (bench_skip_shared(e))
            continue;
        if (run_engine(o, e, wv, nw) != 0)
            rc = 1;
    }
    return rc;
}
