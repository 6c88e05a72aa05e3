/*
 * Secrets test (issue 7): no password, in any spelling, ever leaves txm.
 *
 * Connections are opened with passwords written in every URL form txm accepts (user:pass@ fully
 * and minimally percent-encoded, query parameters, a percent-encoded key, libpq conninfo after the
 * scheme with quoting, Connector/C forms, opaque user:pass@), with a tricky password that holds
 * '@', '%', '/', '?', '&', '=', '+', quotes, a backslash, ':' ';' ',' '#' and a space. Then every
 * error kind is provoked: wrong password, unreachable port, bad URL, bad option, statement errors
 * whose message, detail and field names echo the password, an aborted transaction's cause, a lost
 * connection (pg_terminate_backend / KILL), a failing txm_reconnect, COMMIT_UNKNOWN and a failing
 * txm_resolve_outcome (PostgreSQL, through tests/pg's cutting proxy), txm_cancel. The log callback
 * runs at TXM_LOG_DEBUG and keeps every line. Each message, detail, constraint/table/column/schema
 * name, cause and log line is checked for every spelling of the password: raw, percent-encoded
 * (fully and minimally), conninfo-quoted, and the 5-character markers at both of its ends (a piece
 * of the password that survived a cut).
 *
 * The server parts create their own role/user txm_sec (scripts/pg-server.sh grants CREATEROLE,
 * scripts/mariadb-server.sh CREATE USER); suites: secrets-sqlite (no server), secrets-postgresql
 * and secrets-mysql (TXM_TEST_PG_URL / TXM_TEST_MYSQL_URL; without one the tests skip and say so).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "txm_check.h"
#if TXM_SECRETS_PG
#include "pg_proxy.h"
#endif

/* Helpers of the server parts, unused when txm is built without those drivers. */
#define MAYBE_UNUSED __attribute__((unused))

/* The passwords: markers at both ends, every character URLs and conninfo treat specially between. */
static const char PW[] = "Zx9Qv p@ss/w%rd?&=+'\"#:;,\\Qv9xZ";
static const char WRONG[] = "Wq7Kj@wr%ng/pw?&='+Kj7qW";
static const char PLAIN[] = "Pl4inZSecretZ"; /* for the unquoted conninfo spellings of the issue */
static const char OTHER[] = "0therPw-Ch4nged";

/* ---- spellings that must never appear ---------------------------------------------------- */

#define MAX_FORBID 64
static char forbidden[MAX_FORBID][256]; /* as wide as forbid()'s encodings: a truncated spelling would check less */
static size_t nforbidden;
static unsigned long texts_checked, errors_checked;

static void forbid_one(const char *s)
{
    size_t i;
    if (!*s || nforbidden == MAX_FORBID)
        return;
    cr_assert(strlen(s) < sizeof forbidden[0], "forbidden spelling too long for the table: %zu bytes", strlen(s));
    for (i = 0; i < nforbidden; i++)
        if (strcmp(forbidden[i], s) == 0)
            return;
    snprintf(forbidden[nforbidden++], sizeof forbidden[0], "%s", s);
}

/* Percent-encodes s: every byte (all = 1) or only those a userinfo needs (%, @, /, ?, #, space). */
static void url_encode(char *out, size_t size, const char *s, int all)
{
    size_t o = 0;
    for (; *s && o + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        int keep = all ? ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                          c == '.' || c == '_' || c == '~')
                       : !strchr("%@/?# ", c);
        if (keep) {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, size - o, "%%%02X", c);
            o += 3;
        }
    }
    out[o] = '\0';
}

/* 'value' with \ and ' escaped, as libpq conninfo wants it. */
static void conninfo_quote(char *out, size_t size, const char *s)
{
    size_t o = 0;
    out[o++] = '\'';
    for (; *s && o + 4 < size; s++) {
        if (*s == '\'' || *s == '\\')
            out[o++] = '\\';
        out[o++] = *s;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

/* SQL string literal body with ' doubled (and \ doubled for MariaDB). */
MAYBE_UNUSED static void sql_quote(char *out, size_t size, const char *s, int backslash)
{
    size_t o = 0;
    for (; *s && o + 3 < size; s++) {
        if (*s == '\'' || (backslash && *s == '\\'))
            out[o++] = *s;
        out[o++] = *s;
    }
    out[o] = '\0';
}

static void forbid(const char *pw)
{
    char buf[256];
    size_t n = strlen(pw);
    forbid_one(pw);
    url_encode(buf, sizeof buf, pw, 1);
    forbid_one(buf);
    url_encode(buf, sizeof buf, pw, 0);
    forbid_one(buf);
    conninfo_quote(buf, sizeof buf, pw);
    forbid_one(buf);
    if (n >= 10) {
        snprintf(buf, sizeof buf, "%.5s", pw);
        forbid_one(buf);
        forbid_one(pw + n - 5);
    }
}

static void forbid_all(void)
{
    forbid(PW);
    forbid(WRONG);
    forbid(PLAIN);
    forbid(OTHER);
}

static void check_text(const char *what, const char *field, const char *text)
{
    size_t i;
    if (!text)
        return;
    texts_checked++;
    for (i = 0; i < nforbidden; i++)
        cr_expect(strstr(text, forbidden[i]) == NULL, "%s: %s shows '%s': %s", what, field, forbidden[i], text);
}

/* Checks the thread's last error and its cause chain. */
static void check_err(const char *what)
{
    const txm_error *e = txm_error_last();
    int depth;
    errors_checked++;
    for (depth = 0; e && depth < 4; e = e->cause, depth++) {
        check_text(what, "message", e->message);
        check_text(what, "detail", e->detail);
        check_text(what, "constraint_name", e->constraint_name);
        check_text(what, "table_name", e->table_name);
        check_text(what, "column_name", e->column_name);
        check_text(what, "schema_name", e->schema_name);
    }
}

/* ---- the log, at its most verbose --------------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 18];
static size_t loglen;
static unsigned long loglines;

static void log_cb(txm_log_level level, const char *msg, void *payload)
{
    size_t n = strlen(msg);
    (void)level;
    (void)payload;
    pthread_mutex_lock(&log_mu);
    if (loglen + n + 2 < sizeof logbuf) {
        memcpy(logbuf + loglen, msg, n);
        loglen += n;
        logbuf[loglen++] = '\n';
        logbuf[loglen] = '\0';
    }
    loglines++;
    pthread_mutex_unlock(&log_mu);
}

static txm_open_options opts;

static void setup(void)
{
    forbid_all();
    OK(txm_open_options_init(&opts, TXM_OPEN_OPTIONS_VERSION));
    opts.log = log_cb;
    opts.log_level = TXM_LOG_DEBUG;
}

/* At the end of every test: each log line, and a summary for the report. */
static void teardown(void)
{
    pthread_mutex_lock(&log_mu);
    check_text("log", "line", logbuf);
    pthread_mutex_unlock(&log_mu);
    cr_log_info("checked %lu errors, %lu texts, %lu log lines", errors_checked, texts_checked, loglines);
}

/* txm_open that may fail; on failure its error is checked. Returns the code. */
static int open_checked(txm_conn **c, const char *what, const char *url)
{
    int rc = txm_open(c, url, &opts);
    if (rc)
        check_err(what);
    return rc;
}

/* Opens a URL that must fail with `want` (0: any error). */
static void open_fails(const char *what, const char *url, int want);
/* The same, for a failure whose message quotes the URL: a "***" shows the secret was reached. */
static void open_fails_masked(const char *what, const char *url, int want)
{
    open_fails(what, url, want);
    cr_expect(strstr(txm_error_last()->message, "***") != NULL, "%s: nothing was masked: %s", what,
              txm_error_last()->message);
}

static void open_fails(const char *what, const char *url, int want)
{
    txm_conn *c = NULL;
    int rc = open_checked(&c, what, url);
    cr_expect(rc != 0, "%s: opened", what);
    if (want)
        cr_expect(eq(int, rc, want), "%s: %s (%s)", what, txm_err_name(rc), txm_error_last()->message);
    txm_close(c);
}

/* Runs a statement that must fail with `want` (0: any error); checks the error. */
MAYBE_UNUSED static void exec_fails(txm_conn *c, const char *what, int want, const char *sql, const char *param)
{
    txm_value v[1];
    int rc;
    if (param)
        v[0] = txm_text(param);
    rc = txm_exec(c, sql, param ? v : NULL, param ? 1 : 0, NULL);
    if (want)
        cr_expect(eq(int, rc, want), "%s: %s (%s)", what, txm_err_name(rc), rc ? txm_error_last()->message : "");
    else
        cr_expect(rc != 0, "%s: succeeded", what);
    if (rc)
        check_err(what);
}

/* The server URL's parts. */
typedef struct server {
    char host[128], db[128];
    int port;
} server;

MAYBE_UNUSED static int server_of(const char *env, server *s)
{
    txm_url *u = NULL;
    const char *url = getenv(env);
    if (!url || txm__url_parse(&u, url) != 0)
        return -1;
    snprintf(s->host, sizeof s->host, "%s", u->host);
    snprintf(s->db, sizeof s->db, "%s", u->path);
    s->port = u->port;
    txm__url_free(u);
    return 0;
}

typedef struct sleeper {
    txm_conn *c;
    const char *sql;
    int rc;
} sleeper;

static void *sleep_thread(void *arg)
{
    sleeper *s = arg;
    s->rc = txm_exec(s->c, s->sql, NULL, 0, NULL);
    if (s->rc)
        check_err("canceled statement");
    return NULL;
}

/* Cancels the running `sql` of s->c once `probe` (on the admin connection) says it runs. */
MAYBE_UNUSED static void cancel_running(txm_conn *a, sleeper *s, const char *probe)
{
    pthread_t t;
    int i, rc;
    cr_assert(pthread_create(&t, NULL, sleep_thread, s) == 0);
    for (i = 0; i < 3000 && q1(a, probe) == 0; i++)
        usleep(10000);
    rc = txm_cancel(s->c);
    if (rc)
        check_err("txm_cancel");
    pthread_join(t, NULL);
    cr_expect(eq(int, s->rc, TXM_ECANCELED), "%s", txm_err_name(s->rc));
}

/* SCHEME://txm_sec:PW@host:port/db (port 0: the server's), PW encoded fully or minimally, plus a
 * query tail. */
MAYBE_UNUSED static void user_url(char *out, size_t size, const char *scheme, const server *sv,
                                             const char *pw, int all, int port, const char *query)
{
    char enc[256];
    url_encode(enc, sizeof enc, pw, all);
    snprintf(out, size, "%s://txm_sec:%s@%s:%d/%s%s", scheme, enc, sv->host, port ? port : sv->port, sv->db,
             query ? query : "");
}

/* ---- SQLite: every URL with a secret is refused, and the refusal never quotes it ----------- */

TestSuite(sqlite, .init = setup, .fini = teardown);

Test(sqlite, secret_urls_are_refused_without_the_secret)
{
    char enc[256], url[1024];
    url_encode(enc, sizeof enc, PW, 1);
    snprintf(url, sizeof url, "sqlite:/tmp/txm-secrets-test.db?key=%s", enc);
    open_fails("sqlite key=", url, TXM_EINVALID);
    snprintf(url, sizeof url, "sqlite:/tmp/txm-secrets-test.db?busy_timeout=1&password=%s", enc);
    open_fails("sqlite password=", url, TXM_EINVALID);
    snprintf(url, sizeof url, "sqlite://txm:%s@localhost/tmp/x.db", enc);
    open_fails_masked("sqlite user:pass@", url, TXM_EINVALID);
    url_encode(enc, sizeof enc, PW, 0);
    snprintf(url, sizeof url, "sqlite://txm:%s@localhost:5/tmp/x.db", enc);
    open_fails_masked("sqlite user:pass@ (minimal encoding)", url, TXM_EINVALID);
    /* opaque: the password becomes part of a path in a directory that does not exist */
    snprintf(url, sizeof url, "sqlite:/nonexistent-txm-dir/u:%s@x.db", PLAIN);
    open_fails_masked("sqlite opaque user:pass@", url, 0);
    snprintf(url, sizeof url, "sqlite:/nonexistent-txm-dir/db password=%s", PLAIN);
    open_fails_masked("sqlite conninfo-like path", url, 0);
}

Test(sqlite, bad_urls_never_quote_the_secret)
{
    char url[512];
    snprintf(url, sizeof url, "sqlite:/tmp/x.db?password=%s&x=%%zz", PLAIN);
    open_fails("bad escape", url, TXM_EINVALID);
    snprintf(url, sizeof url, "sqlite://u:%s@[::1/tmp/x.db", PLAIN);
    open_fails("bad bracket", url, TXM_EINVALID);
    snprintf(url, sizeof url, "postgresql://[]/db?pass%%77ord=S%%45%s", PLAIN + 1);
    /* the same defect spelling, without libpq: the URL parser's own messages */
    {
        txm_url *u = NULL;
        if (txm__url_parse(&u, url) == 0) {
            check_text("redacted", "url", u->redacted);
            txm__url_free(u);
        }
    }
}

#if TXM_SECRETS_PG
/* ---- PostgreSQL ---------------------------------------------------------------------------- */

static server pg;

/* The admin connection (the test user txm) and a fresh role txm_sec with password PW. */
static txm_conn *pg_admin(void)
{
    char sql[512], lit[256];
    txm_conn *a;
    NEED_URL("TXM_TEST_PG_URL", "scripts/pg-server.sh");
    cr_assert(server_of("TXM_TEST_PG_URL", &pg) == 0, "TXM_TEST_PG_URL does not parse");
    a = check_open(getenv("TXM_TEST_PG_URL"), NULL);
    x(a, "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txm_sec') THEN "
         "CREATE ROLE txm_sec LOGIN; END IF; END$$");
    sql_quote(lit, sizeof lit, PW, 0);
    snprintf(sql, sizeof sql, "ALTER ROLE txm_sec LOGIN PASSWORD '%s'", lit);
    x(a, sql);
    x(a, "CREATE TABLE IF NOT EXISTS txm_secrets_t (v text PRIMARY KEY)");
    x(a, "GRANT ALL ON txm_secrets_t TO txm_sec");
    x(a, "DELETE FROM txm_secrets_t");
    return a;
}

static void pg_url_user(char *out, size_t size, const char *pw, int all, int port, const char *query)
{
    user_url(out, size, "postgresql", &pg, pw, all, port, query);
}

static void pg_set_password(txm_conn *a, const char *pw)
{
    char sql[512], lit[256];
    sql_quote(lit, sizeof lit, pw, 0);
    snprintf(sql, sizeof sql, "ALTER ROLE txm_sec PASSWORD '%s'", lit);
    x(a, sql);
}

TestSuite(postgresql, .init = setup, .fini = teardown);

Test(postgresql, every_url_form_connects_or_fails_without_the_password)
{
    txm_conn *a = pg_admin(), *c = NULL;
    char url[1024], enc[256], q[256];
    int rc;

    /* forms that must connect */
    pg_url_user(url, sizeof url, PW, 1, 0, NULL);
    c = check_open(url, &opts);
    cr_expect(eq(i64, q1(c, "SELECT 1"), 1));
    txm_close(c);
    pg_url_user(url, sizeof url, PW, 0, 0, NULL);
    c = check_open(url, &opts);
    txm_close(c);
    url_encode(enc, sizeof enc, PW, 1);
    snprintf(url, sizeof url, "postgresql://%s:%d/%s?user=txm_sec&password=%s", pg.host, pg.port, pg.db, enc);
    c = check_open(url, &opts);
    txm_close(c);
    /* a percent-encoded key: libpq decodes it too */
    snprintf(url, sizeof url, "postgresql://%s:%d/%s?user=txm_sec&pass%%77ord=%s", pg.host, pg.port, pg.db, enc);
    c = NULL;
    rc = open_checked(&c, "pass%77ord", url);
    cr_log_info("pass%%77ord form: %s", rc ? txm_err_name(rc) : "connected");
    txm_close(c);

    /* conninfo after the scheme (libpq refuses "postgresql:host"): the issue's spellings */
    conninfo_quote(q, sizeof q, PW);
    snprintf(url, sizeof url, "postgresql:host=%s port=%d user=txm_sec password=%s dbname=%s", pg.host, pg.port, q,
             pg.db);
    open_fails_masked("conninfo quoted", url, 0);
    snprintf(url, sizeof url, "postgresql:host=127.0.0.1 port=1 password=%s", PLAIN);
    open_fails_masked("issue spelling 1", url, 0);
    snprintf(url, sizeof url, "postgres:password=%s dbname=x", PLAIN);
    open_fails_masked("issue spelling 2", url, 0);
    snprintf(url, sizeof url, "postgresql:password = %s host=%s", q, pg.host);
    open_fails_masked("conninfo spaced", url, 0);
    url_encode(enc, sizeof enc, PW, 1);
    snprintf(url, sizeof url, "postgresql://[]/db?pass%%77ord=%s", enc);
    open_fails_masked("issue spelling 4 (tricky)", url, 0);
    snprintf(url, sizeof url, "postgresql://[]/db?pass%%77ord=%s", PLAIN);
    open_fails_masked("issue spelling 4", url, 0);
    snprintf(url, sizeof url, "postgresql://[]/db?sslpassword=%s", enc);
    open_fails("sslpassword", url, 0);
    /* an ambiguous password: unencoded '@' and '/' */
    snprintf(url, sizeof url, "postgresql://txm_sec:%s@%s:%d/%s", PW, pg.host, pg.port, pg.db);
    c = NULL;
    if (open_checked(&c, "unencoded", url) == 0)
        txm_close(c);
    txm_close(a);
}

Test(postgresql, connection_failures)
{
    txm_conn *a = pg_admin();
    char url[1024];
    pg_url_user(url, sizeof url, WRONG, 1, 0, NULL);
    open_fails_masked("wrong password", url, TXM_EAUTH);
    pg_url_user(url, sizeof url, WRONG, 0, 0, NULL);
    open_fails("wrong password (minimal encoding)", url, TXM_EAUTH);
    pg_url_user(url, sizeof url, PW, 1, 1, NULL);
    open_fails_masked("unreachable port", url, TXM_ECONNECTION);
    pg_url_user(url, sizeof url, PW, 1, 0, "?sslmode=bogus");
    open_fails_masked("bad libpq option", url, 0);
    pg_url_user(url, sizeof url, PW, 1, 0, "?txm_resolve_outcome=maybe");
    open_fails_masked("bad txm option", url, TXM_EINVALID);
    pg_url_user(url, sizeof url, PW, 0, 0, "?target_session_attrs=bogus");
    open_fails_masked("bad target_session_attrs", url, 0);
    pg_url_user(url, sizeof url, PW, 1, 0, "?x=%zz");
    open_fails("bad escape", url, TXM_EINVALID);
    txm_close(a);
}

Test(postgresql, statement_errors_that_echo_the_password)
{
    txm_tx *t = NULL;
    txm_conn *a = pg_admin(), *c;
    char url[1024], sql[4096], lit[256];
    txm_value v[1];
    pg_url_user(url, sizeof url, PW, 1, 0, NULL);
    c = check_open(url, &opts);
    sql_quote(lit, sizeof lit, PW, 0);

    /* the server quotes a parameter value */
    exec_fails(c, "bad integer", TXM_EDATA, "SELECT ?::int", PW);
    cr_expect(strstr(txm_error_last()->message, "***") != NULL, "%s", txm_error_last()->message);
    /* every field of an error report */
    snprintf(sql, sizeof sql,
             "DO $$BEGIN RAISE EXCEPTION 'msg %%', '%s' USING ERRCODE = '23505', DETAIL = '%s', "
             "HINT = '%s', CONSTRAINT = '%s', TABLE = '%s', COLUMN = '%s', SCHEMA = '%s'; END$$",
             lit, lit, lit, lit, lit, lit, lit);
    exec_fails(c, "raise with every field", TXM_EUNIQUE, sql, NULL);
    cr_expect(strstr(txm_error_last()->constraint_name, "***") != NULL, "%s", txm_error_last()->constraint_name);
    /* a duplicate key: the detail quotes the value */
    v[0] = txm_text(PW);
    OK(txm_exec(c, "INSERT INTO txm_secrets_t VALUES (?)", v, 1, NULL));
    exec_fails(c, "duplicate key", TXM_EUNIQUE, "INSERT INTO txm_secrets_t VALUES (?)", PW);
    cr_expect(strstr(txm_error_last()->detail, "***") != NULL, "%s", txm_error_last()->detail);
    /* a NOTICE goes to the log at DEBUG */
    snprintf(sql, sizeof sql, "DO $$BEGIN RAISE NOTICE 'notice %%', '%s'; RAISE WARNING 'warning %%', '%s'; END$$",
             lit, lit);
    x(c, sql);
    cr_expect(strstr(logbuf, "notice ***") != NULL, "the NOTICE was logged, masked: %s", logbuf);
    /* an aborted transaction: the next statement's error carries the first as its cause */
    OK(txm_begin(&t, c, NULL));
    exec_fails(c, "in a transaction", TXM_EDATA, "SELECT ?::int", PW);
    exec_fails(c, "aborted transaction", TXM_ETX_ABORTED, "SELECT 1", NULL);
    cr_expect(txm_error_last()->cause != NULL);
    OK(txm_rollback(t));
    txm_close(c);
    txm_close(a);
}

Test(postgresql, lost_connection_failing_reconnect_and_cancel)
{
    txm_tx *t = NULL;
    txm_conn *a = pg_admin(), *c;
    char url[1024];
    int rc;
    pg_url_user(url, sizeof url, PW, 0, 0, NULL);
    c = check_open(url, &opts);
    OK(txm_begin(&t, c, NULL));
    x(c, "SELECT 1");
    exec_fails(c, "terminated backend", TXM_ECONNECTION, "SELECT pg_terminate_backend(pg_backend_pid())", NULL);
    rc = txm_rollback(t);
    if (rc)
        check_err("rollback after loss");
    rc = txm_cancel(c);
    if (rc)
        check_err("cancel on a lost connection");
    /* the password was changed meanwhile: reconnecting fails */
    pg_set_password(a, OTHER);
    RC(TXM_EAUTH, txm_reconnect(c));
    check_err("failing reconnect");
    pg_set_password(a, PW);
    OK(txm_reconnect(c));
    cr_expect(eq(i64, q1(c, "SELECT 2"), 2));
    txm_close(c);
    txm_close(a);
}

Test(postgresql, cancel)
{
    txm_conn *a = pg_admin(), *probe;
    char url[1024];
    sleeper s;
    pg_url_user(url, sizeof url, PW, 1, 0, NULL);
    s.c = check_open(url, &opts);
    probe = check_open(url, &opts); /* only the same role sees the state of txm_sec's sessions */
    s.sql = "SELECT pg_sleep(60)";
    s.rc = 0;
    cancel_running(probe, &s,
                   "SELECT count(*) FROM pg_stat_activity WHERE usename = 'txm_sec' AND state = 'active' "
                   "AND query LIKE 'SELECT pg_sleep%'");
    txm_close(probe);
    txm_close(s.c);
    txm_close(a);
}

Test(postgresql, commit_unknown_and_failing_resolve_outcome)
{
    txm_tx *t = NULL;
    txm_conn *a = pg_admin(), *c;
    char url[1024], purl[1200];
    txm_value v[1];
    txm_outcome out;
    pg_proxy *p;
    int rc;
    pg_url_user(url, sizeof url, PW, 1, 0, NULL);
    p = pg_proxy_start(url, purl, sizeof purl);
    cr_assert(p != NULL);
    c = check_open(purl, &opts);
    OK(txm_begin(&t, c, NULL));
    v[0] = txm_text("committed-through-the-proxy");
    OK(txm_exec(c, "INSERT INTO txm_secrets_t VALUES (?)", v, 1, NULL));
    pg_proxy_arm(p);
    RC(TXM_ECOMMIT_UNKNOWN, txm_commit(t));
    check_err("COMMIT_UNKNOWN");
    /* the proxy is gone: resolving must reconnect and cannot */
    pg_proxy_stop(p);
    rc = txm_resolve_outcome(c, &out);
    cr_expect(rc != 0, "resolve_outcome without a server");
    if (rc)
        check_err("failing resolve_outcome");
    rc = txm_reconnect(c);
    cr_expect(rc != 0);
    if (rc)
        check_err("failing reconnect through a stopped proxy");
    txm_close(c);
    cr_expect(eq(i64, q1(a, "SELECT count(*) FROM txm_secrets_t WHERE v = 'committed-through-the-proxy'"), 1));
    txm_close(a);
}
#endif /* TXM_SECRETS_PG */

#if TXM_SECRETS_MYSQL
/* ---- MariaDB ------------------------------------------------------------------------------- */

static server my;

static void my_set_password(txm_conn *a, const char *pw)
{
    static const char *const hosts[] = {"%", "127.0.0.1", "localhost"};
    char sql[512], lit[256];
    size_t i;
    sql_quote(lit, sizeof lit, pw, 1);
    for (i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "ALTER USER 'txm_sec'@'%s' IDENTIFIED BY '%s'", hosts[i], lit);
        x(a, sql);
    }
}

/* The admin connection and a user txm_sec@{%,127.0.0.1,localhost} with password PW. */
static txm_conn *my_admin(void)
{
    static const char *const hosts[] = {"%", "127.0.0.1", "localhost"};
    char sql[512];
    txm_conn *a;
    size_t i;
    NEED_URL("TXM_TEST_MYSQL_URL", "scripts/mariadb-server.sh");
    cr_assert(server_of("TXM_TEST_MYSQL_URL", &my) == 0, "TXM_TEST_MYSQL_URL does not parse");
    a = check_open(getenv("TXM_TEST_MYSQL_URL"), NULL);
    for (i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "CREATE USER IF NOT EXISTS 'txm_sec'@'%s'", hosts[i]);
        x(a, sql);
        snprintf(sql, sizeof sql, "GRANT ALL PRIVILEGES ON %s.* TO 'txm_sec'@'%s'", my.db, hosts[i]);
        x(a, sql);
    }
    my_set_password(a, PW);
    x(a, "CREATE TABLE IF NOT EXISTS txm_secrets_t (v VARCHAR(200) PRIMARY KEY)");
    x(a, "DELETE FROM txm_secrets_t");
    return a;
}

static void my_url_user(char *out, size_t size, const char *pw, int all, int port, const char *query)
{
    user_url(out, size, "mysql", &my, pw, all, port, query);
}

TestSuite(mysql, .init = setup, .fini = teardown);

Test(mysql, every_url_form_connects_or_fails_without_the_password)
{
    txm_conn *a = my_admin(), *c;
    char url[1024], enc[256];
    my_url_user(url, sizeof url, PW, 1, 0, NULL);
    c = check_open(url, &opts);
    cr_expect(eq(i64, q1(c, "SELECT 1"), 1));
    txm_close(c);
    my_url_user(url, sizeof url, PW, 0, 0, NULL);
    c = check_open(url, &opts);
    txm_close(c);
    cr_expect(loglines > 0, "the driver logs at DEBUG");

    snprintf(url, sizeof url, "mysql:password=%s", PLAIN);
    open_fails_masked("issue spelling 3", url, TXM_EINVALID);
    url_encode(enc, sizeof enc, PW, 1);
    snprintf(url, sizeof url, "mysql:txm_sec:%s@%s:%d/%s", enc, my.host, my.port, my.db);
    open_fails_masked("opaque user:pass@", url, TXM_EINVALID);
    snprintf(url, sizeof url, "mysql://txm_sec@%s:%d/%s?password=%s", my.host, my.port, my.db, enc);
    open_fails_masked("password parameter", url, TXM_EINVALID);
    snprintf(url, sizeof url, "mysql://txm_sec@%s:%d/%s?passwd=%s&pwd=%s", my.host, my.port, my.db, enc, PLAIN);
    open_fails_masked("passwd/pwd parameters", url, TXM_EINVALID);
    txm_close(a);
}

Test(mysql, connection_failures)
{
    txm_conn *a = my_admin();
    char url[1024];
    my_url_user(url, sizeof url, WRONG, 1, 0, NULL);
    open_fails_masked("wrong password", url, TXM_EAUTH);
    my_url_user(url, sizeof url, WRONG, 0, 0, NULL);
    open_fails("wrong password (minimal encoding)", url, TXM_EAUTH);
    my_url_user(url, sizeof url, PW, 1, 1, NULL);
    open_fails_masked("unreachable port", url, TXM_ECONNECTION);
    my_url_user(url, sizeof url, PW, 1, 0, "?charset=");
    open_fails_masked("bad option", url, TXM_EINVALID);
    my_url_user(url, sizeof url, PW, 0, 0, "?connect_timeout=forever");
    open_fails_masked("bad timeout", url, TXM_EINVALID);
    my_url_user(url, sizeof url, PW, 1, 0, "?x=%zz");
    open_fails("bad escape", url, TXM_EINVALID);
    txm_close(a);
}

Test(mysql, statement_errors_that_echo_the_password)
{
    txm_tx *t = NULL;
    txm_conn *a = my_admin(), *c;
    char url[1024];
    txm_value v[1];
    txm_outcome out;
    int rc;
    my_url_user(url, sizeof url, PW, 1, 0, NULL);
    c = check_open(url, &opts);
    exec_fails(c, "sql_mode value", 0, "SET SESSION sql_mode = ?", PW);
    cr_expect(strstr(txm_error_last()->message, "***") != NULL, "%s", txm_error_last()->message);
    v[0] = txm_text(PW);
    OK(txm_exec(c, "INSERT INTO txm_secrets_t VALUES (?)", v, 1, NULL));
    exec_fails(c, "duplicate key", TXM_EUNIQUE, "INSERT INTO txm_secrets_t VALUES (?)", PW);
    cr_expect(strstr(txm_error_last()->message, "***") != NULL, "%s", txm_error_last()->message);
    OK(txm_begin(&t, c, NULL));
    exec_fails(c, "in a transaction", TXM_EUNIQUE, "INSERT INTO txm_secrets_t VALUES (?)", PW);
    OK(txm_rollback(t));
    rc = txm_resolve_outcome(c, &out);
    if (rc)
        check_err("resolve_outcome");
    txm_close(c);
    txm_close(a);
}

Test(mysql, lost_connection_failing_reconnect_and_cancel)
{
    txm_tx *t = NULL;
    txm_conn *a = my_admin(), *c;
    char url[1024], kill[64];
    int64_t id;
    sleeper s;
    my_url_user(url, sizeof url, PW, 0, 0, NULL);
    c = check_open(url, &opts);
    id = q1(c, "SELECT CONNECTION_ID()");
    OK(txm_begin(&t, c, NULL));
    x(c, "SELECT 1");
    snprintf(kill, sizeof kill, "KILL %lld", (long long)id);
    x(a, kill);
    exec_fails(c, "killed session", TXM_ECONNECTION, "SELECT 1", NULL);
    if (txm_rollback(t))
        check_err("rollback after loss");
    my_set_password(a, OTHER);
    RC(TXM_EAUTH, txm_reconnect(c));
    check_err("failing reconnect");
    /* txm_cancel opens a second connection with the password: it fails too */
    if (txm_cancel(c))
        check_err("cancel with a wrong password");
    my_set_password(a, PW);
    OK(txm_reconnect(c));

    s.c = c;
    /* (a killed SLEEP() returns 1 without an error in MariaDB; a long join is interrupted) */
    s.sql = "SELECT COUNT(*) FROM information_schema.collations a, information_schema.collations b, "
            "information_schema.collations c, information_schema.collations d";
    s.rc = 0;
    cancel_running(a, &s,
                   "SELECT count(*) FROM information_schema.processlist WHERE user = 'txm_sec' "
                   "AND info LIKE 'SELECT COUNT(*) FROM information_schema.collations%'");
    txm_close(c);
    txm_close(a);
}
#endif /* TXM_SECRETS_MYSQL */
