/* Harness of the driver conformance suite: URL selection, fixtures, helpers. See harness.h. */
#include "harness.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

conf_env conf;
char conf_log[4096];

static conf_hook hook_pool[CONF_MAX_HOOKS];
static size_t hook_pool_used;

/* ---------------------------------------------------------------------------------------------
 * URL selection
 * ------------------------------------------------------------------------------------------- */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    cr_assert(n < size, "string too long for the harness buffer (%zu bytes): %.40s...", n, src);
    memcpy(dst, src, n + 1);
}

static void driver_from_url(const char *url)
{
    size_t n;
    if (strncmp(url, "fault+", 6) == 0)
        url += 6; /* the fault driver reports its inner driver's name */
    n = strcspn(url, ":");
    char scheme[32];
    if (n >= sizeof scheme)
        n = sizeof scheme - 1;
    memcpy(scheme, url, n);
    scheme[n] = '\0';
    if (strcmp(scheme, "postgres") == 0 || strcmp(scheme, "postgresql") == 0)
        copy_str(conf.driver, sizeof conf.driver, "postgresql");
    else if (strcmp(scheme, "mariadb") == 0 || strcmp(scheme, "mysql") == 0)
        copy_str(conf.driver, sizeof conf.driver, "mysql");
    else
        copy_str(conf.driver, sizeof conf.driver, scheme);
}

/* A driver built outside txm: TXM_TEST_DRIVER_SO names a shared object exporting
 * `int txm_driver_init(void)`, which registers the driver (docs/driver-guide.md §6). Loaded once
 * per test process, before the first txm_open. */
static void load_driver_plugin(void)
{
    static bool loaded;
    const char *so = getenv("TXM_TEST_DRIVER_SO");
    if (loaded || !so || !*so)
        return;
    void *h = dlopen(so, RTLD_NOW | RTLD_GLOBAL);
    cr_assert(h != NULL, "TXM_TEST_DRIVER_SO=%s: dlopen failed: %s", so, dlerror());
    int (*init)(void) = NULL;
    *(void **)&init = dlsym(h, "txm_driver_init");
    cr_assert(init != NULL, "TXM_TEST_DRIVER_SO=%s does not export int txm_driver_init(void)", so);
    int rc = init();
    cr_assert(rc == 0, "TXM_TEST_DRIVER_SO=%s: txm_driver_init() returned %s: %s", so, txm_err_name(rc),
              txm_error_last()->message);
    loaded = true;
}

/* Fills conf.url/conf.driver from the environment; skips the test when a server URL is missing. */
static void resolve_url(void)
{
    load_driver_plugin();
    const char *url = getenv("TXM_TEST_URL");
    memset(&conf, 0, sizeof conf);
    conf_log[0] = '\0';
    memset(hook_pool, 0, sizeof hook_pool);
    hook_pool_used = 0;
    if (url && *url) {
        copy_str(conf.url, sizeof conf.url, url);
        driver_from_url(url);
        return;
    }
    const char *d = getenv("TXM_TEST_DRIVER");
    if (!d || !*d)
        d = "sqlite";
    const char *var = NULL;
    if (strcmp(d, "sqlite") == 0) {
        copy_str(conf.url, sizeof conf.url, "sqlite::memory:");
    } else if (strcmp(d, "postgresql") == 0 || strcmp(d, "pg") == 0) {
        var = "TXM_TEST_PG_URL";
        copy_str(conf.driver, sizeof conf.driver, "postgresql");
    } else if (strcmp(d, "mysql") == 0 || strcmp(d, "mariadb") == 0) {
        var = "TXM_TEST_MYSQL_URL";
        copy_str(conf.driver, sizeof conf.driver, "mysql");
    } else {
        cr_assert_fail("TXM_TEST_DRIVER=%s: expected sqlite, postgresql or mysql", d);
    }
    if (var) {
        url = getenv(var);
        if (!url || !*url) {
            fprintf(stderr, "[SKIP] %s: %s is not set (start a server with scripts/ and export its URL)\n",
                    conf.driver, var);
            cr_skip_test("TXM_TEST_DRIVER=%s but %s is not set", d, var);
        }
        copy_str(conf.url, sizeof conf.url, url);
    }
    /* TXM_TEST_URL_PREFIX=fault+ runs the suite through the fault driver (no fault configured). */
    const char *prefix = getenv("TXM_TEST_URL_PREFIX");
    if (prefix && *prefix) {
        char tmp[sizeof conf.url];
        int n = snprintf(tmp, sizeof tmp, "%s%s", prefix, conf.url);
        cr_assert(n > 0 && (size_t)n < sizeof tmp, "URL too long with TXM_TEST_URL_PREFIX");
        copy_str(conf.url, sizeof conf.url, tmp);
    }
    driver_from_url(conf.url);
}

/* Makes conf.url shareable by a second connection: an in-memory SQLite-style URL
 * (SCHEME::memory:[?opts], any scheme, so wrappers of the SQLite driver work too) becomes a temp
 * file per test. */
static void make_shared(void)
{
    static const char mem[] = ":memory:";
    const char *colon = strchr(conf.url, ':');
    if (!colon || strncmp(colon + 1, mem, sizeof mem - 1) != 0) {
        conf.shared = true;
        return;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char scheme[64], rest[1024];
    int n = snprintf(scheme, sizeof scheme, "%.*s", (int)(colon - conf.url), conf.url);
    cr_assert(n > 0 && (size_t)n < sizeof scheme, "URL scheme too long");
    copy_str(rest, sizeof rest, colon + 1 + sizeof mem - 1); /* "?opts" or "" */
    n = snprintf(conf.tmpdb, sizeof conf.tmpdb, "%s/txm-conf-XXXXXX", tmp);
    cr_assert(n > 0 && (size_t)n < sizeof conf.tmpdb, "TMPDIR too long");
    int fd = mkstemp(conf.tmpdb);
    cr_assert(fd >= 0, "mkstemp(%s) failed", conf.tmpdb);
    close(fd);
    n = snprintf(conf.url, sizeof conf.url, "%s:%s%s", scheme, conf.tmpdb, rest);
    cr_assert(n > 0 && (size_t)n < sizeof conf.url, "URL too long");
    conf.shared = true;
}

const char *conf_url_with(char *buf, size_t size, const char *opt)
{
    int n = snprintf(buf, size, "%s%c%s", conf.url, strchr(conf.url, '?') ? '&' : '?', opt);
    cr_assert(n > 0 && (size_t)n < size, "URL too long");
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Fixtures
 * ------------------------------------------------------------------------------------------- */
/* Table sets: each test creates only what it uses (DDL dominates a test's time on MariaDB). */
enum {
    T_BASE = 0x1,     /* t_item, t_uniq, t_counter */
    T_FK = 0x2,       /* t_parent, t_child */
    T_CHECK = 0x4,    /* t_check */
    T_VALS = 0x8,     /* t_vals */
    T_DEFERRED = 0x10 /* t_parent, t_dchild (PostgreSQL, SQLite) */
};

static void open_main(void)
{
    int rc = txm_open(&conf.c, conf.url, NULL);
    cr_assert(rc == 0, "txm_open(%s driver) failed: %s: %s", conf.driver, txm_err_name(rc),
              txm_error_last()->message);
    cr_assert(conf.c != NULL, "txm_open returned 0 but no connection");
    /* The driver's own name wins over the URL scheme (TXM_TEST_URL may use an alias). */
    copy_str(conf.driver, sizeof conf.driver, txm_driver_name(conf.c));
}

static bool deferrable_fk_supported(void)
{
    return conf_is("postgresql") || conf_is("sqlite");
}

static void create_tables(unsigned set)
{
    /* Every table a previous test may have left, children first. */
    static const char *const drops[] = {
        "DROP TABLE IF EXISTS t_dchild", "DROP TABLE IF EXISTS t_child", "DROP TABLE IF EXISTS t_parent",
        "DROP TABLE IF EXISTS t_item",   "DROP TABLE IF EXISTS t_uniq",  "DROP TABLE IF EXISTS t_check",
        "DROP TABLE IF EXISTS t_counter", "DROP TABLE IF EXISTS t_vals",
    };
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
        conf_exec(conf.c, drops[i]);

    if (set & T_BASE) {
        conf_exec(conf.c, "CREATE TABLE t_item (id INTEGER PRIMARY KEY, name VARCHAR(100), n INTEGER)");
        conf_exec(conf.c, "CREATE TABLE t_uniq (id INTEGER PRIMARY KEY, code VARCHAR(100) NOT NULL, "
                          "CONSTRAINT uq_t_uniq_code UNIQUE (code))");
        conf_exec(conf.c, "CREATE TABLE t_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
        conf_exec(conf.c, "INSERT INTO t_counter (id, n) VALUES (1, 100), (2, 100)");
    }
    if (set & (T_FK | T_DEFERRED))
        conf_exec(conf.c, "CREATE TABLE t_parent (id INTEGER PRIMARY KEY, name VARCHAR(100))");
    if (set & T_FK)
        conf_exec(conf.c, "CREATE TABLE t_child (id INTEGER PRIMARY KEY, parent_id INTEGER, "
                          "CONSTRAINT fk_t_child_parent FOREIGN KEY (parent_id) REFERENCES t_parent (id))");
    if (set & T_CHECK)
        conf_exec(conf.c, "CREATE TABLE t_check (id INTEGER PRIMARY KEY, qty INTEGER, "
                          "CONSTRAINT ck_t_check_qty CHECK (qty >= 0))");
    if (set & T_VALS) {
        /* The only engine-specific DDL: the blob type, and utf8mb4 text on MySQL/MariaDB, whose
         * server default character set may not hold every Unicode character. */
        char sql[512];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE t_vals (id INTEGER PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, t VARCHAR(100), "
                 "b %s)%s",
                 conf_is("postgresql") ? "BYTEA" : "BLOB", conf_is("mysql") ? " DEFAULT CHARSET=utf8mb4" : "");
        conf_exec(conf.c, sql);
    }
    if ((set & T_DEFERRED) && deferrable_fk_supported())
        conf_exec(conf.c, "CREATE TABLE t_dchild (id INTEGER PRIMARY KEY, parent_id INTEGER, "
                          "CONSTRAINT fk_t_dchild_parent FOREIGN KEY (parent_id) REFERENCES t_parent (id) "
                          "DEFERRABLE INITIALLY DEFERRED)");
}

void conf_init_bare(void)
{
    resolve_url();
}

void conf_init(void)
{
    resolve_url();
    open_main();
    create_tables(T_BASE);
}

void conf_init_shared(void)
{
    resolve_url();
    make_shared();
    open_main();
    create_tables(T_BASE);
}

void conf_init_all(void)
{
    resolve_url();
    open_main();
    create_tables(T_BASE | T_FK | T_CHECK | T_VALS);
}

void conf_init_deferred(void)
{
    resolve_url();
    make_shared();
    open_main();
    create_tables(T_BASE | T_DEFERRED);
}

void conf_fini(void)
{
    txm_close(conf.c);
    conf.c = NULL;
    if (conf.tmpdb[0]) {
        static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
            char path[1100];
            snprintf(path, sizeof path, "%s%s", conf.tmpdb, suffixes[i]);
            unlink(path);
        }
        conf.tmpdb[0] = '\0';
    }
}

/* ---------------------------------------------------------------------------------------------
 * Driver facts and connections
 * ------------------------------------------------------------------------------------------- */
bool conf_is(const char *driver)
{
    return strcmp(conf.driver, driver) == 0;
}

bool conf_is_embedded(void)
{
    return conf_is("sqlite") || strstr(conf.url, "://") == NULL;
}

unsigned conf_caps(void)
{
    cr_assert(conf.c != NULL, "no connection");
    return txm_capabilities(conf.c);
}

bool conf_has_cap(unsigned cap)
{
    return (conf_caps() & cap) == cap;
}

txm_conn *conf_open_other(void)
{
    cr_assert(conf.shared, "test bug: a second connection needs a shared init (conf_init_shared)");
    txm_conn *c = NULL;
    int rc = txm_open(&c, conf.url, NULL);
    cr_assert(rc == 0, "second txm_open failed: %s: %s", txm_err_name(rc), txm_error_last()->message);
    return c;
}

bool conf_transaction_pooler(void)
{
    const char *p = getenv("TXM_CONFORMANCE_POOLER");
    if (!p || !*p || strcmp(p, "session") == 0)
        return false;
    cr_assert(strcmp(p, "transaction") == 0, "TXM_CONFORMANCE_POOLER=%s: expected transaction or session", p);
    return true;
}

txm_conn *conf_open_short_wait(void)
{
    cr_assert(conf.shared, "test bug: a second connection needs a shared init (conf_init_shared)");
    txm_conn *c = NULL;
    if (!conf_is_embedded())
        CONF_NEEDS_SESSION_POOLING("the short lock wait is a session-level SET, lost between transactions");
    if (conf_is("sqlite")) {
        char url[2200];
        int rc = txm_open(&c, conf_url_with(url, sizeof url, "busy_timeout=50"), NULL);
        cr_assert(rc == 0, "txm_open(busy_timeout=50) failed: %s: %s", txm_err_name(rc),
                  txm_error_last()->message);
        return c;
    }
    c = conf_open_other();
    if (conf_is("postgresql"))
        conf_exec(c, "SET lock_timeout = '50ms'");
    else if (conf_is("mysql"))
        conf_exec(c, "SET SESSION innodb_lock_wait_timeout = 1");
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * SQL helpers
 * ------------------------------------------------------------------------------------------- */
void conf_exec(txm_conn *c, const char *sql)
{
    int rc = txm_exec(c, sql, NULL, 0, NULL);
    cr_assert(rc == 0, "%s: %s: %s", sql, txm_err_name(rc), txm_error_last()->message);
}

int64_t conf_i64(txm_conn *c, const char *sql)
{
    int64_t v = -12345;
    int rc = txm_query_i64(c, &v, sql, NULL, 0);
    cr_assert(rc == 0, "%s: %s: %s", sql, txm_err_name(rc), txm_error_last()->message);
    return v;
}

int64_t conf_count(txm_conn *c, const char *table)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    return conf_i64(c, sql);
}

int64_t conf_count_id(txm_conn *c, const char *table, int64_t id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE id = ?", table);
    txm_value p = txm_int(id);
    int64_t v = -12345;
    int rc = txm_query_i64(c, &v, sql, &p, 1);
    cr_assert(rc == 0, "%s: %s: %s", sql, txm_err_name(rc), txm_error_last()->message);
    return v;
}

int conf_item(txm_conn *c, int64_t id)
{
    char name[32];
    snprintf(name, sizeof name, "item-%lld", (long long)id);
    txm_value p[2] = {txm_int(id), txm_text(name)};
    return txm_exec(c, "INSERT INTO t_item (id, name) VALUES (?, ?)", p, 2, NULL);
}

int conf_uniq(txm_conn *c, int64_t id, const char *code)
{
    txm_value p[2] = {txm_int(id), txm_text(code)};
    return txm_exec(c, "INSERT INTO t_uniq (id, code) VALUES (?, ?)", p, 2, NULL);
}

int64_t conf_counter(txm_conn *c, int64_t id)
{
    txm_value p = txm_int(id);
    int64_t v = -12345;
    int rc = txm_query_i64(c, &v, "SELECT n FROM t_counter WHERE id = ?", &p, 1);
    cr_assert(rc == 0, "reading t_counter %lld: %s: %s", (long long)id, txm_err_name(rc),
              txm_error_last()->message);
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * Stats
 * ------------------------------------------------------------------------------------------- */
txm_stats conf_stats(txm_conn *c)
{
    txm_stats s;
    memset(&s, 0xff, sizeof s); /* txm_stats_get must fill every field */
    txm_stats_get(c, &s);
    return s;
}

txm_stats conf_delta(txm_conn *c, const txm_stats *b)
{
    txm_stats a = conf_stats(c), d;
#define CONF_D_(f) d.f = a.f - b->f
    CONF_D_(round_trips);
    CONF_D_(statements);
    CONF_D_(control);
    CONF_D_(begins);
    CONF_D_(commits);
    CONF_D_(rollbacks);
    CONF_D_(savepoints);
    CONF_D_(releases);
    CONF_D_(rollbacks_to);
    CONF_D_(refused);
    CONF_D_(retries);
    CONF_D_(hooks_run);
    CONF_D_(hooks_failed);
    CONF_D_(autocommit_retries);
#undef CONF_D_
    d.tx_savepoints = a.tx_savepoints;
    return d;
}

void conf_print_stats(const char *label, const txm_stats *s)
{
    fprintf(stderr,
            "[%s] %s: round_trips=%llu statements=%llu control=%llu begins=%llu commits=%llu "
            "rollbacks=%llu savepoints=%llu releases=%llu rollbacks_to=%llu refused=%llu\n",
            conf.driver, label, (unsigned long long)s->round_trips, (unsigned long long)s->statements,
            (unsigned long long)s->control, (unsigned long long)s->begins, (unsigned long long)s->commits,
            (unsigned long long)s->rollbacks, (unsigned long long)s->savepoints,
            (unsigned long long)s->releases, (unsigned long long)s->rollbacks_to,
            (unsigned long long)s->refused);
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */
conf_err conf_last_err(void)
{
    const txm_error *e = txm_error_last();
    conf_err r;
    memset(&r, 0, sizeof r);
    cr_assert(e != NULL, "txm_error_last() returned NULL");
    r.code = e->code;
    snprintf(r.name, sizeof r.name, "%s", txm_err_name(e->code));
    cr_assert(e->message && e->sqlstate && e->constraint_name && e->table_name && e->column_name &&
                  e->schema_name && e->detail,
              "txm_error strings must be non-NULL (\"\" when unknown)");
    snprintf(r.message, sizeof r.message, "%s", e->message);
    snprintf(r.sqlstate, sizeof r.sqlstate, "%s", e->sqlstate);
    r.native_code = e->native_code;
    snprintf(r.constraint_name, sizeof r.constraint_name, "%s", e->constraint_name);
    snprintf(r.table_name, sizeof r.table_name, "%s", e->table_name);
    snprintf(r.column_name, sizeof r.column_name, "%s", e->column_name);
    r.flags = e->flags;
    if (e->cause) {
        r.has_cause = true;
        r.cause_code = e->cause->code;
        snprintf(r.cause_message, sizeof r.cause_message, "%s", e->cause->message ? e->cause->message : "");
        snprintf(r.cause_constraint, sizeof r.cause_constraint, "%s",
                 e->cause->constraint_name ? e->cause->constraint_name : "");
        snprintf(r.cause_table, sizeof r.cause_table, "%s", e->cause->table_name ? e->cause->table_name : "");
        snprintf(r.cause_column, sizeof r.cause_column, "%s",
                 e->cause->column_name ? e->cause->column_name : "");
    }
    return r;
}

bool conf_contains(const char *h, const char *n)
{
    if (!h || !n)
        return false;
    size_t hl = strlen(h), nl = strlen(n);
    for (size_t i = 0; i + nl <= hl; i++) {
        size_t j = 0;
        while (j < nl && tolower((unsigned char)h[i + j]) == tolower((unsigned char)n[j]))
            j++;
        if (j == nl)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Hooks
 * ------------------------------------------------------------------------------------------- */
conf_hook *conf_hook_new(const char *name)
{
    cr_assert(hook_pool_used < CONF_MAX_HOOKS, "hook pool exhausted");
    conf_hook *h = &hook_pool[hook_pool_used++];
    memset(h, 0, sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", name);
    h->depth_seen = -1;
    return h;
}

int conf_hook_fn(txm_conn *c, void *payload)
{
    conf_hook *h = payload;
    h->runs++;
    h->depth_seen = txm_depth(c);
    size_t used = strlen(conf_log);
    snprintf(conf_log + used, sizeof conf_log - used, "%s,", h->name);
    if (h->fail)
        return txm_error_set(h->fail, "hook %s failed on purpose", h->name);
    if (h->action)
        return h->action(c, h);
    return 0;
}

void conf_hook_free(void *payload)
{
    conf_hook *h = payload;
    h->frees++;
}

int conf_on_commit(txm_conn *c, const char *name, conf_hook **out)
{
    conf_hook *h = conf_hook_new(name);
    if (out)
        *out = h;
    return txm_on_commit(c, conf_hook_fn, h, conf_hook_free);
}

int conf_on_rollback(txm_conn *c, const char *name, conf_hook **out)
{
    conf_hook *h = conf_hook_new(name);
    if (out)
        *out = h;
    return txm_on_rollback(c, conf_hook_fn, h, conf_hook_free);
}

void conf_assert_freed_once(void)
{
    for (size_t i = 0; i < hook_pool_used; i++)
        cr_assert(hook_pool[i].frees == 1, "payload of hook '%s' freed %d times (expected exactly once)",
                  hook_pool[i].name, hook_pool[i].frees);
}

size_t conf_hook_count(void)
{
    return hook_pool_used;
}

/* ---------------------------------------------------------------------------------------------
 * main: Criterion's, except that tests run one at a time by default (--jobs overrides), so a
 * third party running the executable by hand against a server does not race on shared tables.
 * ------------------------------------------------------------------------------------------- */
int main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    criterion_options.jobs = 1;
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------------------------- */
txm_tx *conf_begin_flags(txm_conn *c, unsigned flags)
{
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    o.flags = flags;
    txm_tx *t = NULL;
    int rc = txm_begin(&t, c, &o);
    cr_assert(rc == 0, "txm_begin(flags=0x%x) failed: %s: %s", flags, txm_err_name(rc), txm_error_last()->message);
    cr_assert(t != NULL, "txm_begin returned 0 but no handle");
    return t;
}

txm_tx *conf_begin(txm_conn *c)
{
    txm_tx *t = NULL;
    int rc = txm_begin(&t, c, NULL);
    cr_assert(rc == 0, "txm_begin failed: %s: %s", txm_err_name(rc), txm_error_last()->message);
    cr_assert(t != NULL, "txm_begin returned 0 but no handle");
    return t;
}

void conf_assert_unique_names(const char *constraint, const char *table, const char *column)
{
    if (conf_is("sqlite")) {
        cr_assert(strcmp(table, "t_uniq") == 0, "SQLite UNIQUE: table_name '%s', expected 't_uniq'", table);
        cr_assert(strcmp(column, "code") == 0, "SQLite UNIQUE: column_name '%s', expected 'code'", column);
    } else if (conf_is("postgresql") || conf_is("mysql")) {
        cr_assert(strcmp(constraint, "uq_t_uniq_code") == 0,
                  "%s UNIQUE: constraint_name '%s', expected 'uq_t_uniq_code'", conf.driver, constraint);
    }
}
