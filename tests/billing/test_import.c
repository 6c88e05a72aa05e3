/* Cancelable imports (docs/billing.md, "Imports"): the incident was a cancel that returned while
 * workers were still running, after which rows kept appearing. Workers here are real threads with
 * their own connections; their callback writes an output row in the task's transaction and stays
 * "running" for a while, and cancel comes from another thread. */
#include "billing_fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <txm/fault.h>

TestSuite(import, .fini = bf_cleanup);

/* ---- fixture --------------------------------------------------------------------------------- */

typedef struct shared {
    const char *url;
    txm_billing *b;
    int64_t import_id;
    atomic_int in_fn;    /* callbacks running now */
    atomic_int calls;    /* callbacks started */
    atomic_int max_in_fn;
    int sleep_ms;        /* how long a callback stays running */
    int fail_rc;         /* non-zero: the callback writes its row, then returns this */
    /* hold: the first callback records its session and blocks until released */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hold, holding;
    int64_t session;
    /* hostile payloads: the callback checks what it got against this list */
    const char *const *expect;
    const int64_t *expect_ids;
    size_t nexpect;
    atomic_int mismatches;
} shared;

typedef struct worker {
    shared *s;
    pthread_t th;
    int rc;
    size_t done;
    char err[300];
} worker;

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void shared_init(shared *s, const char *url, txm_billing *b, int64_t import_id)
{
    memset(s, 0, sizeof *s);
    s->url = url;
    s->b = b;
    s->import_id = import_id;
    atomic_init(&s->in_fn, 0);
    atomic_init(&s->calls, 0);
    atomic_init(&s->max_in_fn, 0);
    atomic_init(&s->mismatches, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
}

static void shared_release(shared *s)
{
    pthread_mutex_lock(&s->mu);
    s->hold = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int is_engine(const char *e) { return strcmp(bf_engine(), e) == 0; }

static int64_t session_id(txm_conn *c)
{
    int64_t id = 0;
    if (is_engine("postgresql"))
        txm_query_i64(c, &id, "SELECT pg_backend_pid()", NULL, 0);
    else if (is_engine("mysql"))
        txm_query_i64(c, &id, "SELECT CONNECTION_ID()", NULL, 0);
    return id;
}

static int task_fn(txm_conn *c, int64_t import_id, int64_t task_id, const char *payload, void *arg)
{
    shared *s = arg;
    txm_value p[3] = {txm_int(import_id), txm_int(task_id), txm_text(payload)};
    int rc, now;
    atomic_fetch_add(&s->calls, 1);
    now = atomic_fetch_add(&s->in_fn, 1) + 1;
    if (now > atomic_load(&s->max_in_fn))
        atomic_store(&s->max_in_fn, now);
    for (size_t i = 0; i < s->nexpect; i++)
        if (s->expect_ids[i] == task_id && strcmp(s->expect[i], payload) != 0)
            atomic_fetch_add(&s->mismatches, 1);
    rc = txm_exec(c, "INSERT INTO imp_out (import_id, task_id, payload) VALUES (?, ?, ?)", p, 3, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->hold && !s->holding) {
        s->session = session_id(c);
        s->holding = 1;
        pthread_cond_broadcast(&s->cv);
        while (s->hold)
            pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    if (s->sleep_ms)
        msleep(s->sleep_ms);
    atomic_fetch_sub(&s->in_fn, 1);
    if (!rc && s->fail_rc)
        rc = txm_error_set(s->fail_rc, "task_fn: told to fail task %lld", (long long)task_id);
    return rc;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    txm_conn *c = NULL;
    w->rc = txm_open(&c, w->s->url, NULL);
    if (!w->rc)
        w->rc = txm_billing_import_run(w->s->b, c, w->s->import_id, task_fn, w->s, &w->done);
    if (w->rc)
        snprintf(w->err, sizeof w->err, "%s", txm_error_last()->message);
    txm_close(c);
    return NULL;
}

static void start_workers(worker *w, size_t n, shared *s)
{
    for (size_t i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = s;
        cr_assert_eq(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    }
}

static size_t join_workers(worker *w, size_t n)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        pthread_join(w[i].th, NULL);
        done += w[i].done;
    }
    return done;
}

/* Waits (bounded) until `calls` callbacks started; fails the test if they never do. */
static void wait_calls(shared *s, int calls)
{
    for (int i = 0; i < 30000 && atomic_load(&s->calls) < calls; i++)
        msleep(1);
    cr_assert_geq(atomic_load(&s->calls), calls, "workers never started %d callbacks", calls);
}

/* Waits (bounded) until the first callback is holding; fails with the worker's error if the
 * worker ended without getting there. */
static void wait_holding(shared *s, worker *w)
{
    int holding = 0;
    for (int i = 0; i < 30000 && !holding; i++) {
        pthread_mutex_lock(&s->mu);
        holding = s->holding;
        pthread_mutex_unlock(&s->mu);
        if (!holding)
            msleep(1);
    }
    if (!holding) {
        shared_release(s);
        pthread_join(w->th, NULL);
        cr_assert_fail("the worker never reached its callback: %s -> %s", txm_err_name(w->rc), w->err);
    }
}

static txm_billing *setup(txm_conn *c)
{
    txm_billing *b = bf_billing(c, NULL);
    BF_OK(txm_exec(c, "DROP TABLE IF EXISTS imp_out", NULL, 0, NULL));
    BF_OK(txm_exec(c, "CREATE TABLE imp_out (import_id BIGINT NOT NULL, task_id BIGINT NOT NULL, "
                    "payload TEXT NOT NULL, PRIMARY KEY (import_id, task_id))", NULL, 0, NULL));
    return b;
}

static int64_t count(txm_conn *c, const char *sql, int64_t import_id)
{
    int64_t n = -1;
    txm_value p = txm_int(import_id);
    BF_OK(txm_query_i64(c, &n, sql, strchr(sql, '?') ? &p : NULL, strchr(sql, '?') ? 1 : 0));
    return n;
}
#define OUT_ROWS(c) count((c), "SELECT COUNT(*) FROM imp_out", 0)
#define PENDING(c, id) count((c), "SELECT COUNT(*) FROM billing_import_tasks WHERE import_id = ?", (id))

static int64_t new_import(txm_billing *b, txm_conn *c, const char *name, int tasks)
{
    int64_t id = 0;
    BF_OK(txm_billing_import_create(b, c, name, &id));
    cr_assert_gt(id, 0);
    for (int i = 0; i < tasks; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "row-%d", i);
        BF_OK(txm_billing_import_add_task(b, c, id, payload, NULL));
    }
    return id;
}

static const char *status_of(txm_conn *c, int64_t import_id)
{
    static char buf[32];
    txm_rows *r = NULL;
    txm_value p = txm_int(import_id);
    BF_OK(txm_query(&r, c, "SELECT status FROM billing_imports WHERE id = ?", &p, 1));
    cr_assert(txm_rows_next(r));
    snprintf(buf, sizeof buf, "%s", txm_rows_get_text(r, 0, NULL));
    txm_rows_free(r);
    return buf;
}

/* ---- tests ----------------------------------------------------------------------------------- */

Test(import, workers_process_every_task_exactly_once)
{
    enum { TASKS = 60, WORKERS = 3 };
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    shared s;
    worker w[WORKERS];
    int64_t id = new_import(b, c, "all tasks", TASKS);
    double t0;
    size_t done;
    shared_init(&s, bf_url(), b, id);
    s.sleep_ms = 2;
    t0 = now_s();
    start_workers(w, WORKERS, &s);
    done = join_workers(w, WORKERS);
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(w[i].rc, 0, "worker %d: %s", i, w[i].err);
    /* imp_out's primary key would have failed a worker that ran a task twice */
    cr_assert_eq(done, TASKS);
    cr_assert_eq(OUT_ROWS(c), TASKS);
    cr_assert_eq(PENDING(c, id), 0);
    cr_assert_str_eq(status_of(c, id), "running");
    cr_assert_eq(count(c, "SELECT COUNT(*) FROM billing_import_workers", 0), 0, "a finished worker stayed registered");
    fprintf(stderr, "import[%s]: %d tasks by %d workers in %.3f s, at most %d callbacks at once\n", bf_engine(),
            TASKS, WORKERS, now_s() - t0, atomic_load(&s.max_in_fn));
    /* Throughput with an instant callback (a figure for the docs; asserted only for correctness). */
    for (int nw = 1; nw <= WORKERS; nw += WORKERS - 1) {
        int64_t before = OUT_ROWS(c);
        id = new_import(b, c, "throughput", 300);
        shared_init(&s, bf_url(), b, id);
        t0 = now_s();
        start_workers(w, (size_t)nw, &s);
        done = join_workers(w, (size_t)nw);
        for (int i = 0; i < nw; i++)
            cr_assert_eq(w[i].rc, 0, "worker %d: %s", i, w[i].err);
        cr_assert_eq(done, 300);
        cr_assert_eq(OUT_ROWS(c) - before, 300);
        fprintf(stderr, "import[%s]: 300 instant tasks, %d worker(s): %.0f tasks/s\n", bf_engine(), nw,
                300 / (now_s() - t0));
    }
    {
        txm_stats st;
        id = new_import(b, c, "round trips", 20);
        shared_init(&s, bf_url(), b, id);
        txm_stats_reset(c);
        BF_OK(txm_billing_import_run(b, c, id, task_fn, &s, &done));
        txm_stats_get(c, &st);
        cr_assert_eq(done, 20);
        fprintf(stderr, "import[%s]: a worker of 20 tasks: %llu round trips (%.1f per task, its callback's one included)\n",
                bf_engine(), (unsigned long long)st.round_trips, (double)st.round_trips / 20);
    }
    txm_billing_free(b);
    txm_close(c);
}

Test(import, cancel_returns_only_after_running_workers_finished)
{
    enum { TASKS = 150, WORKERS = 3 };
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    shared s;
    worker w[WORKERS];
    int64_t id = new_import(b, c, "to cancel", TASKS), deleted = -1, rows_at_cancel, rows_later;
    int running_at_return;
    double t0, took;
    size_t done;
    shared_init(&s, bf_url(), b, id);
    s.sleep_ms = 30;
    start_workers(w, WORKERS, &s);
    wait_calls(&s, 4);
    t0 = now_s();
    BF_OK(txm_billing_import_cancel(b, c, id, 30000, &deleted));
    running_at_return = atomic_load(&s.in_fn);
    took = now_s() - t0;
    rows_at_cancel = OUT_ROWS(c);
    msleep(300);
    rows_later = OUT_ROWS(c);
    cr_assert_eq(running_at_return, 0, "%d callbacks were still running when cancel returned", running_at_return);
    cr_assert_eq(rows_later, rows_at_cancel, "rows appeared after cancel returned: %lld -> %lld",
                 (long long)rows_at_cancel, (long long)rows_later);
    done = join_workers(w, WORKERS);
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(w[i].rc, 0, "worker %d: %s", i, w[i].err);
    cr_assert_eq(OUT_ROWS(c), rows_at_cancel, "rows appeared after cancel returned, before the workers ended");
    cr_assert_eq((int64_t)done, rows_at_cancel);
    cr_assert_gt(deleted, 0, "cancel deleted no pending task (the workers finished them all first)");
    cr_assert_eq((int64_t)done + deleted, TASKS, "done %zu + deleted %lld != %d", done, (long long)deleted, TASKS);
    cr_assert_eq(PENDING(c, id), 0);
    cr_assert_str_eq(status_of(c, id), "canceled");
    fprintf(stderr, "import[%s]: cancel waited %.3f s for %d workers (30 ms callbacks); %zu done, %lld deleted\n",
            bf_engine(), took, WORKERS, done, (long long)deleted);
    txm_billing_free(b);
    txm_close(c);
}

/* Many short rounds of workers starting while cancel runs: whenever cancel returned 0, no callback
 * was running, and nothing was committed by the workers afterwards (they are joined, then counted). */
Test(import, cancel_racing_starting_workers)
{
    enum { ROUNDS = 15, TASKS = 12, WORKERS = 2 };
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    int64_t total_done = 0, total_deleted = 0;
    for (int round = 0; round < ROUNDS; round++) {
        shared s;
        worker w[WORKERS];
        int64_t id, deleted = -1, before, rows_at_cancel;
        int running;
        size_t done;
        before = OUT_ROWS(c);
        id = new_import(b, c, "race", TASKS);
        shared_init(&s, bf_url(), b, id);
        s.sleep_ms = 5;
        start_workers(w, WORKERS, &s);
        msleep(round % 4 * 7);
        BF_OK(txm_billing_import_cancel(b, c, id, -1, &deleted));
        running = atomic_load(&s.in_fn);
        rows_at_cancel = OUT_ROWS(c);
        done = join_workers(w, WORKERS);
        for (int i = 0; i < WORKERS; i++)
            cr_assert_eq(w[i].rc, 0, "round %d worker %d: %s", round, i, w[i].err);
        cr_assert_eq(running, 0, "round %d: a callback was running when cancel returned", round);
        cr_assert_eq(OUT_ROWS(c), rows_at_cancel, "round %d: rows appeared after cancel returned", round);
        cr_assert_eq((int64_t)done, rows_at_cancel - before);
        cr_assert_eq((int64_t)done + deleted, TASKS, "round %d: done %zu + deleted %lld", round, done,
                     (long long)deleted);
        total_done += (int64_t)done;
        total_deleted += deleted;
    }
    fprintf(stderr, "import[%s]: %d racing rounds: %lld tasks done before cancel, %lld deleted by it\n", bf_engine(),
            ROUNDS, (long long)total_done, (long long)total_deleted);
    txm_billing_free(b);
    txm_close(c);
}

/* The SQLite connection of the canceller waits only its busy_timeout for the write lock. */
static txm_conn *open_short_wait(void)
{
    txm_conn *c = NULL;
    char url[512];
    const char *u = bf_url();
    if (is_engine("sqlite")) {
        snprintf(url, sizeof url, "sqlite:%s/billing.db?busy_timeout=200&journal=wal", bf_dir);
        u = url;
    }
    BF_OK(txm_open(&c, u, NULL));
    return c;
}

Test(import, cancel_times_out_while_a_callback_blocks)
{
    enum { TASKS = 5 };
    txm_conn *c = bf_open(), *cc = open_short_wait();
    txm_billing *b = setup(c);
    shared s;
    worker w[1];
    int64_t id = new_import(b, c, "blocked", TASKS), deleted = -1, deleted2 = -1;
    double t0, took;
    int rc;
    shared_init(&s, bf_url(), b, id);
    s.hold = 1;
    start_workers(w, 1, &s);
    wait_holding(&s, &w[0]);
    t0 = now_s();
    rc = txm_billing_import_cancel(b, cc, id, 200, &deleted);
    took = now_s() - t0;
    cr_assert_eq(rc, TXM_ELOCK_TIMEOUT, "cancel -> %s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_import_cancel") != NULL, "%s",
              txm_error_last()->message);
    cr_assert_eq(atomic_load(&s.in_fn), 1);
    fprintf(stderr, "import[%s]: cancel(200 ms) gave up after %.3f s: %s\n", bf_engine(), took,
            txm_error_last()->message);
    if (is_engine("sqlite")) {
        /* Its transaction never began: nothing changed; the running task holds the write lock. */
        cr_assert_eq(deleted, 0);
        shared_release(&s);
        BF_OK(txm_billing_import_cancel(b, c, id, -1, &deleted2));
        join_workers(w, 1);
        cr_assert_eq(w[0].rc, 0, "%s", w[0].err);
        cr_assert_eq((int64_t)w[0].done + deleted2, TASKS);
    } else {
        /* Marked canceled and the 4 pending tasks deleted; the running one is its worker's. */
        cr_assert_eq(deleted, TASKS - 1);
        cr_assert_str_eq(status_of(c, id), "canceled");
        cr_assert_eq(PENDING(c, id), 1);
        shared_release(&s);
        join_workers(w, 1);
        cr_assert_eq(w[0].rc, 0, "%s", w[0].err);
        cr_assert_eq(w[0].done, 1, "the worker went on after finishing its task (done %zu)", w[0].done);
        BF_OK(txm_billing_import_cancel(b, c, id, 0, &deleted2));
        cr_assert_eq(deleted2, 0);
    }
    cr_assert_eq(PENDING(c, id), 0);
    cr_assert_eq(OUT_ROWS(c), (int64_t)w[0].done);
    cr_assert_str_eq(status_of(c, id), "canceled");
    txm_billing_free(b);
    txm_close(cc);
    txm_close(c);
}

Test(import, a_worker_started_after_cancel_does_nothing)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    shared s;
    int64_t id = new_import(b, c, "late", 3), deleted = -1;
    size_t done = 99;
    int rc;
    BF_OK(txm_billing_import_cancel(b, c, id, 1000, &deleted));
    cr_assert_eq(deleted, 3);
    shared_init(&s, bf_url(), b, id);
    BF_OK(txm_billing_import_run(b, c, id, task_fn, &s, &done));
    cr_assert_eq(done, 0);
    cr_assert_eq(atomic_load(&s.calls), 0);
    rc = txm_billing_import_add_task(b, c, id, "too late", NULL);
    cr_assert_eq(rc, TXM_EINVALID, "add_task to a canceled import -> %s", txm_err_name(rc));
    cr_assert(strstr(txm_error_last()->message, "canceled") != NULL, "%s", txm_error_last()->message);
    BF_OK(txm_billing_import_cancel(b, c, id, 0, &deleted)); /* again: nothing left, no error */
    cr_assert_eq(deleted, 0);
    cr_assert_eq(OUT_ROWS(c), 0);
    txm_billing_free(b);
    txm_close(c);
}

static int cancel_from_fn(txm_conn *c, int64_t import_id, int64_t task_id, const char *payload, void *arg)
{
    txm_billing *b = arg;
    size_t done = 0;
    int rc;
    (void)task_id;
    (void)payload;
    rc = txm_billing_import_cancel(b, c, import_id, 0, NULL);
    if (rc != TXM_EMISUSE)
        return txm_error_set(TXM_ERROR, "cancel inside a task returned %s", txm_err_name(rc));
    rc = txm_billing_import_run(b, c, import_id, cancel_from_fn, b, &done);
    if (rc != TXM_EMISUSE)
        return txm_error_set(TXM_ERROR, "a nested worker returned %s", txm_err_name(rc));
    return 0;
}

Test(import, workers_and_cancel_refuse_a_callers_transaction)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    shared s;
    txm_tx *tx = NULL;
    int64_t id = new_import(b, c, "in tx", 2);
    size_t done = 99;
    int rc;
    shared_init(&s, bf_url(), b, id);
    BF_OK(txm_begin(&tx, c, NULL));
    rc = txm_billing_import_run(b, c, id, task_fn, &s, &done);
    cr_assert_eq(rc, TXM_EMISUSE, "run in a transaction -> %s", txm_err_name(rc));
    cr_assert(strstr(txm_error_last()->message, "txm_billing_import_run") != NULL, "%s", txm_error_last()->message);
    cr_assert_eq(done, 0);
    rc = txm_billing_import_cancel(b, c, id, 0, NULL);
    cr_assert_eq(rc, TXM_EMISUSE, "cancel in a transaction -> %s", txm_err_name(rc));
    /* add_task joins the caller's transaction (a nested level) and goes with its rollback */
    BF_OK(txm_billing_import_add_task(b, c, id, "rolled back", NULL));
    BF_OK(txm_rollback(tx));
    cr_assert_eq(PENDING(c, id), 2);
    cr_assert_eq(atomic_load(&s.calls), 0);
    /* inside a task (the task's transaction is open), cancel and a nested worker refuse too */
    BF_OK(txm_billing_import_run(b, c, id, cancel_from_fn, b, &done));
    cr_assert_eq(done, 2);
    txm_billing_free(b);
    txm_close(c);
}

Test(import, a_failing_callback_leaves_its_task_pending)
{
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    shared s;
    int64_t id = new_import(b, c, "failing", 3);
    size_t done = 99;
    int rc;
    shared_init(&s, bf_url(), b, id);
    s.fail_rc = TXM_ECHECK;
    rc = txm_billing_import_run(b, c, id, task_fn, &s, &done);
    cr_assert_eq(rc, TXM_ECHECK, "run -> %s", txm_err_name(rc));
    cr_assert(strstr(txm_error_last()->message, "told to fail") != NULL, "the callback's error was replaced: %s",
              txm_error_last()->message);
    cr_assert_eq(done, 0);
    cr_assert_eq(atomic_load(&s.calls), 1, "the worker went on after a failing callback");
    cr_assert_eq(PENDING(c, id), 3);
    cr_assert_eq(OUT_ROWS(c), 0, "the failing callback's write was committed");
    s.fail_rc = 0;
    BF_OK(txm_billing_import_run(b, c, id, task_fn, &s, &done));
    cr_assert_eq(done, 3);
    cr_assert_eq(OUT_ROWS(c), 3);
    cr_assert_eq(PENDING(c, id), 0);
    txm_billing_free(b);
    txm_close(c);
}

/* A worker whose session dies (killed by the server, or its client gone) must not make cancel wait:
 * the server frees its locks; its work can never commit. */
Test(import, a_killed_worker_session_does_not_block_cancel)
{
    txm_conn *c, *killer;
    txm_billing *b;
    shared s;
    worker w[1];
    int64_t id, deleted = -1;
    double t0, took;
    if (is_engine("sqlite"))
        cr_skip_test("SQLite has no sessions to kill: a dead process's write lock is released by the OS");
    c = bf_open();
    killer = bf_open();
    b = setup(c);
    id = new_import(b, c, "killed", 4);
    shared_init(&s, bf_url(), b, id);
    s.hold = 1;
    start_workers(w, 1, &s);
    wait_holding(&s, &w[0]);
    cr_assert_gt(s.session, 0);
    if (is_engine("mysql")) {
        char sql[64];
        snprintf(sql, sizeof sql, "KILL CONNECTION %lld", (long long)s.session);
        BF_OK(txm_exec(killer, sql, NULL, 0, NULL));
        /* and a registry row of a worker that vanished long ago: a key nobody holds */
        BF_OK(txm_exec(c, "INSERT INTO billing_import_workers (import_id, lock_key) VALUES (?, 'billing_import:gone')",
                       (txm_value[]){txm_int(id)}, 1, NULL));
    } else {
        txm_value p = txm_int(s.session);
        int64_t ok = 0;
        BF_OK(txm_query_i64(killer, &ok, "SELECT CASE WHEN pg_terminate_backend(CAST(? AS INTEGER)) THEN 1 ELSE 0 END", &p, 1));
        cr_assert_eq(ok, 1);
    }
    t0 = now_s();
    BF_OK(txm_billing_import_cancel(b, c, id, 10000, &deleted));
    took = now_s() - t0;
    cr_assert_eq(deleted, 4, "deleted %lld (the dead worker's task rolled back: pending again)", (long long)deleted);
    cr_assert_eq(count(c, "SELECT COUNT(*) FROM billing_import_workers WHERE import_id = ?", id), 0,
                 "stale registry rows survived cancel");
    shared_release(&s);
    join_workers(w, 1);
    cr_assert_neq(w[0].rc, 0, "the killed worker reported success");
    cr_assert_eq(OUT_ROWS(c), 0, "the killed worker's row was committed");
    cr_assert_eq(PENDING(c, id), 0);
    fprintf(stderr, "import[%s]: cancel with a killed worker took %.3f s; the worker returned %s: %s\n", bf_engine(),
            took, txm_err_name(w[0].rc), w[0].err);
    txm_billing_free(b);
    txm_close(killer);
    txm_close(c);
}

Test(import, hostile_payloads_round_trip_and_bad_input_is_refused)
{
    static const char *const good[] = {
        "'; DROP TABLE billing_imports; --", "`billing_import_tasks`", "\"quoted\"", "a ? b ? c", "%s%n%x",
        "back\\slash\\", "", "日本語 ✓ 🎉", "line\nbreak\ttab\r", "$1 $$ $tag$ x $tag$",
    };
    enum { NGOOD = sizeof good / sizeof good[0] };
    static const char *const bad_utf8[] = {"\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "abc\xe2\x82", "\xf4\x90\x80\x80"};
    txm_conn *c = bf_open();
    txm_billing *b = setup(c);
    shared s;
    int64_t ids[NGOOD + 1], id = 0, tid = 0;
    char *big = malloc(65537);
    size_t done = 0;
    int rc;
    cr_assert_not_null(big);
    BF_OK(txm_billing_import_create(b, c, "'; DROP TABLE billing_imports; -- ✓", &id));
    for (size_t i = 0; i < NGOOD; i++)
        BF_OK(txm_billing_import_add_task(b, c, id, good[i], &ids[i]));
    memset(big, 'x', 65535);
    big[65535] = '\0';
    BF_OK(txm_billing_import_add_task(b, c, id, big, &tid)); /* the largest payload */
    big[65535] = 'y';
    big[65536] = '\0';
    rc = txm_billing_import_add_task(b, c, id, big, NULL);
    cr_assert_eq(rc, TXM_EINVALID, "a 65,536-byte payload -> %s", txm_err_name(rc));
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        rc = txm_billing_import_add_task(b, c, id, bad_utf8[i], NULL);
        cr_assert_eq(rc, TXM_EINVALID, "bad UTF-8 #%zu -> %s", i, txm_err_name(rc));
        cr_assert(strstr(txm_error_last()->message, "txm_billing_import_add_task") != NULL);
        rc = txm_billing_import_create(b, c, bad_utf8[i], &tid);
        cr_assert_eq(rc, TXM_EINVALID, "bad UTF-8 name #%zu -> %s", i, txm_err_name(rc));
    }
    cr_assert_eq(txm_billing_import_add_task(b, c, id, NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_add_task(b, c, 0, "x", NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_add_task(b, c, id + 1000, "x", NULL), TXM_ENOTFOUND);
    cr_assert_eq(txm_billing_import_create(b, c, "", &tid), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_create(b, c, NULL, &tid), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_create(b, c, "x", NULL), TXM_EINVALID);
    big[201] = '\0';
    cr_assert_eq(txm_billing_import_create(b, c, big, &tid), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_run(b, c, id, NULL, NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_run(b, c, -1, task_fn, &s, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_run(b, c, id + 1000, task_fn, &s, NULL), TXM_ENOTFOUND);
    cr_assert_eq(txm_billing_import_cancel(b, c, id + 1000, 0, NULL), TXM_ENOTFOUND);
    cr_assert_eq(txm_billing_import_cancel(NULL, c, id, 0, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_import_run(b, NULL, id, task_fn, &s, NULL), TXM_EINVALID);
    shared_init(&s, bf_url(), b, id);
    s.expect = good;
    s.expect_ids = ids;
    s.nexpect = NGOOD;
    BF_OK(txm_billing_import_run(b, c, id, task_fn, &s, &done));
    cr_assert_eq(done, NGOOD + 1);
    cr_assert_eq(atomic_load(&s.mismatches), 0, "a payload came back changed");
    for (size_t i = 0; i < NGOOD; i++) {
        txm_value p = txm_int(ids[i]);
        txm_rows *r = NULL;
        BF_OK(txm_query(&r, c, "SELECT payload FROM imp_out WHERE task_id = ?", &p, 1));
        cr_assert(txm_rows_next(r));
        cr_assert_str_eq(txm_rows_get_text(r, 0, NULL), good[i]);
        txm_rows_free(r);
    }
    cr_assert_eq(count(c, "SELECT COUNT(*) FROM billing_imports", 0), 1, "an import row appeared or vanished");
    free(big);
    txm_billing_free(b);
    txm_close(c);
}

/* The fault driver (docs/fault-driver.md) around the test engine: a task's transaction is atomic
 * whatever happens at its COMMIT. A deadlock there is retried (the callback runs again, its first
 * write rolled back); an unknown outcome stops the worker, and the task is done exactly when its
 * row exists: a later worker runs precisely the tasks that are still pending. */
static txm_conn *open_fault(const char *spec)
{
    char url[700];
    const char *u = bf_url();
    txm_conn *f = NULL;
    snprintf(url, sizeof url, "fault+%s%c%s", u, strchr(u, '?') ? '&' : '?', spec);
    BF_OK(txm_open(&f, url, NULL));
    return f;
}

Test(import, a_lost_or_unknown_commit_keeps_each_task_whole)
{
    static const char *const unknown[] = {"fault=commit_unknown&fault_skip=2", "fault=commit_unknown_aborted&fault_skip=2"};
    txm_conn *c = bf_open(), *f;
    txm_billing *b = setup(c);
    shared s;
    int64_t id, before, deleted = -1;
    size_t done = 0;
    int rc;
    id = new_import(b, c, "deadlocks", 6);
    f = open_fault("fault=deadlock&fault_at=commit&fault_times=2");
    shared_init(&s, bf_url(), b, id);
    BF_OK(txm_billing_import_run(b, f, id, task_fn, &s, &done));
    cr_assert_eq(txm_fault_count(f), 2);
    cr_assert_eq(done, 6);
    cr_assert_eq(atomic_load(&s.calls), 8, "calls %d: two attempts rolled back at COMMIT must run again",
                 atomic_load(&s.calls));
    cr_assert_eq(OUT_ROWS(c), 6);
    txm_close(f);
    for (int v = 0; v < 2; v++) {
        int64_t rows, pending;
        before = OUT_ROWS(c);
        id = new_import(b, c, v ? "aborted" : "committed", 5);
        f = open_fault(unknown[v]);
        shared_init(&s, bf_url(), b, id);
        rc = txm_billing_import_run(b, f, id, task_fn, &s, &done);
        cr_assert_eq(rc, TXM_ECOMMIT_UNKNOWN, "%s: run -> %s: %s", unknown[v], txm_err_name(rc),
                     txm_error_last()->message);
        cr_assert_eq(txm_fault_count(f), 1);
        cr_assert_eq(done, 2, "the unknown commit was counted as done");
        txm_close(f);
        rows = OUT_ROWS(c) - before;
        pending = PENDING(c, id);
        cr_assert_eq(rows + pending, 5, "%s: %lld rows + %lld pending", unknown[v], (long long)rows,
                     (long long)pending);
        cr_assert_eq(rows, v ? 2 : 3, "%s: %lld rows", unknown[v], (long long)rows);
        {
            /* The fault driver dropped the first worker's session; the server notices the closed
             * socket asynchronously, and until then that session's row lock on the task it was
             * committing makes SKIP LOCKED pass over the task (a worker takes only claimable
             * tasks). So run workers until nothing is pending (bounded), and count. */
            size_t total = 0;
            int round;
            for (round = 0; round < 100; round++) {
                BF_OK(txm_billing_import_run(b, c, id, task_fn, &s, &done));
                total += done;
                if (PENDING(c, id) == 0)
                    break;
                usleep(20000);
            }
            cr_assert_eq((int64_t)total, pending, "%zu tasks run by later workers, %lld were pending", total,
                         (long long)pending);
        }
        cr_assert_eq(OUT_ROWS(c) - before, 5);
        BF_OK(txm_billing_import_cancel(b, c, id, 5000, &deleted));
        cr_assert_eq(deleted, 0);
        cr_assert_eq(count(c, "SELECT COUNT(*) FROM billing_import_workers WHERE import_id = ?", id), 0);
    }
    txm_billing_free(b);
    txm_close(c);
}

/* The longest prefix makes the MariaDB worker keys longer than GET_LOCK's 64 bytes (the driver
 * hashes them): cancel must still find and wait for the worker's lock. */
Test(import, long_prefix_lock_keys_still_make_cancel_wait)
{
    txm_conn *c = bf_open(), *cc = open_short_wait();
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b;
    shared s;
    worker w[1];
    int64_t id = 0, deleted = -1;
    int rc;
    o.prefix = "p_abcdefghijklmnopqrstuvwxyz0123"; /* 32 bytes */
    b = bf_billing(c, &o);
    BF_OK(txm_exec(c, "DROP TABLE IF EXISTS imp_out", NULL, 0, NULL));
    BF_OK(txm_exec(c, "CREATE TABLE imp_out (import_id BIGINT NOT NULL, task_id BIGINT NOT NULL, "
                      "payload TEXT NOT NULL, PRIMARY KEY (import_id, task_id))", NULL, 0, NULL));
    /* the largest ids make the longest keys: 32 + 7 + 19 + 8 + the connection id's digits > 64 */
    id = INT64_MAX - 7;
    BF_OK(txm_exec(c, "INSERT INTO p_abcdefghijklmnopqrstuvwxyz0123imports (id, name) VALUES (?, 'long keys')",
                   (txm_value[]){txm_int(id)}, 1, NULL));
    BF_OK(txm_billing_import_add_task(b, c, id, "one", NULL));
    BF_OK(txm_billing_import_add_task(b, c, id, "two", NULL));
    shared_init(&s, bf_url(), b, id);
    s.hold = 1;
    start_workers(w, 1, &s);
    wait_holding(&s, &w[0]);
    if (is_engine("mysql")) {
        txm_rows *r = NULL;
        BF_OK(txm_query(&r, c, "SELECT lock_key FROM p_abcdefghijklmnopqrstuvwxyz0123import_workers", NULL, 0));
        cr_assert(txm_rows_next(r));
        fprintf(stderr, "import[mysql]: worker key of %zu bytes (GET_LOCK takes 64; longer ones are hashed)\n",
                strlen(txm_rows_get_text(r, 0, NULL)));
        txm_rows_free(r);
    }
    rc = txm_billing_import_cancel(b, cc, id, 150, &deleted);
    cr_assert_eq(rc, TXM_ELOCK_TIMEOUT, "cancel did not wait for the worker: %s", txm_err_name(rc));
    shared_release(&s);
    BF_OK(txm_billing_import_cancel(b, c, id, -1, &deleted));
    cr_assert_eq(atomic_load(&s.in_fn), 0);
    join_workers(w, 1);
    cr_assert_eq(w[0].rc, 0, "%s", w[0].err);
    cr_assert_eq(OUT_ROWS(c), (int64_t)w[0].done);
    BF_OK(txm_billing_schema_drop(b, c));
    txm_billing_free(b);
    txm_close(cc);
    txm_close(c);
}
