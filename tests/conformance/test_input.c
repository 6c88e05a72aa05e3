/* Bad input: NULL arguments, bad URLs and options, placeholder mismatches, transaction control
 * through txm_exec, placeholders in literals, passwords in messages. A refused call changes
 * nothing and sends nothing. */
#include "harness.h"
#include "internal.h" /* txm__url_parse: to build URLs aimed at the configured server */

#define U(x) ((unsigned long long)(x))

static void assert_nothing_sent(const txm_stats *before, const char *what)
{
    txm_stats d = conf_delta(conf.c, before);
    cr_assert(d.round_trips == 0 && d.statements == 0 && d.control == 0,
              "%s sent something: round_trips=%llu statements=%llu control=%llu", what, U(d.round_trips),
              U(d.statements), U(d.control));
}

Test(input, null_arguments_are_invalid, .init = conf_init, .fini = conf_fini)
{
    static char dummy;
    txm_rows *rows = (txm_rows *)(void *)&dummy;
    txm_tx *tx = (txm_tx *)(void *)&dummy;
    int64_t v = 0;
    txm_stats before = conf_stats(conf.c);
    CONF_RC(TXM_EINVALID, txm_exec(NULL, "SELECT 1", NULL, 0, NULL));
    CONF_RC(TXM_EINVALID, txm_exec(conf.c, NULL, NULL, 0, NULL));
    CONF_RC(TXM_EINVALID, txm_exec(conf.c, "SELECT ?", NULL, 1, NULL)); /* n > 0 without params */
    CONF_RC(TXM_EINVALID, txm_query(NULL, conf.c, "SELECT 1", NULL, 0));
    CONF_RC(TXM_EINVALID, txm_query(&rows, NULL, "SELECT 1", NULL, 0));
    cr_assert(rows == NULL, "*out must be NULL on failure");
    rows = (txm_rows *)(void *)&dummy;
    CONF_RC(TXM_EINVALID, txm_query(&rows, conf.c, NULL, NULL, 0));
    cr_assert(rows == NULL);
    CONF_RC(TXM_EINVALID, txm_query_i64(conf.c, NULL, "SELECT 1", NULL, 0));
    CONF_RC(TXM_EINVALID, txm_query_i64(NULL, &v, "SELECT 1", NULL, 0));
    CONF_RC(TXM_EINVALID, txm_begin(NULL, conf.c, NULL));
    CONF_RC(TXM_EINVALID, txm_begin(&tx, NULL, NULL));
    cr_assert(tx == NULL);
    CONF_RC(TXM_EINVALID, txm_commit(NULL));
    CONF_RC(TXM_EINVALID, txm_rollback(NULL));
    CONF_RC(TXM_EINVALID, txm_atomic(conf.c, NULL, NULL, NULL));
    CONF_RC(TXM_EINVALID, txm_open(NULL, conf.url, NULL));
    assert_nothing_sent(&before, "NULL arguments");
    cr_assert(txm_depth(conf.c) == 0);
    /* NULL-safe frees and readers */
    txm_close(NULL);
    txm_rows_free(NULL);
    cr_assert(txm_rows_next(NULL) == 0);
    /* the connection still works */
    CONF_OK(conf_item(conf.c, 1));
}

Test(input, bad_url_is_invalid, .init = conf_init_bare, .fini = conf_fini)
{
    static const char *const bad[] = {"", "no-scheme-here", "://missing-scheme", "sqlite"};
    static char dummy;
    txm_conn *c = (txm_conn *)(void *)&dummy;
    CONF_RC(TXM_EINVALID, txm_open(&c, NULL, NULL));
    cr_assert(c == NULL, "*out must be NULL on failure");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = (txm_conn *)(void *)&dummy;
        int rc = txm_open(&c, bad[i], NULL);
        cr_assert(rc == TXM_EINVALID, "txm_open(\"%s\"): expected TXM_EINVALID, got %s", bad[i], txm_err_name(rc));
        cr_assert(c == NULL);
        cr_assert(txm_error_last()->message[0] != '\0');
    }
}

Test(input, unknown_scheme_is_not_found, .init = conf_init_bare, .fini = conf_fini)
{
    txm_conn *c = NULL;
    CONF_RC(TXM_ENOTFOUND, txm_open(&c, "nosuchdriver://localhost/db", NULL));
    cr_assert(c == NULL);
    cr_assert(conf_contains(txm_error_last()->message, "nosuchdriver"), "message must name the scheme: %s",
              txm_error_last()->message);
}

Test(input, option_versions_checked, .init = conf_init, .fini = conf_fini)
{
    static const unsigned bad_versions[] = {0, 99};
    for (size_t i = 0; i < 2; i++) {
        unsigned v = bad_versions[i];
        txm_open_options oo = TXM_OPEN_OPTIONS_INIT;
        oo.version = v;
        txm_conn *c = NULL;
        int rc = txm_open(&c, conf.url, &oo);
        cr_assert(rc == TXM_EINVALID, "txm_open with options version %u: %s", v, txm_err_name(rc));
        cr_assert(c == NULL);
        CONF_RC(TXM_EINVALID, txm_open_options_init(&oo, v));

        txm_tx_options to = TXM_TX_OPTIONS_INIT;
        to.version = v;
        txm_tx *t = NULL;
        rc = txm_begin(&t, conf.c, &to);
        cr_assert(rc == TXM_EINVALID, "txm_begin with options version %u: %s", v, txm_err_name(rc));
        cr_assert(t == NULL && txm_depth(conf.c) == 0);
        CONF_RC(TXM_EINVALID, txm_tx_options_init(&to, v));
        CONF_RC(TXM_EINVALID, txm_atomic(conf.c, &to, NULL, NULL));
    }
    txm_tx_options to;
    CONF_OK(txm_tx_options_init(&to, TXM_TX_OPTIONS_VERSION));
    cr_assert(to.version == TXM_TX_OPTIONS_VERSION && to.flags == 0 && to.isolation == TXM_ISOLATION_DEFAULT);
    txm_open_options oo;
    CONF_OK(txm_open_options_init(&oo, TXM_OPEN_OPTIONS_VERSION));
    cr_assert(oo.version == TXM_OPEN_OPTIONS_VERSION && oo.log == NULL);
}

Test(input, placeholder_count_mismatch_sends_nothing, .init = conf_init, .fini = conf_fini)
{
    const char *sql = "INSERT INTO t_item (id, name) VALUES (?, ?)";
    txm_value p[3] = {txm_int(1), txm_text("x"), txm_int(3)};
    txm_stats before = conf_stats(conf.c);
    CONF_RC(TXM_EINVALID, txm_exec(conf.c, sql, p, 1, NULL));
    CONF_RC(TXM_EINVALID, txm_exec(conf.c, sql, p, 3, NULL));
    CONF_RC(TXM_EINVALID, txm_exec(conf.c, "SELECT 1", p, 1, NULL));
    assert_nothing_sent(&before, "placeholder mismatch outside a transaction");
    /* inside a fresh transaction: not even the lazy BEGIN goes out */
    txm_tx *t = conf_begin(conf.c);
    before = conf_stats(conf.c);
    CONF_RC(TXM_EINVALID, txm_exec(conf.c, sql, p, 1, NULL));
    static char dummy;
    txm_rows *rows = (txm_rows *)(void *)&dummy;
    CONF_RC(TXM_EINVALID, txm_query(&rows, conf.c, "SELECT id FROM t_item WHERE id = ?", p, 0));
    cr_assert(rows == NULL);
    assert_nothing_sent(&before, "placeholder mismatch in a transaction");
    CONF_OK(txm_rollback(t));
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

Test(input, transaction_control_sql_refused, .init = conf_init, .fini = conf_fini)
{
    static const char *const control[] = {
        "COMMIT",          " begin",         "SAVEPOINT x",      "START TRANSACTION",  "rollback",
        "ROLLBACK TO SAVEPOINT x", "RELEASE SAVEPOINT x", "END", "/* c */ COMMIT", "-- c\nBEGIN",
        "BEGIN TRANSACTION", "\n\tCommit;",
    };
    for (int in_tx = 0; in_tx < 2; in_tx++) {
        txm_tx *t = in_tx ? conf_begin(conf.c) : NULL;
        if (t)
            CONF_OK(conf_item(conf.c, 1));
        txm_stats before = conf_stats(conf.c);
        for (size_t i = 0; i < sizeof control / sizeof control[0]; i++) {
            int rc = txm_exec(conf.c, control[i], NULL, 0, NULL);
            cr_assert(rc == TXM_EMISUSE, "txm_exec(\"%s\")%s: expected TXM_EMISUSE, got %s", control[i],
                      in_tx ? " in a transaction" : "", txm_err_name(rc));
            static char dummy;
            txm_rows *rows = (txm_rows *)(void *)&dummy;
            rc = txm_query(&rows, conf.c, control[i], NULL, 0);
            cr_assert(rc == TXM_EMISUSE && rows == NULL, "txm_query(\"%s\"): %s", control[i], txm_err_name(rc));
        }
        assert_nothing_sent(&before, "transaction control SQL");
        cr_assert(txm_depth(conf.c) == in_tx);
        if (t) {
            CONF_OK(conf_item(conf.c, 2)); /* the level is intact, not poisoned */
            CONF_OK(txm_commit(t));
        }
    }
    cr_assert(conf_count(conf.c, "t_item") == 2);
    /* the words are fine elsewhere */
    CONF_OK(txm_exec(conf.c, "UPDATE t_item SET name = 'COMMIT' WHERE id = 1", NULL, 0, NULL));
    cr_assert(conf_i64(conf.c, "SELECT COUNT(*) AS commits FROM t_item WHERE name = 'COMMIT'") == 1);
}

Test(input, question_mark_in_literals_is_not_a_placeholder, .init = conf_init, .fini = conf_fini)
{
    txm_value id = txm_int(1);
    CONF_OK(txm_exec(conf.c, "INSERT INTO t_item (id, name) VALUES (?, 'what?')", &id, 1, NULL));
    txm_value id2 = txm_int(2);
    CONF_OK(txm_exec(conf.c, "INSERT INTO t_item (id, name) VALUES (?, 'it''s ? here') -- trailing ?", &id2, 1, NULL));
    txm_value id3 = txm_int(3);
    CONF_OK(txm_exec(conf.c, "INSERT INTO t_item /* a ? comment */ (id, name) VALUES (?, '?')", &id3, 1, NULL));
    txm_value one = txm_int(1);
    int64_t n = 0;
    CONF_OK(txm_query_i64(conf.c, &n, "SELECT COUNT(*) FROM t_item WHERE name = 'what?' AND id = ?", &one, 1));
    cr_assert(n == 1);
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT name FROM t_item ORDER BY id", NULL, 0));
    const char *want[] = {"what?", "it's ? here", "?"};
    for (int i = 0; i < 3; i++) {
        cr_assert(txm_rows_next(rows) == 1);
        const char *s = txm_rows_get_text(rows, 0, NULL);
        cr_assert(s && strcmp(s, want[i]) == 0, "row %d: '%s', expected '%s'", i, s ? s : "(null)", want[i]);
    }
    txm_rows_free(rows);
}

typedef struct log_capture {
    char all[16384];
} log_capture;

static void capture_log(txm_log_level level, const char *message, void *payload)
{
    (void)level;
    log_capture *lc = payload;
    size_t used = strlen(lc->all);
    snprintf(lc->all + used, sizeof lc->all - used, "%s\n", message ? message : "");
}

Test(input, password_never_in_messages, .init = conf_init, .fini = conf_fini)
{
    if (conf_is("sqlite"))
        CONF_SKIP("SQLite URLs carry no password");
    txm_url *u = NULL;
    int rc = txm__url_parse(&u, conf.url);
    if (rc != 0 || !u->hierarchical || !u->host[0]) {
        txm__url_free(u);
        CONF_SKIP("the configured URL is not of the form scheme://user@host:port/db");
    }
    char host[256], path[256], scheme[32];
    snprintf(host, sizeof host, "%s", u->host);
    snprintf(path, sizeof path, "%s", u->path);
    snprintf(scheme, sizeof scheme, "%s", u->scheme);
    int port = u->port;
    txm__url_free(u);

    static const char *const secret_raw = "S3cr3t%2FPw-zq9";
    static const char *const secret_dec = "S3cr3t/Pw-zq9";
    char url[1024];
    /* 1. the right server, a user that does not exist (authentication fails) */
    if (port)
        snprintf(url, sizeof url, "%s://txm_nobody:%s@%s:%d/%s", scheme, secret_raw, host, port, path);
    else
        snprintf(url, sizeof url, "%s://txm_nobody:%s@%s/%s", scheme, secret_raw, host, path);
    log_capture lc;
    lc.all[0] = '\0';
    txm_open_options oo = TXM_OPEN_OPTIONS_INIT;
    oo.log = capture_log;
    oo.log_payload = &lc;
    oo.log_level = TXM_LOG_DEBUG;
    txm_conn *c = NULL;
    rc = txm_open(&c, url, &oo);
    const char *msg = txm_error_last()->message;
    fprintf(stderr, "[%s] bad user: %s: %s\n", conf.driver, txm_err_name(rc), msg);
    cr_assert(rc == TXM_EAUTH || rc == TXM_ECONNECTION, "unknown user: expected TXM_EAUTH, got %s", txm_err_name(rc));
    cr_assert(c == NULL);
    cr_assert(!strstr(msg, secret_raw) && !strstr(msg, secret_dec), "the password leaked into: %s", msg);
    cr_assert(msg[0] != '\0');
    /* 2. nothing listens on port 1 (connection refused) */
    snprintf(url, sizeof url, "%s://txm_nobody:%s@127.0.0.1:1/%s", scheme, secret_raw, path);
    rc = txm_open(&c, url, &oo);
    msg = txm_error_last()->message;
    fprintf(stderr, "[%s] refused: %s: %s\n", conf.driver, txm_err_name(rc), msg);
    cr_assert(rc == TXM_ECONNECTION, "refused connection: expected TXM_ECONNECTION, got %s", txm_err_name(rc));
    cr_assert(!strstr(msg, secret_raw) && !strstr(msg, secret_dec), "the password leaked into: %s", msg);
    cr_assert(!strstr(lc.all, secret_raw) && !strstr(lc.all, secret_dec), "the password leaked into the log: %s",
              lc.all);
}

Test(input, dialect_quoting_hides_question_marks, .init = conf_init, .fini = conf_fini)
{
    /* Each driver declares its lexical forms (TXM_DIALECT_*): a '?' inside them is text. */
    const char *sql[4] = {NULL, NULL, NULL, NULL};
    const char *want[4] = {NULL, NULL, NULL, NULL};
    if (conf_is("postgresql")) {
        sql[0] = "SELECT $q$ it's ? $q$ AS v, ? AS p", want[0] = " it's ? ";
        sql[1] = "SELECT $$?$$ AS v, ? AS p", want[1] = "?";
        sql[2] = "SELECT E'it\\'s ?' AS v, ? AS p", want[2] = "it's ?";
        sql[3] = "SELECT 'a' AS \"col?\", ? AS p", want[3] = "a";
    } else if (conf_is("mysql")) {
        sql[0] = "SELECT 'it\\'s ?' AS v, ? AS p", want[0] = "it's ?";
        sql[1] = "SELECT 'a' AS `col?`, ? AS p # trailing ?\n", want[1] = "a";
        sql[2] = "SELECT \"dq ? string\" AS v, ? AS p", want[2] = "dq ? string";
    } else if (conf_is("sqlite")) {
        sql[0] = "SELECT 'a' AS [col?], ? AS p", want[0] = "a";
        sql[1] = "SELECT 'a' AS `col?`, ? AS p", want[1] = "a";
        sql[2] = "SELECT 'a' AS \"col?\", ? AS p", want[2] = "a";
    } else {
        CONF_SKIP("no dialect cases for the %s driver", conf.driver);
    }
    for (int i = 0; i < 4 && sql[i]; i++) {
        txm_value p = txm_int(7);
        txm_rows *rows = NULL;
        int rc = txm_query(&rows, conf.c, sql[i], &p, 1);
        cr_assert(rc == 0, "%s: %s: %s", sql[i], txm_err_name(rc), txm_error_last()->message);
        cr_assert(txm_rows_next(rows) == 1);
        const char *v = txm_rows_get_text(rows, 0, NULL);
        cr_assert(v && strcmp(v, want[i]) == 0, "%s: got '%s', expected '%s'", sql[i], v ? v : "(null)", want[i]);
        cr_assert(txm_rows_get_i64(rows, 1) == 7, "%s: the real placeholder did not bind", sql[i]);
        txm_rows_free(rows);
    }
}
