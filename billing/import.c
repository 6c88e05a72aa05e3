/* Cancelable imports (docs/billing.md, "Imports").
 *
 * The incident: cancel returned while imports were still running, and rows kept appearing after
 * it. Here cancel returns 0 only once no worker can run a task callback any more:
 *
 *  - Workers process one task per transaction: read the import's status, claim the first task
 *    with a row lock (SKIP LOCKED where the engine has it, so workers do not queue on one row),
 *    call fn in that transaction, delete the task, commit. fn's writes commit with the task.
 *  - Cancel marks the import canceled and deletes the pending (unclaimed) tasks in one
 *    transaction, then waits for the workers that are still running:
 *      PostgreSQL: workers hold a shared session advisory lock on the import while they run;
 *        cancel takes the exclusive one (timeout_ms) and releases it.
 *      MySQL/MariaDB: no shared named locks, so each worker holds its own named lock and
 *        registers it in <prefix>import_workers; cancel reads the registry and waits for each
 *        lock in turn (the remaining timeout), see the ordering argument at mysql_cancel_wait.
 *      SQLite: no advisory locks; every task transaction and cancel's transaction are write
 *        transactions (BEGIN IMMEDIATE), so when cancel's commits no task transaction is open,
 *        and every later one reads 'canceled'. The wait is the connection's busy_timeout.
 *  - Every task transaction re-reads the status after the worker took its lock (and, on MySQL,
 *    registered), so a worker that starts after cancel did its waiting runs nothing.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMPORT_NAME_MAX 200
#define PAYLOAD_MAX 65535 /* MySQL TEXT holds 65,535 bytes */
#define CANCEL_CHUNK 200  /* MySQL: ids deleted per DELETE ... IN (...) */

/* ---- schema ---------------------------------------------------------------------------------- */

int bl_import_create(const txm_billing *b, txm_conn *c)
{
    const char *p = b->prefix;
    const char *text = b->engine == BL_SQLITE ? "TEXT" : "VARCHAR(200)";
    const int my = b->engine == BL_MYSQL;
    char sql[2048], idx[160];
    int rc;
    rc = bl_sql(sql, sizeof sql,
                "CREATE TABLE IF NOT EXISTS %s (%s, name %s NOT NULL, "
                "status VARCHAR(16) NOT NULL DEFAULT 'running', "
                "CONSTRAINT %simports_status_check CHECK (status IN ('running', 'canceled')))%s",
                b->t.imports, bl_id_ddl(b), text, p, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    /* (import_id, id): a worker's claim reads the first task of one import in id order. MySQL
     * names indexes per table and wants them in CREATE TABLE (it also backs the foreign key). */
    if (!rc && my)
        rc = bl_sql(idx, sizeof idx, ", INDEX %simport_tasks_import_idx (import_id, id)", p);
    else
        idx[0] = '\0';
    if (!rc)
        rc = bl_sql(sql, sizeof sql,
                    "CREATE TABLE IF NOT EXISTS %s (%s, import_id BIGINT NOT NULL, payload TEXT NOT NULL, "
                    "CONSTRAINT %simport_tasks_import_fk FOREIGN KEY (import_id) REFERENCES %s (id)%s)%s",
                    b->t.import_tasks, bl_id_ddl(b), p, b->t.imports, idx, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    if (!rc && !my) {
        rc = bl_sql(sql, sizeof sql, "CREATE INDEX IF NOT EXISTS %simport_tasks_import_idx ON %s (import_id, id)",
                    p, b->t.import_tasks);
        if (!rc)
            rc = txm_exec(c, sql, NULL, 0, NULL);
    }
    /* The registry of running MySQL workers. Created on every engine so that the schema is the
     * same everywhere (it stays empty on PostgreSQL and SQLite). */
    if (!rc)
        rc = bl_sql(sql, sizeof sql,
                    "CREATE TABLE IF NOT EXISTS %s (%s, import_id BIGINT NOT NULL, lock_key %s NOT NULL, "
                    "CONSTRAINT %simport_workers_import_fk FOREIGN KEY (import_id) REFERENCES %s (id))%s",
                    b->t.import_workers, bl_id_ddl(b), text, p, b->t.imports, bl_table_opts(b));
    if (!rc)
        rc = txm_exec(c, sql, NULL, 0, NULL);
    return rc;
}

int bl_import_drop(const txm_billing *b, txm_conn *c)
{
    int rc = bl_drop_table(c, b->t.import_workers);
    if (!rc)
        rc = bl_drop_table(c, b->t.import_tasks);
    return rc ? rc : bl_drop_table(c, b->t.imports);
}

/* ---- shared helpers -------------------------------------------------------------------------- */

/* UTF-8 well-formedness (no overlongs, no surrogates, <= U+10FFFF): PostgreSQL and MySQL reject
 * malformed text with an engine-specific error and SQLite stores it; refusing it up front gives
 * the same answer on every engine. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char ch = s[i];
        size_t len, k;
        unsigned long cp;
        if (ch < 0x80) {
            i++;
            continue;
        }
        if (ch >= 0xc2 && ch <= 0xdf) {
            len = 2;
            cp = ch & 0x1f;
        } else if (ch >= 0xe0 && ch <= 0xef) {
            len = 3;
            cp = ch & 0x0f;
        } else if (ch >= 0xf0 && ch <= 0xf4) {
            len = 4;
            cp = ch & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static int check_utf8(const char *s, size_t max, int allow_empty, const char *who, const char *what)
{
    size_t n;
    if (!s)
        return txm_error_set(TXM_EINVALID, "%s: %s is NULL", who, what);
    n = strlen(s);
    if ((n == 0 && !allow_empty) || n > max)
        return txm_error_set(TXM_EINVALID, "%s: %s must be %d to %zu bytes long (it is %zu)", who, what,
                             allow_empty ? 0 : 1, max, n);
    if (!utf8_valid((const unsigned char *)s, n))
        return txm_error_set(TXM_EINVALID, "%s: %s is not valid UTF-8", who, what);
    return 0;
}

static int check_import_id(int64_t import_id, const char *who)
{
    if (import_id <= 0)
        return txm_error_set(TXM_EINVALID, "%s: import id must be positive (it is %lld)", who, (long long)import_id);
    return 0;
}

/* The checks of the calls that must run outside a transaction (run, cancel). */
static int check_outside_tx(const txm_billing *b, txm_conn *c, int64_t import_id, const char *who)
{
    int rc;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if ((rc = txm_forbid_transaction(c, who)) != 0)
        return rc;
    return check_import_id(import_id, who);
}

/* The import's status: 1 running, 0 canceled; TXM_ENOTFOUND naming who. lock: a row-lock clause
 * ("" for a plain read). */
static int read_status(const txm_billing *b, txm_conn *c, int64_t import_id, const char *lock, const char *who,
                       int *running)
{
    char sql[512];
    txm_value p = txm_int(import_id);
    txm_rows *r = NULL;
    int rc;
    if ((rc = bl_sql(sql, sizeof sql, "SELECT status FROM %s WHERE id = ?%s", b->t.imports, lock)) != 0)
        return rc;
    if ((rc = txm_query(&r, c, sql, &p, 1)) != 0)
        return rc;
    if (!txm_rows_next(r)) {
        txm_rows_free(r);
        return txm_error_set(TXM_ENOTFOUND, "%s: no import with id %lld", who, (long long)import_id);
    }
    *running = strcmp(txm_rows_get_text(r, 0, NULL), "running") == 0;
    txm_rows_free(r);
    return 0;
}

/* MySQL 8.0+ and MariaDB 10.6+ have SELECT ... SKIP LOCKED; PostgreSQL (9.5+) always. */
static int skip_locked(const txm_billing *b, txm_conn *c, int *out)
{
    txm_rows *r = NULL;
    const char *v;
    int rc, major = 0, minor = 0;
    *out = b->engine == BL_PG;
    if (b->engine != BL_MYSQL)
        return 0;
    if ((rc = txm_query(&r, c, "SELECT VERSION()", NULL, 0)) != 0)
        return rc;
    v = txm_rows_next(r) ? txm_rows_get_text(r, 0, NULL) : "";
    if (sscanf(v, "%d.%d", &major, &minor) == 2)
        *out = strstr(v, "MariaDB") ? (major > 10 || (major == 10 && minor >= 6)) : major >= 8;
    txm_rows_free(r);
    return 0;
}

/* Task and cancel transactions run at READ COMMITTED on MySQL (PostgreSQL's default): each
 * statement reads the newest committed status, and claiming a task takes no gap locks that would
 * block add_task's inserts. SQLite transactions are serializable whatever is asked. */
static void tx_policy(const txm_billing *b, txm_retry_policy *pol, txm_tx_options *tx)
{
    static const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    *pol = b->retry;
    *tx = def;
    if (b->engine == BL_MYSQL) {
        tx->isolation = TXM_ISOLATION_READ_COMMITTED;
        pol->tx = tx;
    }
}

/* An error record saved across clean-up calls that may fail and overwrite it. Only the code and
 * message can be put back (txm_error_set), so clean-up runs only calls that normally succeed. */
typedef struct saved_err {
    int code;
    char message[512];
} saved_err;

static void err_save(saved_err *s, int code)
{
    s->code = code;
    snprintf(s->message, sizeof s->message, "%s", txm_error_last()->message);
}

/* Called only after a clean-up call failed (a successful call leaves the record alone). */
static int err_restore(const saved_err *s) { return txm_error_set(s->code, "%s", s->message); }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* PostgreSQL: the import's advisory lock (hashed by the driver, docs/driver-postgresql.md). */
static int pg_import_key(const txm_billing *b, int64_t import_id, char *key, size_t size)
{
    return bl_sql(key, size, "%simport:%lld", b->prefix, (long long)import_id);
}

/* ---- create, add_task ------------------------------------------------------------------------ */

int txm_billing_import_create(const txm_billing *b, txm_conn *c, const char *name, int64_t *id_out)
{
    static const char who[] = "txm_billing_import_create";
    char sql[512];
    txm_value p;
    int rc;
    if (id_out)
        *id_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if (!id_out)
        return txm_error_set(TXM_EINVALID, "%s: id_out is NULL", who);
    if ((rc = check_utf8(name, IMPORT_NAME_MAX, 0, who, "import name")) != 0)
        return rc;
    if ((rc = bl_sql(sql, sizeof sql, "INSERT INTO %s (name) VALUES (?) RETURNING id", b->t.imports)) != 0)
        return rc;
    p = txm_text(name);
    return bl_insert_id(b, c, sql, &p, 1, id_out);
}

typedef struct add_call {
    const txm_billing *b;
    int64_t import_id;
    const char *status_lock, *insert_sql;
    txm_value p[2];
    int64_t id;
} add_call;

/* The import row is read with a shared row lock: cancel's UPDATE of the status waits for this
 * transaction, and its DELETE then sees the new task; a task added after cancel committed sees
 * 'canceled' and is refused. Either way no task is left pending in a canceled import. */
static int add_body(txm_conn *c, void *payload)
{
    static const char who[] = "txm_billing_import_add_task";
    add_call *a = payload;
    int running = 0, rc;
    if ((rc = read_status(a->b, c, a->import_id, a->status_lock, who, &running)) != 0)
        return rc;
    if (!running)
        return txm_error_set(TXM_EINVALID, "%s: import %lld is canceled", who, (long long)a->import_id);
    return txm_query_i64(c, &a->id, a->insert_sql, a->p, 2);
}

int txm_billing_import_add_task(const txm_billing *b, txm_conn *c, int64_t import_id, const char *payload,
                                int64_t *task_id_out)
{
    static const char who[] = "txm_billing_import_add_task";
    char sql[512];
    add_call a;
    int rc;
    if (task_id_out)
        *task_id_out = 0;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if ((rc = check_import_id(import_id, who)) != 0)
        return rc;
    if ((rc = check_utf8(payload, PAYLOAD_MAX, 1, who, "payload")) != 0)
        return rc;
    if ((rc = bl_sql(sql, sizeof sql, "INSERT INTO %s (import_id, payload) VALUES (?, ?) RETURNING id",
                     b->t.import_tasks)) != 0)
        return rc;
    memset(&a, 0, sizeof a);
    a.b = b;
    a.import_id = import_id;
    a.status_lock = txm_sql_row_lock(c, TXM_ROW_LOCK_SHARE);
    a.insert_sql = sql;
    a.p[0] = txm_int(import_id);
    a.p[1] = txm_text(payload);
    if ((rc = bl_run(b, c, add_body, &a)) != 0)
        return rc;
    if (task_id_out)
        *task_id_out = a.id;
    return 0;
}

/* ---- workers --------------------------------------------------------------------------------- */

typedef struct run_call {
    const txm_billing *b;
    int64_t import_id;
    txm_billing_task_cb fn;
    void *arg;
    char claim_sql[512], delete_sql[256];
    int stop; /* out of task_body: 1 when nothing was done because the import is over */
} run_call;

/* One task: its own transaction. The status is read with a plain read (a locking read would make
 * cancel's UPDATE wait for a running fn, beyond cancel's timeout); the claim locks the task row,
 * so two workers never run one task and cancel's DELETE skips it (it is running, not pending). */
static int task_body(txm_conn *c, void *payload)
{
    static const char who[] = "txm_billing_import_run";
    run_call *r = payload;
    txm_value p = txm_int(r->import_id), tp;
    txm_rows *rows = NULL;
    int64_t task_id, affected = 0;
    int running = 0, rc;
    r->stop = 1;
    if ((rc = read_status(r->b, c, r->import_id, "", who, &running)) != 0 || !running)
        return rc;
    if ((rc = txm_query(&rows, c, r->claim_sql, &p, 1)) != 0)
        return rc;
    if (!txm_rows_next(rows)) {
        txm_rows_free(rows);
        return 0;
    }
    task_id = txm_rows_get_i64(rows, 0);
    rc = r->fn(c, r->import_id, task_id, txm_rows_get_text(rows, 1, NULL), r->arg);
    txm_rows_free(rows);
    if (rc)
        return rc;
    tp = txm_int(task_id);
    if ((rc = txm_exec(c, r->delete_sql, &tp, 1, &affected)) != 0)
        return rc;
    if (affected == 0) /* impossible while we hold its row lock (or SQLite's write lock) */
        return txm_error_set(TXM_ESTATE, "%s: task %lld vanished while it was being processed", who,
                             (long long)task_id);
    r->stop = 0;
    return 0;
}

/* MySQL worker registration: the worker's own named lock, then its registry row (autocommit). */
typedef struct my_worker {
    char key[200];
    int locked;
    int64_t row_id; /* 0: not registered */
} my_worker;

static int my_register(const txm_billing *b, txm_conn *c, int64_t import_id, my_worker *w)
{
    char sql[512];
    txm_value p[2];
    int64_t conn_id = 0;
    int rc;
    /* CONNECTION_ID() is unique among live sessions: no two running workers share a key. A stale
     * row of a dead session may carry the same key as a live worker; cancel then waits for the
     * live one, which is right, and rows are deleted by id, never by key. */
    if ((rc = txm_query_i64(c, &conn_id, "SELECT CONNECTION_ID()", NULL, 0)) != 0)
        return rc;
    if ((rc = bl_sql(w->key, sizeof w->key, "%simport:%lld:worker:%lld", b->prefix, (long long)import_id,
                     (long long)conn_id)) != 0)
        return rc;
    if ((rc = txm_lock(c, w->key, TXM_LOCK_EXCLUSIVE | TXM_LOCK_SESSION, 0)) != 0)
        return rc;
    w->locked = 1;
    if ((rc = bl_sql(sql, sizeof sql, "INSERT INTO %s (import_id, lock_key) VALUES (?, ?) RETURNING id",
                     b->t.import_workers)) != 0)
        return rc;
    p[0] = txm_int(import_id);
    p[1] = txm_text(w->key);
    return txm_query_i64(c, &w->row_id, sql, p, 2);
}

/* Deregisters first, then releases the lock: a registry row whose lock cancel obtains belongs to
 * a finished or dead worker, never to one about to run a task. */
static int my_deregister(const txm_billing *b, txm_conn *c, my_worker *w)
{
    char sql[256];
    int rc = 0;
    if (w->row_id) {
        txm_value p = txm_int(w->row_id);
        rc = bl_sql(sql, sizeof sql, "DELETE FROM %s WHERE id = ?", b->t.import_workers);
        if (!rc)
            rc = txm_exec(c, sql, &p, 1, NULL);
        w->row_id = 0;
    }
    if (w->locked) {
        int rc2 = txm_unlock(c, w->key, TXM_LOCK_EXCLUSIVE | TXM_LOCK_SESSION);
        w->locked = 0;
        if (!rc)
            rc = rc2;
    }
    return rc;
}

static int run_tasks(const txm_billing *b, txm_conn *c, run_call *r, size_t *done)
{
    txm_retry_policy pol;
    txm_tx_options tx;
    int rc;
    tx_policy(b, &pol, &tx);
    for (;;) {
        if ((rc = txm_retry(c, &pol, task_body, r)) != 0)
            return rc;
        if (r->stop)
            return 0;
        (*done)++;
        /* SQLite has no fair lock queue: a worker that begins its next write transaction at once
         * gets the write lock back before a waiting cancel's busy handler (polling every 5 ms at
         * most, docs/driver-sqlite.md) looks again, and cancel would starve until its
         * busy_timeout. Leaving the lock free a little longer than one poll step lets it in. */
        if (b->engine == BL_SQLITE)
            sleep_ms(6);
    }
}

int txm_billing_import_run(const txm_billing *b, txm_conn *c, int64_t import_id, txm_billing_task_cb fn,
                           void *payload_arg, size_t *done_out)
{
    static const char who[] = "txm_billing_import_run";
    char key[200];
    run_call r;
    my_worker w;
    size_t done = 0;
    int rc, running = 0, skip = 0, pg_locked = 0;
    if (done_out)
        *done_out = 0;
    /* A worker owns its transactions: each task commits on its own, and the locks below are
     * session locks that a caller's rollback would not undo. */
    if ((rc = check_outside_tx(b, c, import_id, who)) != 0)
        return rc;
    if (!fn)
        return txm_error_set(TXM_EINVALID, "%s: task callback is NULL", who);
    memset(&r, 0, sizeof r);
    memset(&w, 0, sizeof w);
    r.b = b;
    r.import_id = import_id;
    r.fn = fn;
    r.arg = payload_arg;
    if ((rc = skip_locked(b, c, &skip)) != 0)
        return rc;
    if ((rc = bl_sql(r.claim_sql, sizeof r.claim_sql,
                     "SELECT id, payload FROM %s WHERE import_id = ? ORDER BY id LIMIT 1%s%s", b->t.import_tasks,
                     txm_sql_row_lock(c, TXM_ROW_LOCK_UPDATE), skip ? " SKIP LOCKED" : "")) != 0)
        return rc;
    if ((rc = bl_sql(r.delete_sql, sizeof r.delete_sql, "DELETE FROM %s WHERE id = ?", b->t.import_tasks)) != 0)
        return rc;
    /* Unknown import: an error. Already canceled: nothing to do, and no lock to take. */
    if ((rc = read_status(b, c, import_id, "", who, &running)) != 0 || !running)
        return rc;
    if (b->engine == BL_PG) {
        if ((rc = pg_import_key(b, import_id, key, sizeof key)) != 0)
            return rc;
        /* Waits while a cancel holds (or waits for) the exclusive lock; the import is canceled
         * by then and the first task transaction sees it. */
        if ((rc = txm_lock(c, key, TXM_LOCK_SHARED | TXM_LOCK_SESSION, -1)) != 0)
            return rc;
        pg_locked = 1;
    } else if (b->engine == BL_MYSQL) {
        rc = my_register(b, c, import_id, &w);
    }
    if (!rc)
        rc = run_tasks(b, c, &r, &done);
    {
        saved_err s;
        int rc2 = 0;
        if (rc)
            err_save(&s, rc);
        if (pg_locked)
            rc2 = txm_unlock(c, key, TXM_LOCK_SHARED | TXM_LOCK_SESSION);
        else if (b->engine == BL_MYSQL)
            rc2 = my_deregister(b, c, &w);
        if (rc && rc2)
            rc = err_restore(&s);
        else if (!rc)
            rc = rc2;
    }
    if (done_out)
        *done_out = done;
    return rc;
}

/* ---- cancel ---------------------------------------------------------------------------------- */

typedef struct cancel_call {
    const txm_billing *b;
    int64_t import_id;
    int skip;
    int64_t deleted;
} cancel_call;

/* MySQL: DELETE cannot read its own table with SKIP LOCKED in a subquery; claim the unclaimed
 * ids in chunks with a locking read that skips running tasks, then delete them one by one by
 * primary key, the chunk's statements in one flight (txm_batch). Not one DELETE ... IN (...) nor
 * a condition on import_id: on a small table InnoDB chooses a scan, which waits for the row lock
 * of every running task it passes (measured: cancel stuck behind a running task). */
static int my_delete_pending(const txm_billing *b, txm_conn *c, int64_t import_id, int64_t *deleted)
{
    char sel[512], del[256];
    txm_value p[CANCEL_CHUNK];
    txm_batch_stmt st[CANCEL_CHUNK];
    int rc;
    if ((rc = bl_sql(sel, sizeof sel, "SELECT id FROM %s WHERE import_id = ? ORDER BY id LIMIT %d%s SKIP LOCKED",
                     b->t.import_tasks, CANCEL_CHUNK, txm_sql_row_lock(c, TXM_ROW_LOCK_UPDATE))) != 0)
        return rc;
    if ((rc = bl_sql(del, sizeof del, "DELETE FROM %s WHERE id = ?", b->t.import_tasks)) != 0)
        return rc;
    for (;;) {
        txm_value ip = txm_int(import_id);
        txm_rows *r = NULL;
        size_t n = 0;
        if ((rc = txm_query(&r, c, sel, &ip, 1)) != 0)
            return rc;
        while (n < CANCEL_CHUNK && txm_rows_next(r)) {
            p[n] = txm_int(txm_rows_get_i64(r, 0));
            memset(&st[n], 0, sizeof st[n]);
            st[n].sql = del;
            st[n].params = &p[n];
            st[n].nparams = 1;
            n++;
        }
        txm_rows_free(r);
        if (n == 0)
            return 0;
        if ((rc = txm_batch(c, st, n, NULL)) != 0)
            return rc;
        for (size_t i = 0; i < n; i++)
            if (st[i].affected > 0)
                *deleted += st[i].affected;
    }
}

typedef struct sweep_call {
    const txm_billing *b;
    int64_t import_id, deleted;
} sweep_call;

static int sweep_body(txm_conn *c, void *payload)
{
    sweep_call *a = payload;
    a->deleted = 0;
    return my_delete_pending(a->b, c, a->import_id, &a->deleted);
}

/* Marks the import canceled and deletes its pending tasks. Tasks being processed are locked by
 * their worker and skipped (SKIP LOCKED): waiting for them here would not honour timeout_ms;
 * their workers finish them and then see 'canceled'. */
static int cancel_body(txm_conn *c, void *payload)
{
    static const char who[] = "txm_billing_import_cancel";
    cancel_call *a = payload;
    const txm_billing *b = a->b;
    char sql[768];
    txm_value p = txm_int(a->import_id);
    int64_t affected = 0;
    int running = 0, rc;
    a->deleted = 0;
    if ((rc = read_status(b, c, a->import_id, txm_sql_row_lock(c, TXM_ROW_LOCK_UPDATE), who, &running)) != 0)
        return rc;
    if (running) {
        if ((rc = bl_sql(sql, sizeof sql, "UPDATE %s SET status = 'canceled' WHERE id = ?", b->t.imports)) != 0)
            return rc;
        if ((rc = txm_exec(c, sql, &p, 1, NULL)) != 0)
            return rc;
    }
    if (b->engine == BL_MYSQL && a->skip)
        return my_delete_pending(b, c, a->import_id, &a->deleted);
    if (b->engine == BL_PG)
        rc = bl_sql(sql, sizeof sql,
                    "DELETE FROM %s WHERE id IN (SELECT id FROM %s WHERE import_id = ? FOR UPDATE SKIP LOCKED)",
                    b->t.import_tasks, b->t.import_tasks);
    else /* SQLite (serialized by the write lock); MySQL without SKIP LOCKED waits for running tasks */
        rc = bl_sql(sql, sizeof sql, "DELETE FROM %s WHERE import_id = ?", b->t.import_tasks);
    if (!rc)
        rc = txm_exec(c, sql, &p, 1, &affected);
    if (!rc && affected > 0)
        a->deleted = affected;
    return rc;
}

/* Milliseconds left of timeout_ms since start (-1: no limit; 0: try once). */
static int remaining_ms(int timeout_ms, int64_t start)
{
    int64_t left;
    if (timeout_ms < 0)
        return -1;
    left = (int64_t)timeout_ms - (now_ms() - start);
    return left > 0 ? (int)left : 0;
}

static int timed_out(int64_t import_id, int timeout_ms, const char *what)
{
    return txm_error_set(TXM_ELOCK_TIMEOUT,
                         "txm_billing_import_cancel: import %lld is canceled and its pending tasks deleted, but %s "
                         "still running after %d ms; call it again to wait",
                         (long long)import_id, what, timeout_ms);
}

static int pg_cancel_wait(const txm_billing *b, txm_conn *c, int64_t import_id, int timeout_ms, int64_t start)
{
    char key[200];
    int rc;
    if ((rc = pg_import_key(b, import_id, key, sizeof key)) != 0)
        return rc;
    rc = txm_lock(c, key, TXM_LOCK_EXCLUSIVE | TXM_LOCK_SESSION, remaining_ms(timeout_ms, start));
    if (rc == TXM_ELOCK_TIMEOUT)
        return timed_out(import_id, timeout_ms, "workers are");
    if (rc)
        return rc;
    return txm_unlock(c, key, TXM_LOCK_EXCLUSIVE | TXM_LOCK_SESSION);
}

/* MySQL: waits for every registered worker's lock.
 *
 * Ordering argument. Worker: W1 takes its named lock, W2 commits its registry row, then each task
 * transaction reads the status (W3) before claiming a task; it keeps the lock until it has
 * deregistered. Cancel: C1 commits 'canceled', C2 reads the registry (a new statement: it sees
 * every row committed before it started), C3 takes and releases each listed lock.
 *  - If C2 saw the worker's row, W1 < W2 < C2: the lock is held, and C3 returns only after the
 *    worker deregistered, i.e. after its last task transaction ended.
 *  - If C2 did not see it, W2 committed after C2 began, so every W3 starts after C1 committed and
 *    reads 'canceled': the worker runs no task.
 * A worker whose session died lost its lock with the session (the server frees it): C3 gets it
 * at once, and the stale row is deleted here. */
static int mysql_cancel_wait(const txm_billing *b, txm_conn *c, int64_t import_id, int timeout_ms, int64_t start)
{
    char sel[512], del[256];
    txm_value p = txm_int(import_id);
    txm_rows *r = NULL;
    int rc;
    if ((rc = bl_sql(sel, sizeof sel, "SELECT id, lock_key FROM %s WHERE import_id = ? ORDER BY id",
                     b->t.import_workers)) != 0)
        return rc;
    if ((rc = bl_sql(del, sizeof del, "DELETE FROM %s WHERE id = ?", b->t.import_workers)) != 0)
        return rc;
    if ((rc = txm_query(&r, c, sel, &p, 1)) != 0)
        return rc;
    while (txm_rows_next(r)) {
        int64_t row_id = txm_rows_get_i64(r, 0);
        const char *key = txm_rows_get_text(r, 1, NULL);
        txm_value rp = txm_int(row_id);
        rc = txm_lock(c, key, TXM_LOCK_EXCLUSIVE | TXM_LOCK_SESSION, remaining_ms(timeout_ms, start));
        if (rc == TXM_ELOCK_TIMEOUT)
            rc = timed_out(import_id, timeout_ms, "workers are");
        if (rc)
            break;
        if ((rc = txm_unlock(c, key, TXM_LOCK_EXCLUSIVE | TXM_LOCK_SESSION)) != 0)
            break;
        /* Finished workers deleted their row before releasing; a row still here is stale. */
        if ((rc = txm_exec(c, del, &rp, 1, NULL)) != 0)
            break;
    }
    txm_rows_free(r);
    return rc;
}

int txm_billing_import_cancel(const txm_billing *b, txm_conn *c, int64_t import_id, int timeout_ms,
                              int64_t *deleted_out)
{
    static const char who[] = "txm_billing_import_cancel";
    txm_retry_policy pol;
    txm_tx_options tx;
    cancel_call a;
    int64_t start = now_ms(), swept = 0;
    int rc;
    if (deleted_out)
        *deleted_out = 0;
    /* Waiting for workers inside a transaction could wait for this very transaction's locks, and
     * a caller's rollback would undo the cancel after workers were told to stop. */
    if ((rc = check_outside_tx(b, c, import_id, who)) != 0)
        return rc;
    memset(&a, 0, sizeof a);
    a.b = b;
    a.import_id = import_id;
    if ((rc = skip_locked(b, c, &a.skip)) != 0)
        return rc;
    tx_policy(b, &pol, &tx);
    /* SQLite: this write transaction waits (busy_timeout) until no task transaction is open. */
    if ((rc = txm_retry(c, &pol, cancel_body, &a)) != 0) {
        if (rc == TXM_ELOCK_TIMEOUT && b->engine == BL_SQLITE) {
            saved_err s; /* copied: the record's message is overwritten by the call that formats it */
            err_save(&s, rc);
            return txm_error_set(rc,
                                 "%s: import %lld is not canceled (nothing changed): a task transaction held the "
                                 "write lock longer than the connection's busy_timeout (%s)",
                                 who, (long long)import_id, s.message);
        }
        return rc;
    }
    if (deleted_out)
        *deleted_out = a.deleted;
    if (b->engine == BL_PG)
        rc = pg_cancel_wait(b, c, import_id, timeout_ms, start);
    else if (b->engine == BL_MYSQL)
        rc = mysql_cancel_wait(b, c, import_id, timeout_ms, start);
    if (rc)
        return rc;
    /* No worker runs now: tasks whose callback failed while we waited went back to pending. */
    if (b->engine == BL_MYSQL && a.skip) {
        sweep_call sw = {b, import_id, 0};
        if ((rc = txm_retry(c, &pol, sweep_body, &sw)) != 0)
            return rc;
        swept = sw.deleted;
    } else if (b->engine != BL_SQLITE) {
        char sql[256];
        txm_value p = txm_int(import_id);
        if ((rc = bl_sql(sql, sizeof sql, "DELETE FROM %s WHERE import_id = ?", b->t.import_tasks)) != 0)
            return rc;
        if ((rc = txm_exec(c, sql, &p, 1, &swept)) != 0)
            return rc;
    }
    if (deleted_out && swept > 0)
        *deleted_out += swept;
    return 0;
}
