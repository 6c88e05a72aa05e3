/*
 * txm-billing — billing on txm's public API: a ledger with running balances, usage snapshots that
 * survive a racing ON DELETE SET NULL, get-or-create, payouts with an outbox, cancelable imports.
 * Every call is correct on SQLite, PostgreSQL and MySQL/MariaDB under concurrency; docs/billing.md
 * explains each design (lock choice per engine, round trips holding a lock, idempotency).
 *
 * Conventions are txm's (include/txm.h): 0 or a negative TXM_E* code, details in txm_error_last(),
 * outputs first, options structs versioned with *_INIT macros.
 *
 * Transactions: every call that writes joins the caller's transaction as a nested level when one is
 * open on the connection (its failure undoes only its own work; the caller's transaction goes on
 * unless the engine lost it: TXM_ERRF_TX_LOST), and otherwise runs as its own transaction, retried
 * on deadlocks and serialization failures with the billing object's retry policy.
 *
 * Amounts are 64-bit integers in minor units (cents). A balance that would leave the int64 range
 * is TXM_EDATA; nothing wraps.
 */
#ifndef TXM_BILLING_H
#define TXM_BILLING_H

#include <txm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A billing configuration: table names, SQL prepared for one kind of engine, policies. Immutable
 * after txm_billing_new: one object may be used from many threads, each with its own connection,
 * as long as the connections use the engine it was made for (else TXM_EMISUSE). */
typedef struct txm_billing txm_billing;

/* Delivers a payout notification (see Payouts). Returns 0 when delivered; anything else leaves the
 * notification in the outbox for txm_billing_outbox_drain. Called outside any transaction. */
typedef int (*txm_billing_notify_cb)(int64_t payout_id, const char *message, void *payload);

#define TXM_BILLING_OPTIONS_VERSION 1
typedef struct txm_billing_options {
    unsigned version;
    /* Prefix of every table name: [A-Za-z_][A-Za-z0-9_]* of at most 32 bytes. Default "billing_".
     * Tables: <prefix>accounts, entries, api_keys, upstreams, usage, payouts, outbox,
     * imports, import_tasks, import_workers. */
    const char *prefix;
    /* Retry policy of calls made outside a caller's transaction. NULL = the billing default
     * (txm_billing_retry_policy_default; chosen by measurement, docs/billing.md). */
    const txm_retry_policy *retry;
    txm_billing_notify_cb notify; /* payout notifications; NULL = they stay in the outbox */
    void *notify_payload;
} txm_billing_options;
#define TXM_BILLING_OPTIONS_INIT { TXM_BILLING_OPTIONS_VERSION, NULL, NULL, NULL, NULL }
TXM_EXTERN int txm_billing_options_init(txm_billing_options *opts, unsigned version);

/* The default retry policy of billing calls (more attempts than txm_retry's default: a dozen
 * writers on one hot account must not exhaust it). */
TXM_EXTERN void txm_billing_retry_policy_default(txm_retry_policy *out);

/* Makes a configuration for the engine of connection c (the connection is not kept).
 * TXM_EINVALID: bad prefix or options. */
TXM_EXTERN int txm_billing_new(txm_billing **out, const txm_conn *c, const txm_billing_options *opts);
TXM_EXTERN void txm_billing_free(txm_billing *b);

/* Creates every billing table that does not exist yet, with its constraints (foreign keys, unique
 * idempotency keys, CHECKs), in one transaction where the engine allows DDL in one (MySQL commits
 * each DDL statement: there it is idempotent statement by statement). Refuses to run inside a
 * transaction (TXM_EMISUSE). Dropping: txm_billing_schema_drop (tests, demos). */
TXM_EXTERN int txm_billing_schema_create(const txm_billing *b, txm_conn *c);
TXM_EXTERN int txm_billing_schema_drop(const txm_billing *b, txm_conn *c);

/* ---------------------------------------------------------------------------------------------
 * Ledger. accounts(id, name unique, balance, last_seq, no_overdraft); entries(id, account_id, seq,
 * amount, balance, idem_key, leg) with unique (account_id, seq) and unique (idem_key, leg).
 * A post stores the entry together with the account's balance after it ("running balance"). The
 * account row is locked for the post (never the last entry, never the table); concurrent posts
 * therefore never compute from the same previous balance, and unique (account_id, seq) makes the
 * database itself refuse a second entry computed from the same previous one.
 * ------------------------------------------------------------------------------------------- */
#define TXM_BILLING_NO_OVERDRAFT 0x1u /* the account's balance may never go below 0 (a CHECK) */

/* Get-or-create of the account called `name` (1..200 bytes of UTF-8). *id_out receives its id;
 * *created_out (may be NULL) 1 if this call created it. flags apply only when creating. */
TXM_EXTERN int txm_billing_account(const txm_billing *b, txm_conn *c, const char *name, unsigned flags,
                                   int64_t *id_out, int *created_out);
/* The account's stored balance. TXM_ENOTFOUND if there is no such account. */
TXM_EXTERN int txm_billing_balance(const txm_billing *b, txm_conn *c, int64_t account_id, int64_t *out);

typedef struct txm_billing_entry {
    int64_t id;
    int64_t account_id;
    int64_t seq;      /* 1, 2, ... per account */
    int64_t amount;
    int64_t balance;  /* the account's balance after this entry */
    int replayed;     /* 1: the idempotency key was posted before; this is that original entry */
} txm_billing_entry;

/* Posts `amount` (non-zero) to the account. idem_key (1..200 bytes, required) makes the post
 * idempotent: posting the same key again returns the original entry (replayed = 1) and changes
 * nothing, also after TXM_ECOMMIT_UNKNOWN; the same key with another account or amount is
 * TXM_EINVALID. Errors: TXM_ENOTFOUND (no such account), TXM_ECHECK (no-overdraft account would
 * go below 0; nothing is written), TXM_EDATA (balance out of range). out may be NULL. */
TXM_EXTERN int txm_billing_post(const txm_billing *b, txm_conn *c, int64_t account_id, int64_t amount,
                                const char *idem_key, txm_billing_entry *out);

/* Moves amount (> 0) from one account to another (distinct): two entries, all-or-nothing, locks
 * taken in account-id order so transfers never deadlock each other. Idempotent by key as a post
 * (entries.leg 0 = the debit, 1 = the credit; a post's entry is leg 0, so a key used by a post is
 * TXM_EINVALID for a transfer and vice versa). Errors as for a post; TXM_ECHECK when the debited
 * account has no overdraft and too little money. debit_out/credit_out may be NULL. */
TXM_EXTERN int txm_billing_transfer(const txm_billing *b, txm_conn *c, int64_t from_account, int64_t to_account,
                                    int64_t amount, const char *idem_key, txm_billing_entry *debit_out,
                                    txm_billing_entry *credit_out);

/* The first inconsistency verify found. */
typedef struct txm_billing_report {
    int64_t accounts;        /* accounts checked */
    int64_t entries;         /* entries checked */
    int ok;                  /* 1: every chain verified */
    int64_t account_id;      /* first bad account (0 if ok) */
    int64_t entry_id;        /* first bad entry (0 if the account row itself is wrong) */
    char message[256];       /* what is wrong, precisely ("" if ok) */
} txm_billing_report;

/* Recomputes every account's chain (each entry's balance = previous balance + amount, seq 1..n
 * without gaps, the account's balance and last_seq = its last entry's) in one consistent snapshot.
 * Returns 0 if everything verifies, TXM_EDATA naming the first mismatch (also in *out), or another
 * error. out may be NULL. */
TXM_EXTERN int txm_billing_verify(const txm_billing *b, txm_conn *c, txm_billing_report *out);

/* ---------------------------------------------------------------------------------------------
 * Usage snapshots. api_keys(id, name, quota_used), upstreams(id, name), usage(id, account_id,
 * api_key_id, upstream_id, units); usage.api_key_id and usage.upstream_id reference their tables
 * ON DELETE SET NULL (constraints <prefix>usage_api_key_fk, <prefix>usage_upstream_fk);
 * usage.account_id references accounts and is not nullable by retry.
 * ------------------------------------------------------------------------------------------- */
TXM_EXTERN int txm_billing_api_key_create(const txm_billing *b, txm_conn *c, const char *name, int64_t *id_out);
TXM_EXTERN int txm_billing_upstream_create(const txm_billing *b, txm_conn *c, const char *name, int64_t *id_out);

typedef struct txm_billing_usage {
    int64_t account_id;  /* 0 = none */
    int64_t api_key_id;  /* 0 = none */
    int64_t upstream_id; /* 0 = none */
    int64_t units;       /* >= 0 (a CHECK); added to the api key's quota_used */
} txm_billing_usage;

typedef struct txm_billing_usage_result {
    int64_t id;          /* the snapshot row */
    int64_t api_key_id;  /* as written: 0 if NULL (none given, or nulled by the retry) */
    int64_t upstream_id; /* as written */
    int retried;         /* 1 if a vanished reference was nulled and the insert retried */
    int64_t quota_delta; /* units added to api_keys.quota_used (0 when api_key_id was not written) */
} txm_billing_usage_result;

/* Inserts a usage snapshot in a nested level. If the insert fails with TXM_EFOREIGN_KEY on the
 * api-key or upstream reference (a racing delete), that column is set NULL and the insert retried
 * once, at once; the caller's transaction survives. Any other error (another constraint, a CHECK,
 * a second FK failure) propagates with txm's error record intact. The quota delta is applied only
 * for an api key actually written. out may be NULL. */
TXM_EXTERN int txm_billing_usage_record(const txm_billing *b, txm_conn *c, const txm_billing_usage *in,
                                        txm_billing_usage_result *out);

/* ---------------------------------------------------------------------------------------------
 * Get-or-create by a unique key, on any table: insert-if-absent, then a locking read, looping until
 * the row is found (a concurrent delete between the two makes it go round again). No SERIALIZABLE,
 * no ON CONFLICT DO UPDATE / ON DUPLICATE KEY UPDATE (they fire update triggers), no INSERT IGNORE
 * (it also swallows FK, NOT NULL and truncation errors). Works inside a caller's REPEATABLE READ
 * transaction on MySQL. Table and column names are validated and quoted (txm_quote_ident); other
 * columns of the table need defaults. *created_out may be NULL.
 * ------------------------------------------------------------------------------------------- */
TXM_EXTERN int txm_billing_get_or_create(const txm_billing *b, txm_conn *c, const char *table,
                                         const char *id_column, const char *key_column, const char *key,
                                         int64_t *id_out, int *created_out);

/* ---------------------------------------------------------------------------------------------
 * Payouts. payouts(id, account_id, amount, status 'pending'|'paid'); outbox(id, payout_id unique,
 * message, delivered, claims, claimed_at). Marking a payout paid (pending -> paid) writes its notification to the
 * outbox in the same transaction and registers an on-commit hook that delivers it (options.notify)
 * and marks it delivered: a notification is never
 * delivered for a payout whose transaction rolled back. Notifications left undelivered (a crash
 * between commit and hook, a failing notify) are delivered by txm_billing_outbox_drain:
 * at-least-once, each carrying its payout id for deduplication.
 * ------------------------------------------------------------------------------------------- */
/* A pending payout of amount (> 0, else TXM_EINVALID) to the account (TXM_ENOTFOUND if none). */
TXM_EXTERN int txm_billing_payout_create(const txm_billing *b, txm_conn *c, int64_t account_id, int64_t amount,
                                         int64_t *id_out);
/* pending -> paid. TXM_ENOTFOUND (no such payout), TXM_EINVALID (not pending: names its status).
 * Outside a transaction the notification is delivered before the call returns; inside one, after
 * the outermost commit. A notify that fails there makes that commit return TXM_EHOOK (committed;
 * the notification stays in the outbox). The hook keeps its own copy of what it needs: b may be
 * freed before the commit. */
TXM_EXTERN int txm_billing_payout_mark_paid(const txm_billing *b, txm_conn *c, int64_t payout_id);
/* All-or-nothing: one transaction (or the caller's), a nested level per payout. If any fails,
 * nothing is paid, no notification is delivered, and *failed_index_out (may be NULL) names it
 * (n when no item failed, also when the failure was not an item's, e.g. the COMMIT); the error is
 * that item's. A payout listed twice fails the second time (already paid by the first). */
TXM_EXTERN int txm_billing_payouts_mark_paid(const txm_billing *b, txm_conn *c, const int64_t *payout_ids,
                                             size_t n, size_t *failed_index_out);
/* Delivers every undelivered notification in payout-id order; *delivered_out (may be NULL)
 * counts them. Refuses to run inside a transaction (TXM_EMISUSE) and without options.notify
 * (TXM_EINVALID). A row being delivered by a hook or another drain is skipped (each row is
 * claimed first); a claim left by a crashed process is taken over after a lease of 120 s. When
 * notify fails for some rows the others are still tried, and the result is TXM_ERROR counting
 * the failures (they stay in the outbox). */
TXM_EXTERN int txm_billing_outbox_drain(const txm_billing *b, txm_conn *c, size_t *delivered_out);

/* ---------------------------------------------------------------------------------------------
 * Cancelable imports. imports(id, name, status 'running'|'canceled'), import_tasks(id, import_id,
 * payload). Workers hold a shared lock on their import while they run; cancel deletes the pending
 * tasks, then takes the exclusive lock with a timeout, so it returns only after every running
 * worker finished (TXM_ELOCK_TIMEOUT if they did not in time). PostgreSQL: shared/exclusive
 * advisory locks. MySQL/MariaDB (no shared named locks): one named lock per worker plus a
 * registry table. SQLite: each task runs in a write transaction, which is the lock (docs/billing.md).
 * ------------------------------------------------------------------------------------------- */
TXM_EXTERN int txm_billing_import_create(const txm_billing *b, txm_conn *c, const char *name, int64_t *id_out);
TXM_EXTERN int txm_billing_import_add_task(const txm_billing *b, txm_conn *c, int64_t import_id,
                                           const char *payload, int64_t *task_id_out);

/* Processes one task: runs inside the task's transaction on c (its writes commit with the task's
 * completion). Non-zero stops the worker, which returns that value; the task stays pending. */
typedef int (*txm_billing_task_cb)(txm_conn *c, int64_t import_id, int64_t task_id, const char *payload,
                                   void *payload_arg);

/* A worker: takes tasks of the import one at a time until none is left or the import is canceled.
 * Refuses to run inside a caller's transaction (txm_forbid_transaction). *done_out (may be NULL)
 * counts the tasks it completed. */
TXM_EXTERN int txm_billing_import_run(const txm_billing *b, txm_conn *c, int64_t import_id, txm_billing_task_cb fn,
                                      void *payload_arg, size_t *done_out);
/* Marks the import canceled, deletes its pending tasks (*deleted_out, may be NULL) and waits up to
 * timeout_ms (< 0: forever) for running workers to finish. Returns 0 once no worker runs, or
 * TXM_ELOCK_TIMEOUT (the import is canceled; call again to wait). SQLite: the wait is the
 * connection's busy_timeout, and a timeout there changes nothing. Refuses to run inside a
 * transaction. */
TXM_EXTERN int txm_billing_import_cancel(const txm_billing *b, txm_conn *c, int64_t import_id, int timeout_ms,
                                         int64_t *deleted_out);

#ifdef __cplusplus
}
#endif
#endif /* TXM_BILLING_H */
