/*
 * Harness of the driver conformance suite (one executable, every driver; see docs/conformance.md).
 *
 * The driver is chosen at run time: TXM_TEST_URL if set; otherwise TXM_TEST_DRIVER
 * (sqlite|postgresql|mysql) picks sqlite::memory:, $TXM_TEST_PG_URL or $TXM_TEST_MYSQL_URL.
 * A server driver whose URL variable is missing makes every test skip with a printed reason.
 * TXM_TEST_URL_PREFIX (e.g. "fault+") is put in front of the URL chosen by TXM_TEST_DRIVER: the
 * suite then runs through the fault driver with no fault configured (docs/fault-driver.md).
 *
 * Criterion runs each test in its own process: .init opens a fresh connection (conf.c) and
 * recreates the tables with DDL that works on SQLite, PostgreSQL 15 and MariaDB 10.11; .fini
 * closes it. Tests that need a second connection use an init whose URL two connections can share
 * (a temp file per test when the configured URL is sqlite::memory:).
 */
#ifndef TXM_CONF_HARNESS_H
#define TXM_CONF_HARNESS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "txm.h"

typedef struct conf_env {
    char url[2048];   /* URL of conf.c (shareable by a second connection when `shared`) */
    char tmpdb[1024]; /* temp SQLite file made for this test ("" if none); removed at fini */
    char driver[32];  /* "sqlite", "postgresql", "mysql" (from the URL scheme) */
    bool shared;      /* a second connection to `url` sees the same database */
    txm_conn *c;      /* the test's connection; NULL after a test closed it itself */
} conf_env;
extern conf_env conf;

/* ---- .init / .fini ---- */
void conf_init(void);          /* connection + base tables (t_item, t_uniq, t_counter) */
void conf_init_shared(void);   /* same, on a URL a second connection can share */
void conf_init_all(void);      /* connection + every standard table */
void conf_init_deferred(void); /* shared + base + t_parent, t_dchild (DEFERRABLE FK) if supported */
void conf_init_bare(void);     /* resolves the URL only (no connection, no tables) */
void conf_fini(void);

/* Standard tables (base: every init except bare; the others: conf_init_all):
 *   t_item(id INTEGER PRIMARY KEY, name VARCHAR(100), n INTEGER)
 *   t_uniq(id INTEGER PRIMARY KEY, code VARCHAR(100) NOT NULL, CONSTRAINT uq_t_uniq_code UNIQUE (code))
 *   t_parent(id INTEGER PRIMARY KEY, name VARCHAR(100))
 *   t_child(id INTEGER PRIMARY KEY, parent_id INTEGER, CONSTRAINT fk_t_child_parent FOREIGN KEY ...)
 *   t_check(id INTEGER PRIMARY KEY, qty INTEGER, CONSTRAINT ck_t_check_qty CHECK (qty >= 0))
 *   t_counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)  rows (1, 100) and (2, 100)
 *   t_vals(id INTEGER PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, t VARCHAR(100), b <blob type>)
 * Deferred init adds t_parent and t_dchild(id, parent_id) with fk_t_dchild_parent DEFERRABLE INITIALLY
 * DEFERRED (PostgreSQL, SQLite). */

/* Skips the current test with a reason printed to stderr (also without --verbose). Cleans up
 * first: Criterion does not run .fini after a skip. */
#define CONF_SKIP(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "[SKIP] %s: ", conf.driver);                                              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        conf_fini();                                                                               \
        cr_skip_test(__VA_ARGS__);                                                                 \
    } while (0)

/* TXM_CONFORMANCE_POOLER=transaction: the URL goes through a transaction pooler (PgBouncer
 * pool_mode=transaction), where consecutive transactions of one txm connection may run on
 * different server sessions. Tests that rely on session state (a session SET, session-scoped
 * advisory locks) skip with "needs session pooling" (docs/driver-postgresql.md lists them). */
bool conf_transaction_pooler(void);
#define CONF_NEEDS_SESSION_POOLING(...)                                                            \
    do {                                                                                           \
        if (conf_transaction_pooler())                                                             \
            CONF_SKIP("needs session pooling (TXM_CONFORMANCE_POOLER=transaction): " __VA_ARGS__); \
    } while (0)

/* Asserts that `expr` returns 0, printing the error otherwise. */
#define CONF_OK(expr)                                                                              \
    do {                                                                                           \
        int conf_rc_ = (expr);                                                                     \
        cr_assert(conf_rc_ == 0, "%s failed: %s: %s", #expr, txm_err_name(conf_rc_),              \
                  txm_error_last()->message);                                                      \
    } while (0)

/* Asserts that `expr` returns `want`. */
#define CONF_RC(want, expr)                                                                        \
    do {                                                                                           \
        int conf_rc_ = (expr);                                                                     \
        int conf_want_ = (want);                                                                   \
        cr_assert(conf_rc_ == conf_want_, "%s: expected %s, got %s (%s)", #expr,                  \
                  txm_err_name(conf_want_), txm_err_name(conf_rc_),                                \
                  conf_rc_ ? txm_error_last()->message : "no error");                              \
    } while (0)

/* ---- driver facts ---- */
bool conf_is(const char *driver);  /* conf.driver equals */
/* An embedded engine (SQLite, or any URL without "//"): no sessions to kill, no row-lock waits. */
bool conf_is_embedded(void);
unsigned conf_caps(void);          /* txm_capabilities(conf.c) */
bool conf_has_cap(unsigned cap);

/* ---- connections ---- */
/* Opens another connection to conf.url (the test must use a shared init). */
txm_conn *conf_open_other(void);
/* Opens another connection whose lock waits end quickly: SQLite ?busy_timeout=50, PostgreSQL
 * SET lock_timeout = '50ms', MariaDB SET SESSION innodb_lock_wait_timeout = 1. */
txm_conn *conf_open_short_wait(void);
/* conf.url with `opt` ("k=v") appended as a query parameter, into buf. */
const char *conf_url_with(char *buf, size_t size, const char *opt);

/* ---- transactions (assert success) ---- */
txm_tx *conf_begin(txm_conn *c);
txm_tx *conf_begin_flags(txm_conn *c, unsigned flags);

/* Asserts the names a UNIQUE violation on t_uniq(code) must carry on this driver: the constraint
 * name on PostgreSQL and MySQL/MariaDB, table and column on SQLite. */
void conf_assert_unique_names(const char *constraint, const char *table, const char *column);

/* ---- SQL helpers (assert on failure unless they return the code) ---- */
void conf_exec(txm_conn *c, const char *sql);
int64_t conf_i64(txm_conn *c, const char *sql);          /* first column of the first row */
int64_t conf_count(txm_conn *c, const char *table);      /* SELECT COUNT(*) FROM table */
int64_t conf_count_id(txm_conn *c, const char *table, int64_t id);
int conf_item(txm_conn *c, int64_t id);                  /* INSERT INTO t_item (id, name); returns rc */
int conf_uniq(txm_conn *c, int64_t id, const char *code); /* INSERT INTO t_uniq; returns rc */
int64_t conf_counter(txm_conn *c, int64_t id);           /* t_counter.n of a row */

/* ---- stats ---- */
txm_stats conf_stats(txm_conn *c);
/* now - before, field by field (tx_savepoints: the current absolute value). */
txm_stats conf_delta(txm_conn *c, const txm_stats *before);
void conf_print_stats(const char *label, const txm_stats *s);

/* ---- errors ---- */
typedef struct conf_err {
    int code;
    char name[40];
    char message[600];
    char sqlstate[8];
    int native_code;
    char constraint_name[160];
    char table_name[160];
    char column_name[160];
    unsigned flags;
    bool has_cause;
    int cause_code;
    char cause_message[600];
    char cause_constraint[160];
    char cause_table[160];
    char cause_column[160];
} conf_err;
/* A copy of txm_error_last() (the record is overwritten by the next failing call). */
conf_err conf_last_err(void);
bool conf_contains(const char *haystack, const char *needle); /* case-insensitive */

/* ---- hooks: payloads come from a static pool; the hook appends its name and ',' to conf_log ---- */
#define CONF_MAX_HOOKS 64
typedef struct conf_hook conf_hook;
typedef int (*conf_hook_action)(txm_conn *c, conf_hook *h);
struct conf_hook {
    char name[32];
    int fail;                /* nonzero: the hook calls txm_error_set(fail, ...) and returns it */
    conf_hook_action action; /* optional, runs after logging */
    void *arg;
    int runs;
    int frees;
    int depth_seen;          /* txm_depth() while the hook ran */
};
extern char conf_log[4096];
conf_hook *conf_hook_new(const char *name);
int conf_hook_fn(txm_conn *c, void *payload);
void conf_hook_free(void *payload);
/* Register a new pool hook named `name` (returns the txm rc; *out gets the hook if non-NULL). */
int conf_on_commit(txm_conn *c, const char *name, conf_hook **out);
int conf_on_rollback(txm_conn *c, const char *name, conf_hook **out);
/* Every hook taken from the pool was freed exactly once. */
void conf_assert_freed_once(void);
size_t conf_hook_count(void);

#endif /* TXM_CONF_HARNESS_H */
