/* Internals of txm-billing. Only txm's public API is used here: a build check (tests/billing,
 * billing-layering) fails if a file of billing/ includes anything from core/ or drivers/. */
#ifndef TXM_BILLING_INTERNAL_H
#define TXM_BILLING_INTERNAL_H

#include <txm.h>
#include <txm/billing.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define BL_INTERNAL __attribute__((visibility("hidden")))
#define BL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BL_INTERNAL
#define BL_PRINTF(f, a)
#endif

typedef enum bl_engine { BL_SQLITE = 1, BL_PG = 2, BL_MYSQL = 3 } bl_engine;

/* Quoted table names ("billing_accounts" / `billing_accounts`), and unquoted prefixed names for
 * constraints and lock keys. */
#define BL_NAME_MAX 140
typedef struct bl_tables {
    char accounts[BL_NAME_MAX], entries[BL_NAME_MAX], api_keys[BL_NAME_MAX], upstreams[BL_NAME_MAX],
        usage[BL_NAME_MAX], payouts[BL_NAME_MAX], outbox[BL_NAME_MAX], imports[BL_NAME_MAX],
        import_tasks[BL_NAME_MAX], import_workers[BL_NAME_MAX];
} bl_tables;

struct txm_billing {
    bl_engine engine;
    char driver[32];           /* txm_driver_name of the connection the object was made for */
    char prefix[40];           /* validated: [A-Za-z_][A-Za-z0-9_]{0,31} */
    bl_tables t;               /* quoted */
    txm_retry_policy retry;
    txm_billing_notify_cb notify;
    void *notify_payload;
};

/* TXM_EMISUSE unless c uses the engine b was made for; TXM_EINVALID for NULL b or c. */
BL_INTERNAL int bl_check(const txm_billing *b, txm_conn *c, const char *who);

/* Runs body as a nested level when a transaction is open on c, else as its own transaction
 * retried with b's policy (txm_retry). */
BL_INTERNAL int bl_run(const txm_billing *b, txm_conn *c, txm_body_cb body, void *payload);

/* snprintf into buf; TXM_EINVALID if it does not fit (never truncates silently). */
BL_INTERNAL int bl_sql(char *buf, size_t size, const char *fmt, ...) BL_PRINTF(3, 4);

/* Validates a caller-supplied key/name string: non-NULL, 1..max bytes. TXM_EINVALID naming
 * `what` and `who` otherwise. */
BL_INTERNAL int bl_check_text(const char *s, size_t max, const char *who, const char *what);

/* Autoincrement primary key column DDL and the clause that returns the id of an INSERT
 * (" RETURNING id" on every engine we support: PostgreSQL, SQLite >= 3.35, MariaDB >= 10.5). */
BL_INTERNAL const char *bl_id_ddl(const txm_billing *b);   /* "id BIGSERIAL PRIMARY KEY" etc. */
BL_INTERNAL const char *bl_table_opts(const txm_billing *b); /* " ENGINE=InnoDB" on MySQL, else "" */

/* Runs an INSERT ... RETURNING id (params p[0..n)) through bl_run: *id_out on success. */
BL_INTERNAL int bl_insert_id(const txm_billing *b, txm_conn *c, const char *sql, const txm_value *p, size_t n,
                             int64_t *id_out);

/* Get-or-create (getorcreate.c) on already-quoted names, in the caller's level: see the file. */
typedef struct goc goc;
struct goc {
    const txm_billing *b;
    const char *qtable, *qid, *qkey, *key;
    int64_t id;   /* out */
    int created;  /* out */
};
BL_INTERNAL int bl_get_or_create(txm_conn *c, goc *g);

/* DROP TABLE IF EXISTS qtable. */
BL_INTERNAL int bl_drop_table(txm_conn *c, const char *qtable);

/* Module DDL, called by txm_billing_schema_create in this order (drop: reverse order).
 * Each runs its CREATE TABLE IF NOT EXISTS statements (and triggers) on c. */
BL_INTERNAL int bl_ledger_create(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_ledger_drop(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_usage_create(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_usage_drop(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_payout_create(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_payout_drop(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_import_create(const txm_billing *b, txm_conn *c);
BL_INTERNAL int bl_import_drop(const txm_billing *b, txm_conn *c);

#endif
