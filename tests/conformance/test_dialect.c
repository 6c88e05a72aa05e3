/* Dialect facts for SQL built at run time: txm_quote_ident (hostile names quoted or refused, and a
 * quoted name really names that table) and txm_sql_row_lock (the clause works in a real SELECT and,
 * on servers, really locks the row against a second connection). */
#include "harness.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static char quote_char(void) { return conf_is("mysql") ? '`' : '"'; }

/* The expected quoting, computed independently of txm. */
static void expect_quoted(char *buf, size_t size, const char *name)
{
    char q = quote_char();
    size_t o = 0;
    buf[o++] = q;
    for (const char *p = name; *p; p++) {
        cr_assert(o + 3 < size);
        if (*p == q)
            buf[o++] = q;
        buf[o++] = *p;
    }
    buf[o++] = q;
    buf[o] = '\0';
}

Test(dialect, quote_ident_quotes_hostile_names, .init = conf_init, .fini = conf_fini)
{
    char n63[64], n64[65];
    memset(n63, 'a', 63);
    n63[63] = '\0';
    memset(n64, 'b', 64);
    n64[64] = '\0';
    const char *ok[] = {"plain", "a\"b", "a`b", "x\"; DROP TABLE t; --", "\"\"\"", "``", "café", "日本", "a b", n63};
    for (size_t i = 0; i < NELEM(ok); i++) {
        char buf[2 * 64 + 3], want[2 * 64 + 3];
        CONF_OK(txm_quote_ident(conf.c, buf, sizeof buf, ok[i]));
        expect_quoted(want, sizeof want, ok[i]);
        cr_assert_str_eq(buf, want, "name #%zu", i);
        /* The documented size bound always suffices, and one byte less than needed is refused. */
        size_t need = strlen(want) + 1;
        char *exact = malloc(need);
        CONF_OK(txm_quote_ident(conf.c, exact, need, ok[i]));
        cr_assert_str_eq(exact, want);
        CONF_RC(TXM_EINVALID, txm_quote_ident(conf.c, exact, need - 1, ok[i]));
        cr_assert(exact[0] == '\0', "nothing but \"\" is written on failure");
        free(exact);
    }
    const char *bad[] = {"", n64, "tab\there", "nl\n", "del\x7f", "\x01", "\xff", "\xc3", "\xc0\xaf",
                         "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80" /* > U+10FFFF */};
    for (size_t i = 0; i < NELEM(bad); i++) {
        char buf[256];
        memcpy(buf, "junk", 5);
        CONF_RC(TXM_EINVALID, txm_quote_ident(conf.c, buf, sizeof buf, bad[i]));
        cr_assert(buf[0] == '\0', "bad name #%zu: nothing but \"\" is written", i);
        cr_assert(conf_contains(txm_error_last()->message, "txm_quote_ident"));
    }
    char buf[16];
    CONF_RC(TXM_EINVALID, txm_quote_ident(conf.c, buf, sizeof buf, NULL));
    CONF_RC(TXM_EINVALID, txm_quote_ident(conf.c, NULL, 16, "x"));
    CONF_RC(TXM_EINVALID, txm_quote_ident(NULL, buf, sizeof buf, "x"));
    CONF_RC(TXM_EINVALID, txm_quote_ident(conf.c, buf, 0, "x"));
}

/* The catalog's view: does a table with exactly this name exist? */
static int64_t table_exists(const char *name)
{
    const char *sql = conf_is("postgresql") ? "SELECT COUNT(*) FROM pg_class WHERE relname = ? AND relkind = 'r'"
                      : conf_is("mysql")
                          ? "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND "
                            "BINARY table_name = BINARY ?"
                          : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?";
    txm_value p = txm_text(name);
    int64_t n = -1;
    CONF_OK(txm_query_i64(conf.c, &n, sql, &p, 1));
    return n;
}

Test(dialect, quoted_hostile_name_creates_that_exact_table, .init = conf_init, .fini = conf_fini)
{
    const char *names[] = {"a\"b", "a`b", "x\"; DROP TABLE t_item; --", "Mixed Case ?"};
    for (size_t i = 0; i < NELEM(names); i++) {
        char q[160], sql[400];
        CONF_OK(txm_quote_ident(conf.c, q, sizeof q, names[i]));
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", q);
        conf_exec(conf.c, sql);
        snprintf(sql, sizeof sql, "CREATE TABLE %s (id INTEGER PRIMARY KEY, v VARCHAR(20))", q);
        conf_exec(conf.c, sql);
        cr_assert(table_exists(names[i]) == 1, "the catalog has no table named exactly '%s'", names[i]);
        snprintf(sql, sizeof sql, "INSERT INTO %s (id, v) VALUES (?, ?)", q);
        txm_value p[2] = {txm_int(1), txm_text("row")};
        CONF_OK(txm_exec(conf.c, sql, p, 2, NULL));
        char cnt[200];
        snprintf(cnt, sizeof cnt, "%s", q);
        cr_assert(conf_count(conf.c, cnt) == 1);
        snprintf(sql, sizeof sql, "DROP TABLE %s", q);
        conf_exec(conf.c, sql);
        cr_assert(table_exists(names[i]) == 0);
    }
    cr_assert(conf_count(conf.c, "t_item") == 0, "t_item still exists (count works)");
}

Test(dialect, row_lock_clause_per_engine, .init = conf_init, .fini = conf_fini)
{
    const char *x = txm_sql_row_lock(conf.c, TXM_ROW_LOCK_UPDATE), *s = txm_sql_row_lock(conf.c, TXM_ROW_LOCK_SHARE);
    if (conf_is("postgresql")) {
        cr_assert_str_eq(x, " FOR UPDATE");
        cr_assert_str_eq(s, " FOR SHARE");
    } else if (conf_is("mysql")) {
        cr_assert_str_eq(x, " FOR UPDATE");
        cr_assert_str_eq(s, " LOCK IN SHARE MODE");
    } else if (conf_is("sqlite")) {
        cr_assert_str_eq(x, "");
        cr_assert_str_eq(s, "");
    }
    cr_assert_str_eq(txm_sql_row_lock(NULL, TXM_ROW_LOCK_UPDATE), "");
    /* Both clauses are valid SQL in a real SELECT inside a transaction. */
    for (int m = 0; m < 2; m++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT n FROM t_counter WHERE id = 1%s", m ? s : x);
        txm_tx *t = conf_begin(conf.c);
        cr_assert(conf_i64(conf.c, sql) == 100);
        CONF_OK(txm_commit(t));
    }
}

/* A row read with the exclusive clause stays locked until the transaction ends: a second
 * connection's locking read of it times out (its lock timeout is short), then succeeds. */
Test(dialect, row_lock_excludes_second_connection, .init = conf_init_shared, .fini = conf_fini, .timeout = 60)
{
    if (conf_is_embedded())
        CONF_SKIP("%s: no row locks (txm_sql_row_lock is \"\"): a write transaction holds the database lock",
                  conf.driver);
    char xsql[200], ssql[200];
    snprintf(xsql, sizeof xsql, "SELECT n FROM t_counter WHERE id = 1%s", txm_sql_row_lock(conf.c, TXM_ROW_LOCK_UPDATE));
    snprintf(ssql, sizeof ssql, "SELECT n FROM t_counter WHERE id = 1%s", txm_sql_row_lock(conf.c, TXM_ROW_LOCK_SHARE));
    txm_conn *b = conf_open_short_wait();
    int64_t v = 0;

    txm_tx *ta = conf_begin(conf.c);
    cr_assert(conf_i64(conf.c, xsql) == 100);
    for (int m = 0; m < 2; m++) { /* exclusive and shared reads both wait for an exclusive lock */
        txm_tx *tb = conf_begin(b);
        CONF_RC(TXM_ELOCK_TIMEOUT, txm_query_i64(b, &v, m ? ssql : xsql, NULL, 0));
        CONF_OK(txm_rollback(tb));
    }
    /* Another row is not locked. */
    char other[200];
    snprintf(other, sizeof other, "SELECT n FROM t_counter WHERE id = 2%s", txm_sql_row_lock(b, TXM_ROW_LOCK_UPDATE));
    txm_tx *tb = conf_begin(b);
    CONF_OK(txm_query_i64(b, &v, other, NULL, 0));
    CONF_OK(txm_rollback(tb));
    CONF_OK(txm_commit(ta));
    tb = conf_begin(b);
    CONF_OK(txm_query_i64(b, &v, xsql, NULL, 0)); /* released by the commit */
    cr_assert(v == 100);
    CONF_OK(txm_commit(tb));

    /* Shared locks: two readers share, a writer waits. */
    ta = conf_begin(conf.c);
    cr_assert(conf_i64(conf.c, ssql) == 100);
    tb = conf_begin(b);
    CONF_OK(txm_query_i64(b, &v, ssql, NULL, 0));
    CONF_OK(txm_rollback(tb));
    tb = conf_begin(b);
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_query_i64(b, &v, xsql, NULL, 0));
    CONF_OK(txm_rollback(tb));
    CONF_OK(txm_commit(ta));
    txm_close(b);
}
