/* Error classification (docs/design.md "Error table", docs/errors.md): every category the engine can
 * produce, with the engine's own codes and the names it gives (constraint on PostgreSQL and MySQL/MariaDB,
 * table.column on SQLite). Classification is by code, never by message text; messages must still name the
 * problem. */
#include <strings.h>

#include "harness.h"

/* Asserts that no clause of a message says the same thing twice ("database is locked; gave up
 * after ... (database is locked)"): a driver that adds its own words to the engine's text must not
 * repeat it. Clauses are the pieces between ';', ':', '(' and ')', trimmed; short ones
 * (a number, "id") may repeat. */
static void assert_no_repeated_clause(const char *what, const char *msg)
{
    enum { MAXC = 32, MINLEN = 8 };
    const char *start[MAXC];
    size_t len[MAXC], n = 0;
    const char *p = msg;
    while (*p && n < MAXC) {
        size_t k = strcspn(p, ";:()");
        const char *b = p, *e = p + k;
        while (b < e && *b == ' ')
            b++;
        while (e > b && e[-1] == ' ')
            e--;
        if ((size_t)(e - b) >= MINLEN) {
            for (size_t i = 0; i < n; i++)
                cr_assert(!(len[i] == (size_t)(e - b) && strncasecmp(start[i], b, len[i]) == 0),
                          "%s: the message says \"%.*s\" twice: %s", what, (int)len[i], start[i], msg);
            start[n] = b;
            len[n++] = (size_t)(e - b);
        }
        p += k + (p[k] != '\0');
    }
}

/* Checks rc, txm_error_last() and txm_err_name for an expected category. */
#define EXPECT_ERR(want, expr) expect_err_((want), #want, (expr), #expr)
static conf_err expect_err_(int want, const char *want_name, int rc, const char *what)
{
    cr_assert(rc == want, "%s: expected %s, got %s (%s)", what, want_name, txm_err_name(rc),
              rc ? txm_error_last()->message : "no error");
    conf_err e = conf_last_err();
    cr_assert(e.code == want, "txm_error_last()->code is %s, the call returned %s", e.name, want_name);
    cr_assert_str_eq(txm_err_name(rc), want_name, "txm_err_name(%d)", rc);
    cr_assert(e.message[0] != '\0', "%s: empty message", what);
    assert_no_repeated_clause(what, e.message);
    fprintf(stderr, "[%s] %s: %s sqlstate=%s native=%d constraint=%s table=%s column=%s | %s\n", conf.driver,
            what, e.name, e.sqlstate, e.native_code, e.constraint_name, e.table_name, e.column_name, e.message);
    return e;
}

/* Engine codes: PostgreSQL SQLSTATE, MySQL/MariaDB errno, SQLite extended result code (0/NULL: any). */
static void expect_engine(const conf_err *e, const char *pg_state, int my_errno, int sqlite_code)
{
    if (conf_is("postgresql") && pg_state)
        cr_assert_str_eq(e->sqlstate, pg_state, "PostgreSQL SQLSTATE");
    if (conf_is("mysql") && my_errno)
        cr_assert(e->native_code == my_errno, "MySQL errno %d, expected %d", e->native_code, my_errno);
    if (conf_is("sqlite") && sqlite_code)
        cr_assert(e->native_code == sqlite_code, "SQLite extended code %d, expected %d", e->native_code, sqlite_code);
}

/* SQLite extended result codes (sqlite3.h) */
enum {
    SQ_ERROR = 1,
    SQ_BUSY = 5,
    SQ_READONLY = 8,
    SQ_CONSTRAINT_CHECK = 275,
    SQ_CONSTRAINT_FOREIGNKEY = 787,
    SQ_CONSTRAINT_NOTNULL = 1299,
    SQ_CONSTRAINT_PRIMARYKEY = 1555,
    SQ_CONSTRAINT_UNIQUE = 2067,
};

Test(errors, unique, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    conf_err e = EXPECT_ERR(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    expect_engine(&e, "23505", 1062, SQ_CONSTRAINT_UNIQUE);
    conf_assert_unique_names(e.constraint_name, e.table_name, e.column_name);
    if (conf_is("postgresql"))
        cr_assert_str_eq(e.table_name, "t_uniq");
    if (conf_is("sqlite"))
        cr_assert(conf_contains(e.message, "t_uniq.code"), "message must name the column: %s", e.message);
    else if (conf_is("postgresql") || conf_is("mysql"))
        cr_assert(conf_contains(e.message, "uq_t_uniq_code"), "message must name the constraint: %s", e.message);
    else
        cr_assert(conf_contains(e.message, "uq_t_uniq_code") || conf_contains(e.message, "t_uniq"),
                  "message must name the constraint or the table: %s", e.message);
    cr_assert(txm_err_is_constraint(e.code));
}

Test(errors, primary_key_is_unique, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_item(conf.c, 1));
    conf_err e = EXPECT_ERR(TXM_EUNIQUE, conf_item(conf.c, 1));
    expect_engine(&e, "23505", 1062, SQ_CONSTRAINT_PRIMARYKEY);
    if (conf_is("postgresql"))
        cr_assert_str_eq(e.constraint_name, "t_item_pkey");
    if (conf_is("mysql"))
        cr_assert_str_eq(e.constraint_name, "PRIMARY");
    if (conf_is("sqlite")) {
        cr_assert_str_eq(e.table_name, "t_item");
        cr_assert_str_eq(e.column_name, "id");
    }
}

Test(errors, foreign_key_child_without_parent, .init = conf_init_all, .fini = conf_fini)
{
    conf_err e = EXPECT_ERR(TXM_EFOREIGN_KEY,
                            txm_exec(conf.c, "INSERT INTO t_child (id, parent_id) VALUES (1, 999)", NULL, 0, NULL));
    expect_engine(&e, "23503", 1452, SQ_CONSTRAINT_FOREIGNKEY);
    if (conf_is("postgresql") || conf_is("mysql"))
        cr_assert_str_eq(e.constraint_name, "fk_t_child_parent");
    if (conf_is("postgresql"))
        cr_assert_str_eq(e.table_name, "t_child");
    cr_assert(conf_count(conf.c, "t_child") == 0);
}

Test(errors, foreign_key_parent_still_referenced, .init = conf_init_all, .fini = conf_fini)
{
    conf_exec(conf.c, "INSERT INTO t_parent (id, name) VALUES (1, 'p')");
    conf_exec(conf.c, "INSERT INTO t_child (id, parent_id) VALUES (1, 1)");
    conf_err e = EXPECT_ERR(TXM_EFOREIGN_KEY, txm_exec(conf.c, "DELETE FROM t_parent WHERE id = 1", NULL, 0, NULL));
    expect_engine(&e, "23503", 1451, SQ_CONSTRAINT_FOREIGNKEY);
    if (conf_is("postgresql") || conf_is("mysql"))
        cr_assert_str_eq(e.constraint_name, "fk_t_child_parent");
    if (conf_is("postgresql"))
        cr_assert_str_eq(e.table_name, "t_child", "for a referenced parent the table is the child's");
    cr_assert(conf_count(conf.c, "t_parent") == 1);
}

Test(errors, not_null, .init = conf_init, .fini = conf_fini)
{
    conf_err e = EXPECT_ERR(TXM_ENOT_NULL, conf_uniq(conf.c, 1, NULL));
    expect_engine(&e, "23502", 1048, SQ_CONSTRAINT_NOTNULL);
    if (conf_is("postgresql") || conf_is("sqlite")) {
        cr_assert_str_eq(e.column_name, "code");
        cr_assert_str_eq(e.table_name, "t_uniq");
    }
    if (e.column_name[0])
        cr_assert_str_eq(e.column_name, "code");
    cr_assert(conf_contains(e.message, "code"), "message must name the column: %s", e.message);
}

Test(errors, check, .init = conf_init_all, .fini = conf_fini)
{
    conf_err e = EXPECT_ERR(TXM_ECHECK, txm_exec(conf.c, "INSERT INTO t_check (id, qty) VALUES (1, -1)", NULL, 0, NULL));
    expect_engine(&e, "23514", 0, SQ_CONSTRAINT_CHECK);
    if (conf_is("mysql"))
        cr_assert(e.native_code == 4025 || e.native_code == 3819, "MySQL/MariaDB errno %d, expected 4025 or 3819",
                  e.native_code);
    if (conf_is("postgresql") || conf_is("mysql"))
        cr_assert_str_eq(e.constraint_name, "ck_t_check_qty");
    else if (e.constraint_name[0])
        cr_assert_str_eq(e.constraint_name, "ck_t_check_qty");
    cr_assert(conf_contains(e.message, "ck_t_check_qty"), "message must name the constraint: %s", e.message);
}

Test(errors, syntax, .init = conf_init, .fini = conf_fini)
{
    conf_err e = EXPECT_ERR(TXM_ESYNTAX, txm_exec(conf.c, "SELEC 1", NULL, 0, NULL));
    expect_engine(&e, "42601", 1064, SQ_ERROR);
    cr_assert(!txm_err_is_constraint(e.code));
}

Test(errors, undefined_table_is_syntax, .init = conf_init, .fini = conf_fini)
{
    conf_err e = EXPECT_ERR(TXM_ESYNTAX, txm_exec(conf.c, "SELECT * FROM t_no_such_table", NULL, 0, NULL));
    expect_engine(&e, "42P01", 1146, SQ_ERROR);
    cr_assert(conf_contains(e.message, "t_no_such_table"), "message must name the table: %s", e.message);
}

Test(errors, lock_timeout, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    txm_conn *blocker = conf_open_other();
    txm_conn *a = conf_open_short_wait();
    txm_tx *held = conf_begin(blocker);
    CONF_OK(txm_exec(blocker, "UPDATE t_counter SET n = n + 1 WHERE id = 1", NULL, 0, NULL));
    conf_err e = EXPECT_ERR(TXM_ELOCK_TIMEOUT,
                            txm_exec(a, "UPDATE t_counter SET n = n + 5 WHERE id = 1", NULL, 0, NULL));
    expect_engine(&e, "55P03", 1205, SQ_BUSY);
    cr_assert(!txm_err_is_transient(txm_error_last()), "a lock timeout is not transient by default");
    CONF_OK(txm_rollback(held));
    /* the lock is gone: the same statement now succeeds */
    CONF_OK(txm_exec(a, "UPDATE t_counter SET n = n + 5 WHERE id = 1", NULL, 0, NULL));
    cr_assert(conf_counter(conf.c, 1) == 105);
    txm_close(a);
    txm_close(blocker);
}

Test(errors, read_only, .init = conf_init_shared, .fini = conf_fini)
{
    if (conf_has_cap(TXM_CAP_READ_ONLY_TX)) {
        txm_tx *t = conf_begin_flags(conf.c, TXM_TX_READ_ONLY);
        conf_err e = EXPECT_ERR(TXM_EREAD_ONLY, conf_item(conf.c, 1));
        expect_engine(&e, "25006", 1792, SQ_READONLY);
        CONF_RC(TXM_ETX_ABORTED, txm_commit(t));
        cr_assert(conf_count(conf.c, "t_item") == 0);
        return;
    }
    if (!conf_is("sqlite"))
        CONF_SKIP("driver lacks TXM_CAP_READ_ONLY_TX: no way to provoke a read-only error portably");
    /* SQLite without read-only transactions: a read-only connection (mode=ro) */
    char url[2200];
    txm_conn *ro = NULL;
    int rc = txm_open(&ro, conf_url_with(url, sizeof url, "mode=ro"), NULL);
    cr_assert(rc == 0, "txm_open(mode=ro): %s: %s", txm_err_name(rc), txm_error_last()->message);
    conf_err e = EXPECT_ERR(TXM_EREAD_ONLY, conf_item(ro, 1));
    cr_assert((e.native_code & 0xff) == SQ_READONLY, "SQLite code %d, expected SQLITE_READONLY", e.native_code);
    cr_assert(conf_count(ro, "t_item") == 0);
    txm_close(ro);
}

Test(errors, data, .init = conf_init_all, .fini = conf_fini)
{
    if (conf_is("sqlite"))
        CONF_SKIP("SQLite is dynamically typed: 'abc' is stored in an INTEGER column, a long text in VARCHAR(100)");
    const char *bad_int = "INSERT INTO t_item (id, n) VALUES (1, 'abc')";
    if (!conf_is("postgresql") && !conf_is("mysql")) {
        /* another driver: skip only if its engine is dynamically typed */
        int rc = txm_exec(conf.c, bad_int, NULL, 0, NULL);
        if (rc == 0)
            CONF_SKIP("%s stored 'abc' in an INTEGER column (dynamic typing): no data error to provoke", conf.driver);
        conf_exec(conf.c, "DELETE FROM t_item");
    }
    conf_err e = EXPECT_ERR(TXM_EDATA, txm_exec(conf.c, bad_int, NULL, 0, NULL));
    expect_engine(&e, "22P02", 1366, 0);
    char longtext[160];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    txm_value q[2] = {txm_int(2), txm_text(longtext)};
    e = EXPECT_ERR(TXM_EDATA, txm_exec(conf.c, "INSERT INTO t_item (id, name) VALUES (?, ?)", q, 2, NULL));
    expect_engine(&e, "22001", 1406, 0);
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

Test(errors, names_and_descriptions_match_codes, .init = conf_init_bare, .fini = conf_fini)
{
#define CHECK_NAME_(name, value, text)                                                             \
    cr_assert_str_eq(txm_err_name(value), "TXM_" #name, "txm_err_name(%d)", value);                 \
    cr_assert_str_eq(txm_strerror(value), text, "txm_strerror(%d)", value);
    TXM_ERRNO_MAP(CHECK_NAME_)
#undef CHECK_NAME_
    cr_assert_str_eq(txm_err_name(TXM_ERRNO_LAST_ - 1), "TXM_E?");
    cr_assert_str_eq(txm_err_name(1), "TXM_E?");
    cr_assert_str_eq(txm_strerror(-1000), "unknown error code");
}

Test(errors, last_error_is_per_thread_and_kept, .init = conf_init, .fini = conf_fini)
{
    CONF_RC(TXM_ESYNTAX, txm_exec(conf.c, "SELEC 1", NULL, 0, NULL));
    CONF_OK(conf_item(conf.c, 1)); /* a successful call does not clear the record */
    cr_assert(txm_error_last()->code == TXM_ESYNTAX, "txm_error_last() changed after a successful call: %s",
              txm_err_name(txm_error_last()->code));
    txm_error_clear();
    cr_assert(txm_error_last()->code == TXM_OK);
}
