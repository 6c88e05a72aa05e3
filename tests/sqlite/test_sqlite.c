/*
 * SQLite driver tests, through the public API on real SQLite databases (a fresh temp directory per
 * test; Criterion runs each test in its own process).
 */
#include "txm.h"
#include "txm_tmpdir.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <sqlite3.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
    txm_tmpdir_make(dir, sizeof dir, "sqlite");
}

static void teardown(void)
{
    txm_tmpdir_remove(dir);
}

TestSuite(sqlite_url, .init = setup, .fini = teardown);
TestSuite(sqlite_errors, .init = setup, .fini = teardown);
TestSuite(sqlite_locking, .init = setup, .fini = teardown);
TestSuite(sqlite_tx, .init = setup, .fini = teardown);
TestSuite(sqlite_cache, .init = setup, .fini = teardown);
TestSuite(sqlite_values, .init = setup, .fini = teardown);

/* ---- helpers ----------------------------------------------------------------------------- */

#define OK(expr)                                                                                          \
    do {                                                                                                  \
        int rc_ = (expr);                                                                                 \
        cr_assert(eq(int, rc_, 0), "%s failed: %s: %s", #expr, txm_err_name(rc_), txm_error_last()->message); \
    } while (0)

#define FAILS_WITH(expr, want)                                                                            \
    do {                                                                                                  \
        int rc_ = (expr);                                                                                 \
        cr_assert(eq(int, rc_, want), "%s: expected %s, got %s: %s", #expr, txm_err_name(want), txm_err_name(rc_), \
                  txm_error_last()->message);                                                             \
    } while (0)

#define MSG_HAS(needle)                                                                                   \
    cr_assert(strstr(txm_error_last()->message, (needle)) != NULL, "message '%s' should mention '%s'",     \
              txm_error_last()->message, (needle))

static txm_conn *open_fmt(const txm_open_options *opts, const char *fmt, ...) TXM_PRINTF(2, 3);
static txm_conn *open_fmt(const txm_open_options *opts, const char *fmt, ...)
{
    char url[512];
    txm_conn *c = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    OK(txm_open(&c, url, opts));
    cr_assert(c != NULL);
    return c;
}

static int open_url_rc(const char *fmt, ...) TXM_PRINTF(1, 2);
static int open_url_rc(const char *fmt, ...)
{
    char url[512];
    txm_conn *c = (txm_conn *)1;
    va_list ap;
    int rc;
    va_start(ap, fmt);
    vsnprintf(url, sizeof url, fmt, ap);
    va_end(ap);
    rc = txm_open(&c, url, NULL);
    if (rc == 0)
        txm_close(c);
    else
        cr_assert(c == NULL, "txm_open must set *out to NULL on failure");
    return rc;
}

static void exec(txm_conn *c, const char *sql) { OK(txm_exec(c, sql, NULL, 0, NULL)); }

static int64_t i64(txm_conn *c, const char *sql)
{
    int64_t v = -12345;
    OK(txm_query_i64(c, &v, sql, NULL, 0));
    return v;
}

static txm_tx *begin(txm_conn *c, unsigned flags)
{
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    txm_tx *t = NULL;
    o.flags = flags;
    OK(txm_begin(&t, c, &o));
    return t;
}

static void expect_str(const char *got, const char *want, const char *what)
{
    cr_assert(got != NULL && strcmp(got, want) == 0, "%s: got '%s', want '%s'", what, got ? got : "(null)", want);
}

/* ---- URL options ------------------------------------------------------------------------- */

Test(sqlite_url, driver_name_and_capabilities)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    expect_str(txm_driver_name(c), "sqlite", "driver name");
    cr_assert(eq(u32, txm_capabilities(c),
                 TXM_CAP_PIPELINE | TXM_CAP_READ_ONLY_TX | TXM_CAP_CANCEL | TXM_CAP_TX_TIMEOUTS));
    FAILS_WITH(txm_lock(c, "k", TXM_LOCK_EXCLUSIVE, 0), TXM_ENOTSUPPORTED);
    txm_close(c);
}

Test(sqlite_url, unknown_option_is_einvalid_naming_it)
{
    FAILS_WITH(open_url_rc("sqlite:%s/a.db?busy_timeout=10&bogus_opt=1", dir), TXM_EINVALID);
    MSG_HAS("bogus_opt");
}

Test(sqlite_url, bad_option_values_are_einvalid_naming_the_option)
{
    static const char *const cases[][2] = {
        {"busy_timeout=abc", "busy_timeout"}, {"busy_timeout=-1", "busy_timeout"}, {"mode=rwx", "mode"},
        {"foreign_keys=yes", "foreign_keys"}, {"journal=off", "journal"},          {"cache=-3", "cache"},
        {"cache=999999", "cache"},            {"mode=ro&mode=rw", "mode"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FAILS_WITH(open_url_rc("sqlite:%s/a.db?%s", dir, cases[i][0]), TXM_EINVALID);
        MSG_HAS(cases[i][1]);
    }
}

Test(sqlite_url, unopenable_path_is_econnection_naming_the_path)
{
    char path[256];
    snprintf(path, sizeof path, "%s/no-such-dir/x.db", dir);
    FAILS_WITH(open_url_rc("sqlite:%s", path), TXM_ECONNECTION);
    MSG_HAS(path);
    cr_assert(eq(int, txm_error_last()->native_code & 0xff, SQLITE_CANTOPEN));
}

Test(sqlite_url, mode_rw_does_not_create_the_file)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/missing.db", dir);
    FAILS_WITH(open_url_rc("sqlite:%s?mode=rw", path), TXM_ECONNECTION);
    MSG_HAS(path);
    cr_assert(stat(path, &st) != 0, "mode=rw must not create %s", path);
    OK(open_url_rc("sqlite:%s", path)); /* rwc (default) creates it */
    cr_assert(stat(path, &st) == 0);
}

Test(sqlite_url, mode_ro_refuses_writes_with_eread_only)
{
    txm_conn *w = open_fmt(NULL, "sqlite:%s/a.db", dir), *r;
    exec(w, "CREATE TABLE t(x)");
    exec(w, "INSERT INTO t VALUES (1)");
    txm_close(w);
    r = open_fmt(NULL, "sqlite:%s/a.db?mode=ro", dir);
    cr_assert(eq(i64, i64(r, "SELECT count(*) FROM t"), 1));
    FAILS_WITH(txm_exec(r, "INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_EREAD_ONLY);
    cr_assert(eq(int, txm_error_last()->native_code & 0xff, SQLITE_READONLY));
    cr_assert(eq(str, (char *)txm_error_last()->sqlstate, ""));
    txm_close(r);
}

Test(sqlite_url, not_a_database_is_econnection_at_open)
{
    char path[256], junk[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/junk.db", dir);
    memset(junk, 'x', sizeof junk);
    f = fopen(path, "wb");
    cr_assert(f != NULL);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
    FAILS_WITH(open_url_rc("sqlite:%s", path), TXM_ECONNECTION);
    MSG_HAS(path);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_NOTADB));
}

Test(sqlite_url, hierarchical_form_names_an_absolute_path)
{
    /* sqlite:///tmp/x/a.db is the same file as sqlite:/tmp/x/a.db */
    txm_conn *a = open_fmt(NULL, "sqlite://%s/a.db", dir), *b;
    exec(a, "CREATE TABLE t(x)");
    exec(a, "INSERT INTO t VALUES (42)");
    txm_close(a);
    b = open_fmt(NULL, "sqlite:%s/a.db", dir);
    cr_assert(eq(i64, i64(b, "SELECT x FROM t"), 42));
    txm_close(b);
}

Test(sqlite_url, user_or_port_is_einvalid)
{
    FAILS_WITH(open_url_rc("sqlite://bob@localhost%s/a.db", dir), TXM_EINVALID);
}

Test(sqlite_url, journal_wal_is_applied)
{
    txm_conn *c = open_fmt(NULL, "sqlite:%s/a.db?journal=wal", dir);
    txm_rows *r;
    OK(txm_query(&r, c, "PRAGMA journal_mode", NULL, 0));
    cr_assert(txm_rows_next(r));
    expect_str(txm_rows_get_text(r, 0, NULL), "wal", "journal_mode");
    txm_rows_free(r);
    txm_close(c);
}

Test(sqlite_url, journal_wal_on_memory_database_is_refused)
{
    FAILS_WITH(open_url_rc("sqlite::memory:?journal=wal"), TXM_EINVALID);
    MSG_HAS("journal");
}

Test(sqlite_url, foreign_keys_are_on_by_default)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    cr_assert(eq(i64, i64(c, "PRAGMA foreign_keys"), 1));
    exec(c, "CREATE TABLE p(id INTEGER PRIMARY KEY)");
    exec(c, "CREATE TABLE ch(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id))");
    FAILS_WITH(txm_exec(c, "INSERT INTO ch VALUES (1, 99)", NULL, 0, NULL), TXM_EFOREIGN_KEY);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_FOREIGNKEY));
    expect_str(txm_error_last()->constraint_name, "", "FK constraint name (SQLite gives none)");
    txm_close(c);

    c = open_fmt(NULL, "sqlite::memory:?foreign_keys=0");
    cr_assert(eq(i64, i64(c, "PRAGMA foreign_keys"), 0));
    exec(c, "CREATE TABLE p(id INTEGER PRIMARY KEY)");
    exec(c, "CREATE TABLE ch(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id))");
    exec(c, "INSERT INTO ch VALUES (1, 99)");
    txm_close(c);
}

/* ---- error mapping ----------------------------------------------------------------------- */

Test(sqlite_errors, unique_single_column_names_table_and_column)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE)");
    exec(c, "INSERT INTO users(email) VALUES ('a@x')");
    FAILS_WITH(txm_exec(c, "INSERT INTO users(email) VALUES ('a@x')", NULL, 0, NULL), TXM_EUNIQUE);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_UNIQUE));
    expect_str(txm_error_last()->table_name, "users", "table");
    expect_str(txm_error_last()->column_name, "email", "column");
    expect_str(txm_error_last()->sqlstate, "", "sqlstate");
    cr_assert(eq(int, txm_error_last()->flags & TXM_ERRF_TX_LOST, 0));
    txm_close(c);
}

/* Only the table: a column would read as if it alone were duplicated (the other engines fill
 * column_name only for a single-column key too). */
Test(sqlite_errors, unique_multi_column_names_the_table_but_no_column)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE m(a INTEGER, b INTEGER, UNIQUE(a, b))");
    exec(c, "INSERT INTO m VALUES (1, 2)");
    FAILS_WITH(txm_exec(c, "INSERT INTO m VALUES (1, 2)", NULL, 0, NULL), TXM_EUNIQUE);
    expect_str(txm_error_last()->table_name, "m", "table");
    expect_str(txm_error_last()->column_name, "", "column");
    txm_close(c);
}

Test(sqlite_errors, primary_key_and_rowid_conflicts_are_unique)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE k(id INTEGER PRIMARY KEY, v)");
    exec(c, "CREATE TABLE s(code TEXT PRIMARY KEY, v)");
    exec(c, "INSERT INTO k VALUES (1, 'x')");
    exec(c, "INSERT INTO s VALUES ('c', 'x')");
    FAILS_WITH(txm_exec(c, "INSERT INTO k VALUES (1, 'y')", NULL, 0, NULL), TXM_EUNIQUE);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_PRIMARYKEY));
    expect_str(txm_error_last()->table_name, "k", "table");
    expect_str(txm_error_last()->column_name, "id", "column");
    FAILS_WITH(txm_exec(c, "INSERT INTO s VALUES ('c', 'y')", NULL, 0, NULL), TXM_EUNIQUE);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_PRIMARYKEY));
    expect_str(txm_error_last()->column_name, "code", "column");
    txm_close(c);
}

Test(sqlite_errors, unique_expression_index_gives_the_index_name)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE e(email TEXT)");
    exec(c, "CREATE UNIQUE INDEX e_lower_email ON e(lower(email))");
    exec(c, "INSERT INTO e VALUES ('A@x')");
    FAILS_WITH(txm_exec(c, "INSERT INTO e VALUES ('a@X')", NULL, 0, NULL), TXM_EUNIQUE);
    expect_str(txm_error_last()->constraint_name, "e_lower_email", "constraint");
    expect_str(txm_error_last()->table_name, "", "table");
    txm_close(c);
}

Test(sqlite_errors, not_null_names_table_and_column)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE n(id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    FAILS_WITH(txm_exec(c, "INSERT INTO n(name) VALUES (?)", (txm_value[]){txm_null()}, 1, NULL), TXM_ENOT_NULL);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_NOTNULL));
    expect_str(txm_error_last()->table_name, "n", "table");
    expect_str(txm_error_last()->column_name, "name", "column");
    txm_close(c);
}

Test(sqlite_errors, check_constraint_name_only_when_named)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE acct(balance INTEGER CONSTRAINT balance_nonnegative CHECK (balance >= 0), "
            "qty INTEGER CHECK (qty < 100))");
    FAILS_WITH(txm_exec(c, "INSERT INTO acct VALUES (-1, 1)", NULL, 0, NULL), TXM_ECHECK);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_CHECK));
    expect_str(txm_error_last()->constraint_name, "balance_nonnegative", "named CHECK");
    FAILS_WITH(txm_exec(c, "INSERT INTO acct VALUES (1, 1000)", NULL, 0, NULL), TXM_ECHECK);
    expect_str(txm_error_last()->constraint_name, "", "unnamed CHECK reports an expression, not a name");
    txm_close(c);
}

Test(sqlite_errors, syntax_and_undefined_objects_are_esyntax)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    FAILS_WITH(txm_exec(c, "SELEC 1", NULL, 0, NULL), TXM_ESYNTAX);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_ERROR));
    FAILS_WITH(txm_exec(c, "SELECT * FROM no_such_table", NULL, 0, NULL), TXM_ESYNTAX);
    MSG_HAS("no_such_table");
    exec(c, "CREATE TABLE t(a)");
    FAILS_WITH(txm_exec(c, "SELECT nope FROM t", NULL, 0, NULL), TXM_ESYNTAX);
    txm_close(c);
}

Test(sqlite_errors, datatype_errors_are_edata)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE k(id INTEGER PRIMARY KEY)");
    FAILS_WITH(txm_exec(c, "INSERT INTO k VALUES ('not a number')", NULL, 0, NULL), TXM_EDATA);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_MISMATCH));
#if SQLITE_VERSION_NUMBER >= 3037000
    exec(c, "CREATE TABLE s(n INTEGER) STRICT");
    FAILS_WITH(txm_exec(c, "INSERT INTO s VALUES ('abc')", NULL, 0, NULL), TXM_EDATA);
#endif
    txm_close(c);
}

Test(sqlite_errors, multiple_statements_are_refused_before_running_any)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    exec(c, "CREATE TABLE t(a)");
    FAILS_WITH(txm_exec(c, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_EINVALID);
    MSG_HAS("more than one statement");
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 0), "nothing may run when the text is refused");
    /* A trailing semicolon, blanks and comments are one statement. */
    exec(c, "INSERT INTO t VALUES (1);");
    exec(c, "INSERT INTO t VALUES (2) ;  -- done\n");
    exec(c, "INSERT INTO t VALUES (3); /* done */ ;");
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 3));
    FAILS_WITH(txm_exec(c, "  -- nothing here", NULL, 0, NULL), TXM_EINVALID);
    txm_close(c);
}

/* ---- locking: busy timeout, deadlock, stale snapshot ------------------------------------- */

Test(sqlite_locking, busy_after_busy_timeout_is_elock_timeout)
{
    txm_conn *a = open_fmt(NULL, "sqlite:%s/l.db", dir);
    txm_conn *b = open_fmt(NULL, "sqlite:%s/l.db?busy_timeout=50", dir);
    txm_conn *z = open_fmt(NULL, "sqlite:%s/l.db?busy_timeout=0", dir);
    txm_tx *ta, *tb;
    exec(a, "CREATE TABLE t(x)");
    ta = begin(a, 0);
    exec(a, "INSERT INTO t VALUES (1)"); /* BEGIN IMMEDIATE: a holds the write lock */

    FAILS_WITH(txm_exec(b, "INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_ELOCK_TIMEOUT);
    cr_assert(eq(int, txm_error_last()->native_code & 0xff, SQLITE_BUSY));
    MSG_HAS("database is locked; gave up after busy_timeout=50 ms");
    /* said once: SQLite's text is not repeated after txm's (issue 9) */
    const char *locked = strstr(txm_error_last()->message, "database is locked");
    cr_assert(locked && !strstr(locked + 1, "database is locked"), "message repeats itself: %s",
              txm_error_last()->message);
    FAILS_WITH(txm_exec(z, "INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_ELOCK_TIMEOUT);

    /* In a transaction the wait happens at BEGIN IMMEDIATE. */
    tb = begin(b, 0);
    FAILS_WITH(txm_exec(b, "INSERT INTO t VALUES (3)", NULL, 0, NULL), TXM_ELOCK_TIMEOUT);
    OK(txm_rollback(tb));

    /* Readers are not blocked by a writer's RESERVED lock. */
    cr_assert(eq(i64, i64(b, "SELECT count(*) FROM t"), 0));
    OK(txm_commit(ta));
    exec(b, "INSERT INTO t VALUES (2)");
    cr_assert(eq(i64, i64(z, "SELECT count(*) FROM t"), 2));
    txm_close(a);
    txm_close(b);
    txm_close(z);
}

Test(sqlite_locking, busy_timeout_pragma_keeps_lock_timeouts_classified)
{
    txm_conn *a = open_fmt(NULL, "sqlite:%s/p.db", dir);
    txm_conn *b = open_fmt(NULL, "sqlite:%s/p.db?busy_timeout=5000", dir);
    txm_tx *ta;
    exec(a, "CREATE TABLE t(x)");
    /* SQLite's own PRAGMA would replace the driver's busy handler; the driver adopts the value. */
    exec(b, "PRAGMA busy_timeout = 30");
    cr_assert(eq(i64, i64(b, "PRAGMA busy_timeout"), 0), "the driver's handler is back (SQLite reports 0 for it)");
    ta = begin(a, 0);
    exec(a, "INSERT INTO t VALUES (1)");
    FAILS_WITH(txm_exec(b, "INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_ELOCK_TIMEOUT);
    MSG_HAS("busy_timeout=30");
    exec(b, "pragma busy_timeout(0)");
    FAILS_WITH(txm_exec(b, "INSERT INTO t VALUES (3)", NULL, 0, NULL), TXM_ELOCK_TIMEOUT);
    MSG_HAS("busy_timeout=0");
    OK(txm_rollback(ta));
    txm_close(a);
    txm_close(b);
}

Test(sqlite_locking, commit_blocked_by_reader_times_out_and_rolls_back)
{
    txm_conn *r = open_fmt(NULL, "sqlite:%s/l.db", dir);
    txm_conn *w = open_fmt(NULL, "sqlite:%s/l.db?busy_timeout=50", dir);
    txm_tx *tr, *tw;
    exec(w, "CREATE TABLE t(x)");
    tr = begin(r, TXM_TX_READ_ONLY);
    cr_assert(eq(i64, i64(r, "SELECT count(*) FROM t"), 0)); /* r holds a SHARED lock until it ends */

    tw = begin(w, 0);
    exec(w, "INSERT INTO t VALUES (1)");
    FAILS_WITH(txm_commit(tw), TXM_ELOCK_TIMEOUT); /* COMMIT needs EXCLUSIVE */
    cr_assert(eq(int, txm_depth(w), 0));
    OK(txm_commit(tr));
    cr_assert(eq(i64, i64(w, "SELECT count(*) FROM t"), 0), "the failed commit must have been rolled back");
    exec(w, "INSERT INTO t VALUES (1)");
    cr_assert(eq(i64, i64(r, "SELECT count(*) FROM t"), 1));
    txm_close(r);
    txm_close(w);
}

Test(sqlite_locking, write_transaction_takes_the_write_lock_at_begin)
{
    /* BEGIN IMMEDIATE: even a write transaction's first read waits for (and times out on) the
     * write lock, instead of reading now and failing with a deadlock at its first write. */
    txm_conn *a = open_fmt(NULL, "sqlite:%s/l.db", dir);
    txm_conn *b = open_fmt(NULL, "sqlite:%s/l.db?busy_timeout=20", dir);
    txm_tx *ta, *tb;
    exec(a, "CREATE TABLE t(x)");
    ta = begin(a, 0);
    exec(a, "INSERT INTO t VALUES (1)");
    tb = begin(b, 0);
    FAILS_WITH(txm_exec(b, "SELECT count(*) FROM t", NULL, 0, NULL), TXM_ELOCK_TIMEOUT);
    OK(txm_rollback(tb));
    tb = begin(b, TXM_TX_READ_ONLY); /* a read-only one does not wait */
    cr_assert(eq(i64, i64(b, "SELECT count(*) FROM t"), 0));
    OK(txm_commit(tb));
    OK(txm_commit(ta));
    txm_close(a);
    txm_close(b);
}

/* A writer through txm starts with BEGIN IMMEDIATE and cannot deadlock or hit a stale snapshot.
 * Those errors need a transaction that reads first and writes later; the only way to get one
 * through the API is a read-only transaction whose application turns query_only off by hand. */
Test(sqlite_locking, busy_without_waiting_is_edeadlock_and_ends_the_transaction)
{
    txm_conn *a = open_fmt(NULL, "sqlite:%s/l.db", dir); /* long busy_timeout: must not wait */
    txm_conn *b = open_fmt(NULL, "sqlite:%s/l.db", dir);
    txm_tx *ta, *tb;
    exec(a, "CREATE TABLE t(x)");
    tb = begin(b, 0);
    exec(b, "INSERT INTO t VALUES (1)"); /* b holds RESERVED */

    ta = begin(a, TXM_TX_READ_ONLY);
    cr_assert(eq(i64, i64(a, "SELECT count(*) FROM t"), 0)); /* a holds SHARED */
    exec(a, "PRAGMA query_only=0");
    FAILS_WITH(txm_exec(a, "INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_EDEADLOCK);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_BUSY));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST, "the driver rolls the deadlocked transaction back");
    FAILS_WITH(txm_exec(a, "SELECT 1", NULL, 0, NULL), TXM_ETX_ABORTED);
    OK(txm_rollback(ta));
    cr_assert(eq(i64, i64(a, "PRAGMA query_only"), 0));

    /* a's SHARED lock is gone, so b can commit at once. */
    OK(txm_commit(tb));
    cr_assert(eq(i64, i64(a, "SELECT count(*) FROM t"), 1));
    txm_close(a);
    txm_close(b);
}

Test(sqlite_locking, stale_wal_snapshot_is_eserialization)
{
    txm_conn *a = open_fmt(NULL, "sqlite:%s/w.db?journal=wal", dir);
    txm_conn *b = open_fmt(NULL, "sqlite:%s/w.db?journal=wal", dir);
    txm_tx *ta;
    exec(a, "CREATE TABLE t(x)");
    ta = begin(a, TXM_TX_READ_ONLY);
    cr_assert(eq(i64, i64(a, "SELECT count(*) FROM t"), 0)); /* a's snapshot */
    exec(b, "INSERT INTO t VALUES (1)");                       /* commits after it */
    cr_assert(eq(i64, i64(a, "SELECT count(*) FROM t"), 0), "a still reads its snapshot");
    exec(a, "PRAGMA query_only=0");
    FAILS_WITH(txm_exec(a, "INSERT INTO t VALUES (2)", NULL, 0, NULL), TXM_ESERIALIZATION);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_BUSY_SNAPSHOT));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    cr_assert(txm_err_is_transient(txm_error_last()));
    OK(txm_rollback(ta));
    exec(a, "INSERT INTO t VALUES (2)");
    cr_assert(eq(i64, i64(b, "SELECT count(*) FROM t"), 2));
    txm_close(a);
    txm_close(b);
}

/* ---- transactions ------------------------------------------------------------------------ */

Test(sqlite_tx, engine_side_rollback_is_flagged_tx_lost)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_tx *t;
    exec(c, "CREATE TABLE t(a UNIQUE)");
    exec(c, "INSERT INTO t VALUES (1)");
    t = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (2)");
    FAILS_WITH(txm_exec(c, "INSERT OR ROLLBACK INTO t VALUES (1)", NULL, 0, NULL), TXM_EUNIQUE);
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    expect_str(txm_error_last()->table_name, "t", "table");
    FAILS_WITH(txm_exec(c, "INSERT INTO t VALUES (3)", NULL, 0, NULL), TXM_ETX_ABORTED);
    OK(txm_rollback(t));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 1), "row 2 went with the engine's rollback");
    t = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (4)");
    OK(txm_commit(t));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 2));
    txm_close(c);
}

Test(sqlite_tx, raise_rollback_in_trigger_poisons_every_level)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_tx *outer, *inner;
    exec(c, "CREATE TABLE t(x)");
    exec(c, "CREATE TRIGGER no_neg BEFORE INSERT ON t WHEN NEW.x < 0 BEGIN SELECT RAISE(ROLLBACK, 'x is negative'); END");
    outer = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (1)");
    inner = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (2)");
    FAILS_WITH(txm_exec(c, "INSERT INTO t VALUES (-1)", NULL, 0, NULL), TXM_ERROR);
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    cr_assert(eq(int, txm_error_last()->native_code, SQLITE_CONSTRAINT_TRIGGER));
    MSG_HAS("x is negative");
    FAILS_WITH(txm_commit(inner), TXM_ETX_ABORTED);
    FAILS_WITH(txm_commit(outer), TXM_ETX_ABORTED);
    cr_assert(eq(int, txm_depth(c), 0));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 0));
    txm_close(c);
}

Test(sqlite_tx, read_only_level_rejects_writes_and_restores_query_only)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_tx *t;
    exec(c, "CREATE TABLE t(x)");

    t = begin(c, TXM_TX_READ_ONLY);
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 0));
    cr_assert(eq(i64, i64(c, "PRAGMA query_only"), 1));
    FAILS_WITH(txm_exec(c, "INSERT INTO t VALUES (1)", NULL, 0, NULL), TXM_EREAD_ONLY);
    cr_assert(eq(int, txm_error_last()->native_code & 0xff, SQLITE_READONLY));
    OK(txm_rollback(t));
    cr_assert(eq(i64, i64(c, "PRAGMA query_only"), 0), "restored after ROLLBACK");
    exec(c, "INSERT INTO t VALUES (1)");

    t = begin(c, TXM_TX_READ_ONLY);
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 1));
    OK(txm_commit(t));
    cr_assert(eq(i64, i64(c, "PRAGMA query_only"), 0), "restored after COMMIT");

    /* A failed write poisons the level; committing it rolls back, and query_only is restored. */
    t = begin(c, TXM_TX_READ_ONLY);
    FAILS_WITH(txm_exec(c, "DELETE FROM t", NULL, 0, NULL), TXM_EREAD_ONLY);
    FAILS_WITH(txm_commit(t), TXM_ETX_ABORTED);
    cr_assert(eq(i64, i64(c, "PRAGMA query_only"), 0));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 1));
    txm_close(c);
}

Test(sqlite_tx, read_only_level_keeps_the_sessions_own_query_only)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_tx *t;
    exec(c, "CREATE TABLE t(x)");
    exec(c, "PRAGMA query_only=1");
    t = begin(c, TXM_TX_READ_ONLY);
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 0));
    OK(txm_commit(t));
    cr_assert(eq(i64, i64(c, "PRAGMA query_only"), 1), "the session had set query_only=1 itself");
    FAILS_WITH(txm_exec(c, "INSERT INTO t VALUES (1)", NULL, 0, NULL), TXM_EREAD_ONLY);
    txm_close(c);
}

Test(sqlite_tx, every_isolation_level_is_accepted)
{
    static const txm_isolation levels[] = {TXM_ISOLATION_DEFAULT, TXM_ISOLATION_READ_UNCOMMITTED,
                                           TXM_ISOLATION_READ_COMMITTED, TXM_ISOLATION_REPEATABLE_READ,
                                           TXM_ISOLATION_SERIALIZABLE};
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    size_t i;
    exec(c, "CREATE TABLE t(x)");
    for (i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        txm_tx_options o = TXM_TX_OPTIONS_INIT;
        txm_tx *t;
        o.isolation = levels[i];
        OK(txm_begin(&t, c, &o));
        exec(c, "INSERT INTO t VALUES (1)");
        OK(txm_commit(t));
    }
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 5));
    txm_close(c);
}

Test(sqlite_tx, transaction_costs_two_runs_and_nested_levels_no_extra)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_stats s;
    txm_tx *t, *n;
    exec(c, "CREATE TABLE t(x)");
    txm_stats_reset(c);
    t = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (1)"); /* BEGIN IMMEDIATE travels with it */
    n = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (2)"); /* SAVEPOINT travels with it */
    OK(txm_commit(n));                   /* RELEASE made redundant by COMMIT */
    OK(txm_commit(t));
    txm_stats_get(c, &s);
    cr_assert(eq(u64, s.round_trips, 3));
    cr_assert(eq(u64, s.begins, 1));
    cr_assert(eq(u64, s.savepoints, 1));
    cr_assert(eq(u64, s.releases, 0));
    cr_assert(eq(u64, s.commits, 1));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 2));
    txm_close(c);
}

Test(sqlite_tx, savepoint_rollback_keeps_the_outer_work)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_tx *t, *n;
    exec(c, "CREATE TABLE t(x UNIQUE)");
    t = begin(c, 0);
    exec(c, "INSERT INTO t VALUES (1)");
    n = begin(c, 0);
    FAILS_WITH(txm_exec(c, "INSERT INTO t VALUES (1)", NULL, 0, NULL), TXM_EUNIQUE);
    cr_assert(eq(int, txm_error_last()->flags & TXM_ERRF_TX_LOST, 0));
    OK(txm_rollback(n));
    exec(c, "INSERT INTO t VALUES (2)");
    OK(txm_commit(t));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 2));
    txm_close(c);
}

Test(sqlite_tx, deep_savepoint_levels_work_past_the_prepared_slots)
{
    /* The driver keeps prepared SAVEPOINT/RELEASE/ROLLBACK TO statements for the first 16 levels
     * and prepares deeper ones each time. */
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_tx *t[20];
    int i;
    exec(c, "CREATE TABLE t(level INTEGER)");
    for (i = 0; i < 20; i++) {
        txm_value v = txm_int(i);
        t[i] = begin(c, 0);
        OK(txm_exec(c, "INSERT INTO t VALUES (?)", &v, 1, NULL));
    }
    for (i = 19; i >= 14; i--)
        OK(txm_rollback(t[i]));
    cr_assert(eq(i64, i64(c, "SELECT max(level) FROM t"), 13));
    for (i = 13; i >= 0; i--)
        OK(txm_commit(t[i]));
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 14));
    txm_close(c);
}

/* ---- cancel ------------------------------------------------------------------------------ */

typedef struct cancel_job {
    txm_conn *c;
    const char *sql;
    bool in_tx;
    int rc;
    int native;
    unsigned flags;
    atomic_int ready; /* the long statement is about to start */
    atomic_int done;
} cancel_job;

static void *cancel_worker(void *arg)
{
    cancel_job *j = arg;
    txm_tx *t = NULL;
    if (j->in_tx) {
        txm_begin(&t, j->c, NULL);
        txm_exec(j->c, "INSERT INTO t VALUES (1)", NULL, 0, NULL);
    }
    atomic_store(&j->ready, 1);
    j->rc = txm_exec(j->c, j->sql, NULL, 0, NULL);
    j->native = txm_error_last()->native_code;
    j->flags = txm_error_last()->flags;
    if (t)
        txm_rollback(t);
    atomic_store(&j->done, 1);
    return NULL;
}

static void run_cancel(cancel_job *j)
{
    pthread_t th;
    struct timespec ms = {0, 1000000};
    cr_assert(eq(int, pthread_create(&th, NULL, cancel_worker, j), 0));
    while (!atomic_load(&j->ready))
        nanosleep(&ms, NULL);
    /* Keep cancelling until the statement ends: a cancel before it starts is a no-op. */
    while (!atomic_load(&j->done)) {
        OK(txm_cancel(j->c));
        nanosleep(&ms, NULL);
    }
    pthread_join(th, NULL);
}

Test(sqlite_tx, cancel_interrupts_a_running_query)
{
    cancel_job j = {0};
    j.c = open_fmt(NULL, "sqlite::memory:");
    j.sql = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r";
    run_cancel(&j);
    cr_assert(eq(int, j.rc, TXM_ECANCELED), "got %s", txm_err_name(j.rc));
    cr_assert(eq(int, j.native, SQLITE_INTERRUPT));
    cr_assert(eq(i64, i64(j.c, "SELECT 7"), 7), "the connection works after a cancel");
    txm_close(j.c);
}

Test(sqlite_tx, cancelled_write_in_a_transaction_is_tx_lost)
{
    cancel_job j = {0};
    j.c = open_fmt(NULL, "sqlite:%s/c.db", dir);
    exec(j.c, "CREATE TABLE t(x)");
    j.in_tx = true;
    j.sql = "INSERT INTO t WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT i FROM r";
    run_cancel(&j);
    cr_assert(eq(int, j.rc, TXM_ECANCELED), "got %s", txm_err_name(j.rc));
    cr_assert(j.flags & TXM_ERRF_TX_LOST, "SQLite rolls back a transaction whose write was interrupted");
    cr_assert(eq(int, txm_depth(j.c), 0));
    cr_assert(eq(i64, i64(j.c, "SELECT count(*) FROM t"), 0));
    txm_close(j.c);
}

/* ---- statement cache --------------------------------------------------------------------- */

static void count_misses(txm_log_level level, const char *message, void *payload)
{
    (void)level;
    if (strstr(message, "cache miss"))
        ++*(int *)payload;
}

Test(sqlite_cache, more_distinct_texts_than_slots_stay_correct)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:?cache=4");
    char sql[64];
    int round, k;
    for (round = 0; round < 3; round++) {
        for (k = 0; k < 40; k++) {
            int64_t v = 0;
            txm_value p = txm_int(round * 1000);
            snprintf(sql, sizeof sql, "SELECT ? + %d", k);
            OK(txm_query_i64(c, &v, sql, &p, 1));
            cr_assert(eq(i64, v, round * 1000 + k), "%s", sql);
            OK(txm_query_i64(c, &v, "SELECT ? * 2", &p, 1)); /* a hot statement in between */
            cr_assert(eq(i64, v, round * 2000));
        }
    }
    txm_close(c);
}

Test(sqlite_cache, hits_reuse_and_lru_evicts)
{
    txm_open_options o = TXM_OPEN_OPTIONS_INIT;
    int misses = 0, i, round;
    char sql[32];
    txm_conn *c;
    o.log = count_misses;
    o.log_payload = &misses;
    o.log_level = TXM_LOG_DEBUG;
    c = open_fmt(&o, "sqlite::memory:?cache=4");
    for (i = 0; i < 5; i++)
        cr_assert(eq(i64, i64(c, "SELECT 1 AS one"), 1));
    cr_assert(eq(int, misses, 1), "the same text is prepared once");

    misses = 0;
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 5; i++) {
            snprintf(sql, sizeof sql, "SELECT %d", i);
            cr_assert(eq(i64, i64(c, sql), i));
        }
    }
    cr_assert(eq(int, misses, 10), "5 texts cycling through 4 slots always miss (LRU)");

    misses = 0;
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 4; i++) {
            snprintf(sql, sizeof sql, "SELECT %d + 100", i);
            cr_assert(eq(i64, i64(c, sql), i + 100));
        }
    }
    cr_assert(eq(int, misses, 4), "4 texts fit in 4 slots");
    txm_close(c);

    misses = 0;
    c = open_fmt(&o, "sqlite::memory:?cache=0");
    for (i = 0; i < 3; i++)
        cr_assert(eq(i64, i64(c, "SELECT 1"), 1));
    cr_assert(eq(int, misses, 3), "cache=0 prepares every time");
    txm_close(c);
}

Test(sqlite_cache, cached_statements_follow_schema_changes)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_rows *r;
    exec(c, "CREATE TABLE t(a)");
    exec(c, "INSERT INTO t VALUES (1)");
    OK(txm_query(&r, c, "SELECT * FROM t", NULL, 0));
    cr_assert(eq(sz, txm_rows_columns(r), 1));
    txm_rows_free(r);
    exec(c, "ALTER TABLE t ADD COLUMN b DEFAULT 5");
    OK(txm_query(&r, c, "SELECT * FROM t", NULL, 0));
    cr_assert(eq(sz, txm_rows_columns(r), 2));
    cr_assert(txm_rows_next(r));
    cr_assert(eq(i64, txm_rows_get_i64(r, 1), 5));
    txm_rows_free(r);
    /* A cached statement does not keep its table busy. */
    exec(c, "DROP TABLE t");
    FAILS_WITH(txm_exec(c, "SELECT * FROM t", NULL, 0, NULL), TXM_ESYNTAX);
    txm_close(c);
}

/* ---- values ------------------------------------------------------------------------------ */

Test(sqlite_values, every_type_round_trips)
{
    static const unsigned char bytes[] = {0, 1, 2, 0, 255};
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_value in[] = {
        txm_int(INT64_MIN), txm_int(INT64_MAX), txm_real(0.1),       txm_real(-1e300),
        txm_textn("a\0b", 3), txm_text(""),     txm_blob(bytes, sizeof bytes), txm_blob(NULL, 0),
        txm_null(),         txm_text("héllo"),
    };
    size_t i, n = sizeof in / sizeof in[0], len;
    txm_rows *r;
    const char *p;
    exec(c, "CREATE TABLE v(k INTEGER PRIMARY KEY, x)");
    for (i = 0; i < n; i++) {
        txm_value row[2] = {txm_int((int64_t)i), in[i]};
        OK(txm_exec(c, "INSERT INTO v VALUES (?, ?)", row, 2, NULL));
    }
    OK(txm_query(&r, c, "SELECT x, typeof(x) FROM v ORDER BY k", NULL, 0));
    cr_assert(eq(sz, txm_rows_count(r), n));
    for (i = 0; i < n; i++) {
        cr_assert(txm_rows_next(r));
        cr_assert(eq(int, (int)txm_rows_type(r, 0), (int)in[i].type), "row %zu: type %s", i,
                  txm_rows_get_text(r, 1, NULL));
        switch (in[i].type) {
        case TXM_T_INT:
            cr_assert(eq(i64, txm_rows_get_i64(r, 0), in[i].u.i));
            break;
        case TXM_T_REAL:
            cr_assert(txm_rows_get_double(r, 0) == in[i].u.d, "row %zu: %.17g", i, txm_rows_get_double(r, 0));
            break;
        case TXM_T_TEXT:
        case TXM_T_BLOB:
            p = txm_rows_get_text(r, 0, &len);
            cr_assert(p != NULL);
            cr_assert(eq(sz, len, in[i].u.buf.len), "row %zu", i);
            cr_assert(len == 0 || memcmp(p, in[i].u.buf.ptr, len) == 0, "row %zu bytes", i);
            break;
        case TXM_T_NULL:
            cr_assert(txm_rows_is_null(r, 0));
            break;
        }
    }
    cr_assert(txm_rows_next(r) == 0, "exactly n rows");
    txm_rows_free(r);
    /* The empty text and blob are stored as such, not as NULL. */
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM v WHERE x IS NULL"), 1));
    txm_close(c);
}

Test(sqlite_values, affected_counts_only_for_dml)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    int64_t n = 99;
    txm_rows *r;
    OK(txm_exec(c, "CREATE TABLE t(x)", NULL, 0, &n));
    cr_assert(eq(i64, n, -1));
    OK(txm_exec(c, "INSERT INTO t VALUES (1), (2), (3)", NULL, 0, &n));
    cr_assert(eq(i64, n, 3));
    OK(txm_exec(c, "UPDATE t SET x = x WHERE x > 100", NULL, 0, &n));
    cr_assert(eq(i64, n, 0));
    OK(txm_exec(c, "CREATE TABLE u(y)", NULL, 0, &n));
    cr_assert(eq(i64, n, -1), "DDL must not report the previous DML's count");
    OK(txm_exec(c, "SELECT * FROM t", NULL, 0, &n));
    cr_assert(eq(i64, n, -1));
    OK(txm_exec(c, "WITH s(v) AS (SELECT x * 10 FROM t) INSERT INTO u SELECT v FROM s", NULL, 0, &n));
    cr_assert(eq(i64, n, 3));
    OK(txm_exec(c, "DELETE FROM t WHERE x >= 2", NULL, 0, &n));
    cr_assert(eq(i64, n, 2));
    OK(txm_query(&r, c, "INSERT INTO t VALUES (7) RETURNING x + 1", NULL, 0));
    cr_assert(txm_rows_next(r));
    cr_assert(eq(i64, txm_rows_get_i64(r, 0), 8));
    txm_rows_free(r);
    cr_assert(eq(i64, i64(c, "SELECT count(*) FROM t"), 2));
    txm_close(c);
}

Test(sqlite_values, parameter_count_mismatch_is_einvalid)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_value p = txm_int(1);
    /* Named SQLite parameters are invisible to txm's '?' counter; the driver still notices. */
    FAILS_WITH(txm_exec(c, "SELECT :a", &p, 0, NULL), TXM_EINVALID);
    MSG_HAS("parameters");
    txm_close(c);
}

Test(sqlite_values, column_names_reach_the_rows)
{
    txm_conn *c = open_fmt(NULL, "sqlite::memory:");
    txm_rows *r;
    OK(txm_query(&r, c, "SELECT 1 AS one, 'x' AS ex WHERE 0", NULL, 0));
    cr_assert(eq(sz, txm_rows_count(r), 0));
    cr_assert(eq(sz, txm_rows_columns(r), 2));
    expect_str(txm_rows_column_name(r, 1), "ex", "column name");
    txm_rows_free(r);
    txm_close(c);
}
