/*
 * txm — transaction middleware for PostgreSQL, MySQL/MariaDB and SQLite.
 *
 * Conventions (see docs/semantics.md for the full contracts):
 *  - Functions return 0 on success or a negative TXM_E* code. Details of the last failure are in
 *    txm_error_last(), a per-thread record valid until the thread's next failing txm call.
 *  - Outputs come first and are named `out`; on failure *out is set to NULL.
 *  - Objects returned through **out are owned by the caller and freed with their *_free/close
 *    function, which accepts NULL.
 *  - Options structs start with `unsigned version`; initialise them with the *_INIT macro.
 *    A NULL options pointer means defaults; an unknown version is TXM_EINVALID.
 *  - Threads: one txm_conn is used by one thread at a time. Different connections may be used
 *    from different threads at the same time. The driver registry is thread-safe.
 *  - Callbacks take `void *payload` last.
 */
#ifndef TXM_H
#define TXM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TXM_BUILDING) && defined(__GNUC__)
#define TXM_EXTERN __attribute__((visibility("default")))
#else
#define TXM_EXTERN
#endif

#if defined(__GNUC__)
#define TXM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TXM_PRINTF(f, a)
#endif

#define TXM_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Error codes. One table generates the enum, txm_err_name() and txm_strerror().
 * Codes are append-only: never renumbered, never removed.
 * ------------------------------------------------------------------------------------------- */
#define TXM_ERRNO_MAP(X)                                                                          \
    X(OK, 0, "success")                                                                           \
    X(ERROR, -1, "database error")                                                                \
    X(EUNIQUE, -2, "unique constraint violated")                                                  \
    X(EFOREIGN_KEY, -3, "foreign key constraint violated")                                        \
    X(ENOT_NULL, -4, "not-null constraint violated")                                              \
    X(ECHECK, -5, "check constraint violated")                                                    \
    X(EEXCLUSION, -6, "exclusion constraint violated")                                            \
    X(EDEADLOCK, -7, "deadlock detected; the transaction was rolled back")                        \
    X(ESERIALIZATION, -8, "could not serialize access; the transaction was rolled back")          \
    X(ELOCK_TIMEOUT, -9, "lock wait timed out")                                                   \
    X(ECANCELED, -10, "statement canceled")                                                       \
    X(ETX_ABORTED, -11, "transaction is aborted; roll it back")                                   \
    X(EREAD_ONLY, -12, "write refused: read-only transaction or database")                        \
    X(ECONNECTION, -13, "connection to the database failed or was lost")                          \
    X(ECOMMIT_UNKNOWN, -14, "connection lost during COMMIT: outcome unknown")                     \
    X(ESYNTAX, -15, "SQL syntax error or undefined object")                                       \
    X(EMISUSE, -16, "API misuse")                                                                 \
    X(ENOMEM, -17, "out of memory")                                                               \
    X(ENOTSUPPORTED, -18, "not supported by this driver")                                         \
    X(EHOOK, -19, "committed, but one or more on-commit hooks failed")                            \
    X(EINVALID, -20, "invalid argument")                                                          \
    X(ESTATE, -21, "server transaction state diverged from txm's (implicit commit?)")             \
    X(EDATA, -22, "invalid data value (type, range or format)")                                   \
    X(EAUTH, -23, "authentication or authorization failed")                                       \
    X(ENOTFOUND, -24, "no such row, driver or object")

typedef enum txm_errno {
#define TXM_ERRNO_ENUM_(name, value, text) TXM_##name = value,
    TXM_ERRNO_MAP(TXM_ERRNO_ENUM_)
#undef TXM_ERRNO_ENUM_
    TXM_ERRNO_LAST_ = -24 /* most negative code in the table */
} txm_errno;

/* Flags of a txm_error. */
#define TXM_ERRF_TX_LOST 0x1u /* the server rolled back the whole transaction (every level) */

/*
 * Details of a failure. All strings are non-NULL ("" when unknown) except `cause`.
 * `cause` is set on TXM_ETX_ABORTED (the error that aborted the transaction) and on TXM_EHOOK
 * (the first failing hook's error), else NULL.
 * Fields come from the engine's own error fields, never from parsing localized text, except for
 * MySQL/MariaDB names (see docs/errors.md), which are left "" when unparseable. docs/errors.md,
 * "Error fields per engine", says which field each engine fills, and when.
 * column_name: the column a NOT NULL violation, or a UNIQUE / FOREIGN KEY / CHECK constraint on
 * exactly one column, is about ("" for several columns). On PostgreSQL the latter comes from the
 * catalog: at once outside a transaction; inside one it may be "" in the failing statement's
 * record and is filled in the thread's record (and cause) when the transaction ends.
 * sqlstate of TXM_ETX_ABORTED: "25P02" on PostgreSQL (also when txm refuses without a round
 * trip), "" on engines without such a state (MySQL/MariaDB, SQLite).
 */
typedef struct txm_error {
    int code;                   /* a TXM_E* code */
    const char *message;        /* human-readable; never contains a password */
    const char *sqlstate;       /* 5-character SQLSTATE, "" if the engine has none */
    int native_code;            /* MySQL errno, SQLite extended result code, 0 on PostgreSQL */
    const char *constraint_name;
    const char *table_name;
    const char *column_name;
    const char *schema_name;
    const char *detail;         /* engine detail text (PostgreSQL DETAIL), may be "" */
    unsigned flags;             /* TXM_ERRF_* */
    const struct txm_error *cause;
} txm_error;

/* The calling thread's last error. Never NULL; code is TXM_OK if no call has failed yet. The
 * record is overwritten by the thread's next failing call: copy what you need. */
TXM_EXTERN const txm_error *txm_error_last(void);
/* Resets the calling thread's last error to TXM_OK. */
TXM_EXTERN void txm_error_clear(void);
/* Sets the calling thread's last error (for hooks and bodies that want to report a reason).
 * Returns `code`, so `return txm_error_set(TXM_ERROR, "...")` reads naturally. */
TXM_EXTERN int txm_error_set(int code, const char *fmt, ...) TXM_PRINTF(2, 3);
/* "TXM_EUNIQUE" for TXM_EUNIQUE; "TXM_E?" for values outside the table. Never NULL. */
TXM_EXTERN const char *txm_err_name(int code);
/* A static description of `code`; "unknown error code" outside the table. Never NULL. */
TXM_EXTERN const char *txm_strerror(int code);
/* 1 if `code` is one of the constraint classes (UNIQUE, FOREIGN_KEY, NOT_NULL, CHECK, EXCLUSION). */
TXM_EXTERN int txm_err_is_constraint(int code);
/* 1 if retrying the whole transaction may succeed: DEADLOCK, SERIALIZATION (and, for the
 * error record, TX_ABORTED whose cause is one of those). */
TXM_EXTERN int txm_err_is_transient(const txm_error *err);

/* ---------------------------------------------------------------------------------------------
 * Values (statement parameters) and result rows.
 * ------------------------------------------------------------------------------------------- */
typedef enum txm_type { TXM_T_NULL = 0, TXM_T_INT = 1, TXM_T_REAL = 2, TXM_T_TEXT = 3, TXM_T_BLOB = 4 } txm_type;

/* A parameter value. Text and blob values are borrowed: they must stay valid during the call. */
typedef struct txm_value {
    txm_type type;
    union {
        int64_t i;
        double d;
        struct {
            const void *ptr;
            size_t len;
        } buf;
    } u;
} txm_value;

static inline txm_value txm_null(void) { txm_value v; v.type = TXM_T_NULL; v.u.i = 0; return v; }
static inline txm_value txm_int(int64_t i) { txm_value v; v.type = TXM_T_INT; v.u.i = i; return v; }
static inline txm_value txm_real(double d) { txm_value v; v.type = TXM_T_REAL; v.u.d = d; return v; }
/* NUL-terminated text; a NULL pointer gives SQL NULL. */
static inline txm_value txm_text(const char *s)
{
    txm_value v;
    size_t n = 0;
    if (!s)
        return txm_null();
    while (s[n])
        n++;
    v.type = TXM_T_TEXT;
    v.u.buf.ptr = s;
    v.u.buf.len = n;
    return v;
}
static inline txm_value txm_textn(const char *s, size_t n) { txm_value v; v.type = TXM_T_TEXT; v.u.buf.ptr = s; v.u.buf.len = n; return v; }
static inline txm_value txm_blob(const void *p, size_t n) { txm_value v; v.type = TXM_T_BLOB; v.u.buf.ptr = p; v.u.buf.len = n; return v; }

typedef struct txm_conn txm_conn;
typedef struct txm_tx txm_tx;
typedef struct txm_rows txm_rows;

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */
typedef enum txm_log_level { TXM_LOG_ERROR = 0, TXM_LOG_WARN = 1, TXM_LOG_INFO = 2, TXM_LOG_DEBUG = 3 } txm_log_level;
typedef void (*txm_log_cb)(txm_log_level level, const char *message, void *payload);

/* Version 2 added autocommit_retries; version 1 structs (without it) are still accepted. */
#define TXM_OPEN_OPTIONS_VERSION 2
#define TXM_AUTOCOMMIT_RETRIES_MAX 100
typedef struct txm_open_options {
    unsigned version;
    txm_log_cb log;          /* NULL: no logging. Messages never contain passwords. */
    void *log_payload;
    txm_log_level log_level; /* messages above this level are not produced */
    /* Version 2. Extra attempts (0 = off, the default; at most TXM_AUTOCOMMIT_RETRIES_MAX) for a
     * statement run OUTSIDE a transaction (txm_exec, txm_query, txm_query_i64, txm_lock,
     * txm_unlock at depth 0) that fails with TXM_EDEADLOCK or TXM_ESERIALIZATION: the engine
     * rolled that single statement back, so running it again is safe. Backoff as txm_retry's
     * default policy. Never inside a transaction (nor a test baseline), never txm_batch (use its
     * retry option), never another category (TXM_ECONNECTION: the statement may have run).
     * Counted in txm_stats.autocommit_retries. The URL parameter txm_autocommit_retries=N (any
     * driver; removed before the driver sees the URL) overrides this field when present. See
     * docs/semantics.md, "Retrying autocommit statements". */
    unsigned autocommit_retries;
} txm_open_options;
#define TXM_OPEN_OPTIONS_INIT { TXM_OPEN_OPTIONS_VERSION, NULL, NULL, TXM_LOG_WARN, 0 }
/* Fills opts with the defaults of `version` (1 or 2): a version 1 struct is only as large as
 * version 1 was, so only its fields are written. */
TXM_EXTERN int txm_open_options_init(txm_open_options *opts, unsigned version);

/*
 * Opens a connection. URL forms (the scheme picks the driver):
 *   sqlite:PATH | sqlite::memory: | sqlite:PATH?busy_timeout=MS&mode=ro|rw|rwc&foreign_keys=0|1&journal=wal
 *   postgresql://... | postgres://...   (passed to libpq unchanged)
 *   mysql://user:pass@host:port/db?opts | mariadb://...
 * Every driver also takes txm_autocommit_retries=N (see txm_open_options), which txm removes
 * before the driver sees the URL.
 * On failure *out is NULL and nothing needs closing. Errors: TXM_EINVALID (bad URL or options),
 * TXM_ENOTFOUND (no driver for the scheme), TXM_ECONNECTION, TXM_EAUTH, TXM_ENOMEM.
 */
TXM_EXTERN int txm_open(txm_conn **out, const char *url, const txm_open_options *opts);

/* Rolls back every open level (running on-rollback hooks, which can no longer use the connection),
 * frees every hook payload and closes the connection. NULL-safe; a second call is a no-op.
 * Called from a hook, body or callback of a txm call running on c, the close is deferred: every
 * later call on c returns TXM_EMISUSE ("connection is closing"), and c is closed when the
 * outermost txm call on it returns (with its result unchanged); the caller must not use c after
 * that. Using c after txm_close has freed it is undefined, like use after free(). */
TXM_EXTERN void txm_close(txm_conn *c);

/* The driver's name ("sqlite", "postgresql", "mysql") and capability bits (TXM_CAP_*). */
TXM_EXTERN const char *txm_driver_name(const txm_conn *c);
TXM_EXTERN unsigned txm_capabilities(const txm_conn *c);
#define TXM_CAP_PIPELINE 0x01u        /* control statements travel in the same flight */
#define TXM_CAP_ADVISORY_LOCKS 0x02u  /* txm_lock exclusive locks */
#define TXM_CAP_SHARED_LOCKS 0x04u    /* txm_lock with TXM_LOCK_SHARED */
#define TXM_CAP_ISOLATION 0x08u       /* isolation levels other than the default are honoured */
#define TXM_CAP_READ_ONLY_TX 0x10u    /* the engine rejects writes in TXM_TX_READ_ONLY levels */
#define TXM_CAP_RESOLVE_OUTCOME 0x20u /* txm_resolve_outcome can answer */
#define TXM_CAP_CANCEL 0x40u          /* txm_cancel works */
#define TXM_CAP_RECONNECT 0x80u       /* txm_reconnect works */
#define TXM_CAP_TX_TIMEOUTS 0x100u    /* txm_tx_options lock_timeout_ms / statement_timeout_ms */

/* ---------------------------------------------------------------------------------------------
 * Statements. SQL uses portable `?` placeholders; `?` inside string literals, quoted identifiers,
 * comments and PostgreSQL dollar-quoted strings is left alone. The number of placeholders must
 * equal n (TXM_EINVALID otherwise, nothing sent).
 * Inside a transaction, a failing statement poisons its level (see txm_begin) and later
 * statements are refused with TXM_ETX_ABORTED without contacting the server.
 * Transaction control SQL (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, START TRANSACTION, END,
 * ABORT, XA, PREPARE TRANSACTION) is refused with TXM_EMISUSE: use txm_begin/txm_commit/txm_rollback.
 * ------------------------------------------------------------------------------------------- */

/* Runs a statement that returns no rows (rows, if any, are discarded). *affected_out (may be NULL)
 * receives the number of rows changed, or -1 if the engine does not say. */
TXM_EXTERN int txm_exec(txm_conn *c, const char *sql, const txm_value *params, size_t n, int64_t *affected_out);

/* Runs a query and buffers its result. Free with txm_rows_free. */
TXM_EXTERN int txm_query(txm_rows **out, txm_conn *c, const char *sql, const txm_value *params, size_t n);

/* Runs a query and stores its first row's first column (text holding an integer is converted,
 * other values read as 0: see txm_rows_get_i64). TXM_ENOTFOUND if there is no row ("no row" in
 * the message) or the value is NULL ("the value is NULL"); use txm_query_i64_or_null where the two
 * must be told apart. *out is 0 on failure. */
TXM_EXTERN int txm_query_i64(txm_conn *c, int64_t *out, const char *sql, const txm_value *params, size_t n);

/* As txm_query_i64, but a NULL value is a success: returns 0 with *is_null = 1 and *out = 0 for a
 * NULL, 0 with *is_null = 0 and the value for a non-NULL, and TXM_ENOTFOUND only when there is no
 * row (*is_null = 0). A row without columns is TXM_EINVALID. out and is_null must not be NULL
 * (TXM_EINVALID). Other errors as txm_query. */
TXM_EXTERN int txm_query_i64_or_null(txm_conn *c, int64_t *out, int *is_null, const char *sql, const txm_value *params,
                                     size_t n);

/* Advances to the next row: returns 1 if there is one, 0 at the end (also on NULL). Before the
 * first call there is no current row. */
TXM_EXTERN int txm_rows_next(txm_rows *r);
TXM_EXTERN size_t txm_rows_count(const txm_rows *r);   /* number of rows in the result */
TXM_EXTERN size_t txm_rows_columns(const txm_rows *r); /* number of columns */
TXM_EXTERN const char *txm_rows_column_name(const txm_rows *r, size_t col); /* NULL if out of range */
/* Column index by name, or -1. */
TXM_EXTERN int txm_rows_column_index(const txm_rows *r, const char *name);
/* Accessors read the current row; out-of-range columns, or no current row, read as NULL.
 * get_i64 converts text holding an integer; other values read as 0. Text and blob pointers stay
 * valid until txm_rows_free. get_text never returns NULL for non-NULL values. */
TXM_EXTERN txm_type txm_rows_type(const txm_rows *r, size_t col);
TXM_EXTERN int txm_rows_is_null(const txm_rows *r, size_t col);
TXM_EXTERN int64_t txm_rows_get_i64(const txm_rows *r, size_t col);
TXM_EXTERN double txm_rows_get_double(const txm_rows *r, size_t col);
TXM_EXTERN const char *txm_rows_get_text(const txm_rows *r, size_t col, size_t *len_out);
TXM_EXTERN void txm_rows_free(txm_rows *r);

/* ---------------------------------------------------------------------------------------------
 * Transactions
 *
 * txm_begin opens a level: the outermost level is a transaction, a nested one a savepoint
 * (nothing is sent until the first statement needs it: an empty level costs no round trip).
 * txm_commit and txm_rollback end the level and invalidate the handle; levels end innermost
 * first (ending another level is TXM_EMISUSE and changes nothing).
 * A failing statement marks the innermost savepoint-owning level failed ("poisoned"): later
 * statements in it fail with TXM_ETX_ABORTED (cause = the original error) without a round trip,
 * and committing it rolls it back and returns TXM_ETX_ABORTED. Errors after which the server
 * has rolled back the whole transaction (deadlock, serialization failure, connection loss, ...)
 * poison every level; only the outermost rollback recovers.
 * ------------------------------------------------------------------------------------------- */
typedef enum txm_isolation {
    TXM_ISOLATION_DEFAULT = 0,
    TXM_ISOLATION_READ_UNCOMMITTED,
    TXM_ISOLATION_READ_COMMITTED,
    TXM_ISOLATION_REPEATABLE_READ,
    TXM_ISOLATION_SERIALIZABLE
} txm_isolation;

#define TXM_TX_DURABLE 0x1u    /* must be the outermost level (TXM_EMISUSE otherwise) */
#define TXM_TX_JOIN 0x2u       /* nested only: no savepoint; a failure dooms the nearest savepoint owner */
#define TXM_TX_READ_ONLY 0x4u  /* outermost only */
#define TXM_TX_DEFERRABLE 0x8u /* outermost only; PostgreSQL SERIALIZABLE READ ONLY DEFERRABLE */

/* Version 2 added lock_timeout_ms and statement_timeout_ms. A version-1 struct (the first three
 * fields only) is still accepted by txm_begin, txm_atomic, txm_batch and txm_retry, and
 * txm_tx_options_init(opts, 1) fills only those three fields. Initialize with TXM_TX_OPTIONS_INIT,
 * txm_tx_options_init or designated initializers ({.version = TXM_TX_OPTIONS_VERSION, .flags = ...}):
 * a positional list stays correct when fields are added (they are zero) but warns under -Wextra. */
#define TXM_TX_OPTIONS_VERSION 2
/* Largest per-transaction timeout, in milliseconds (PostgreSQL's limit for both settings). */
#define TXM_TX_TIMEOUT_MAX_MS 2147483647u
typedef struct txm_tx_options {
    unsigned version;
    unsigned flags;          /* TXM_TX_* */
    txm_isolation isolation; /* outermost only */
    /* --- version 2 --- outermost only; 0 = the session's own setting. They hold for this
     * transaction alone and need no session state, so they work behind a transaction pooler
     * (PgBouncer pool_mode=transaction). Needs TXM_CAP_TX_TIMEOUTS (TXM_ENOTSUPPORTED otherwise).
     * See docs/semantics.md "Per-transaction timeouts" for each engine's exact meaning. */
    unsigned lock_timeout_ms;      /* a lock wait longer than this fails with TXM_ELOCK_TIMEOUT */
    unsigned statement_timeout_ms; /* a statement running longer than this fails with TXM_ECANCELED */
} txm_tx_options;
#define TXM_TX_OPTIONS_INIT { TXM_TX_OPTIONS_VERSION, 0, TXM_ISOLATION_DEFAULT, 0, 0 }
TXM_EXTERN int txm_tx_options_init(txm_tx_options *opts, unsigned version);

/* Opens a level (see above). Errors: TXM_EMISUSE (durable when nested; isolation/read-only or a
 * timeout on a nested level; join at the outermost level), TXM_EINVALID (a timeout above
 * TXM_TX_TIMEOUT_MAX_MS, unknown version/flags), TXM_ENOTSUPPORTED (a timeout with a driver
 * without TXM_CAP_TX_TIMEOUTS, or under a test baseline), TXM_ENOMEM, TXM_ECONNECTION (the
 * connection was lost and not reconnected). Sends nothing. */
TXM_EXTERN int txm_begin(txm_tx **out, txm_conn *c, const txm_tx_options *opts);

/* Ends the level. Outermost: COMMIT, then the on-commit hooks once the connection is idle.
 * Nested: the savepoint is released (lazily) and the level's hooks move to its parent.
 * A failed level is rolled back instead and TXM_ETX_ABORTED is returned.
 * If COMMIT fails the transaction is rolled back (on-rollback hooks run) and the error returned;
 * TXM_ECOMMIT_UNKNOWN means the outcome is unknown: no hook runs, every payload is freed.
 * TXM_EHOOK: committed, but a hook failed (the message counts them and quotes the first).
 * The handle is invalid after any return other than TXM_EMISUSE. */
TXM_EXTERN int txm_commit(txm_tx *tx);

/* Ends the level, undoing its work: discards its on-commit hooks (and those of levels released
 * into it) and runs its on-rollback hooks. A join level dooms its nearest savepoint owner.
 * If the outermost ROLLBACK fails and the server does not report that no transaction is open, the
 * connection is marked lost (TXM_ECONNECTION until txm_reconnect; txm_close is always safe), so
 * the next BEGIN can never run inside, or commit, the rolled-back work.
 * The handle is invalid after any return other than TXM_EMISUSE. */
TXM_EXTERN int txm_rollback(txm_tx *tx);

/* Current depth of open levels visible to the application: 0 = no transaction. A test baseline
 * (txm_test_baseline) is not counted. */
TXM_EXTERN int txm_depth(const txm_conn *c);
/* TXM_EMISUSE, with a message naming `who`, unless a transaction is open. */
TXM_EXTERN int txm_require_transaction(txm_conn *c, const char *who);
/* TXM_EMISUSE, with a message naming `who`, if a transaction is open (side effects that must not
 * run inside a transaction: HTTP calls, e-mails). */
TXM_EXTERN int txm_forbid_transaction(txm_conn *c, const char *who);

typedef int (*txm_body_cb)(txm_conn *c, void *payload);

/* Begins a level, runs body, commits if body returns 0, else rolls back and returns body's
 * result. A body that leaves inner levels open has them rolled back and gets TXM_EMISUSE. */
TXM_EXTERN int txm_atomic(txm_conn *c, const txm_tx_options *opts, txm_body_cb body, void *payload);

/* ---------------------------------------------------------------------------------------------
 * Hooks. A hook returns 0 on success; a non-zero return counts as a failure (it may call
 * txm_error_set to explain). If registering fails, the hook never runs and the payload is NOT
 * freed (it was never taken). Once registered, free_payload (may be NULL) is called exactly once,
 * whether or not the hook ran.
 * ------------------------------------------------------------------------------------------- */
typedef int (*txm_hook_cb)(txm_conn *c, void *payload);

/* Runs fn after the outermost COMMIT succeeds, in registration order, with the connection idle
 * (fn may open transactions). Outside a transaction fn runs at once (its failure: TXM_EHOOK).
 * Hooks never run inside a hook: a call made in a hook that would run hooks (txm_commit,
 * txm_rollback, txm_atomic, txm_retry, txm_on_commit at depth 0) queues them to run right after
 * the current hook returns, and returns without counting them; the call that started running
 * hooks reports every hook it ran. A hook ends only levels it opened; levels it leaves open are
 * rolled back and the hook counts as failed. */
TXM_EXTERN int txm_on_commit(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *));
/* Runs fn when the current level (or an ancestor it was released into) rolls back. Outside a
 * transaction fn never runs (its payload is freed at once). */
TXM_EXTERN int txm_on_rollback(txm_conn *c, txm_hook_cb fn, void *payload, void (*free_payload)(void *));

/* ---------------------------------------------------------------------------------------------
 * Retry
 * ------------------------------------------------------------------------------------------- */
#define TXM_RETRY_DEADLOCK 0x1u
#define TXM_RETRY_SERIALIZATION 0x2u
#define TXM_RETRY_LOCK_TIMEOUT 0x4u
#define TXM_RETRY_DEFAULT (TXM_RETRY_DEADLOCK | TXM_RETRY_SERIALIZATION)

/* How the backoff between attempts is drawn (txm_retry_policy.jitter, version 2). Both start
 * from the capped exponential bound = min(max_delay_us, base_delay_us * 2^(attempt-1)):
 *   TXM_RETRY_JITTER_FULL  sleep = rand(0, bound) (the default): losers of one conflict spread
 *                          out instead of colliding again at the same instant;
 *   TXM_RETRY_JITTER_NONE  sleep = bound exactly: a predictable schedule (e.g. a caller that
 *                          adds its own randomness, or compares schedules); every loser of one
 *                          conflict wakes at the same time, which re-creates the conflict
 *                          (measured: docs/bench.md, "Retry policies side by side").
 * base_delay_us = 0 (or max_delay_us = 0) means no backoff at all: the next attempt starts at
 * once, with either jitter. */
#define TXM_RETRY_JITTER_FULL 0u
#define TXM_RETRY_JITTER_NONE 1u

/* Version 2 added `jitter`. A version-1 struct (the fields up to `seed`) is still accepted by
 * txm_retry and txm_batch (full jitter), and txm_retry_policy_init(p, 1) fills only its fields. */
#define TXM_RETRY_POLICY_VERSION 2
typedef struct txm_retry_policy {
    unsigned version;
    unsigned max_attempts;    /* total attempts, >= 1 (default 30: with 8 SERIALIZABLE writers on
                               * one row no transaction gave up in any measured run; 5, the old
                               * default, gave up on up to 12 %: docs/semantics.md, "Sizing the
                               * retry policy") */
    unsigned base_delay_us;   /* backoff base (default 2000); 0 = no backoff */
    unsigned max_delay_us;    /* backoff cap (default 200000) */
    unsigned deadline_ms;     /* 0 = none (default); no attempt starts after this budget is spent */
    unsigned retry_on;        /* TXM_RETRY_* (default TXM_RETRY_DEFAULT) */
    const txm_tx_options *tx; /* options of each attempt's transaction; NULL = defaults */
    /* Called before each retry with the attempt number that failed (1-based) and its error. */
    void (*before_retry)(unsigned attempt, const txm_error *err, void *payload);
    void *payload;
    uint64_t seed;            /* 0 = random; otherwise a fixed jitter sequence (tests) */
    /* --- version 2 --- */
    unsigned jitter;          /* TXM_RETRY_JITTER_FULL (default) or TXM_RETRY_JITTER_NONE;
                               * another value: TXM_EINVALID */
} txm_retry_policy;
#define TXM_RETRY_POLICY_INIT                                                                                  \
    { TXM_RETRY_POLICY_VERSION, 30, 2000, 200000, 0, TXM_RETRY_DEFAULT, NULL, NULL, NULL, 0, TXM_RETRY_JITTER_FULL }
TXM_EXTERN int txm_retry_policy_init(txm_retry_policy *p, unsigned version);

/* Runs body in a fresh transaction (BEGIN, body, COMMIT) and retries the whole attempt after a
 * capped exponential backoff, by default with full jitter, sleep = rand(0, min(max_delay,
 * base_delay * 2^(attempt-1))) (see TXM_RETRY_JITTER_*), when body or COMMIT fails with a
 * category in retry_on. Refuses to run inside an open
 * transaction (TXM_EMISUSE). On-commit hooks of failed attempts never run. TXM_ECOMMIT_UNKNOWN
 * is never retried. Returns 0, body's non-retryable result, or the last error. */
TXM_EXTERN int txm_retry(txm_conn *c, const txm_retry_policy *p, txm_body_cb body, void *payload);

/* ---------------------------------------------------------------------------------------------
 * Batches: several statements executed atomically, in one flight where the driver pipelines
 * (TXM_CAP_PIPELINE). At depth 0 the batch is its own transaction: BEGIN, the statements and
 * COMMIT travel together, so a row lock taken by the first statement is held for no client round
 * trip. Inside a transaction it is a nested level (a savepoint travels with the statements): if a
 * statement fails, the batch's work is undone and the caller's transaction goes on (unless the
 * error lost the whole transaction: TXM_ERRF_TX_LOST). A statement with rows_out ends its flight
 * when more work follows it (a failure buffering its rows must stop the batch before the server
 * runs the rest); on MySQL/MariaDB so does any statement that is not plain DML (DDL, SET, CALL).
 * See docs/semantics.md, "Batches".
 * ------------------------------------------------------------------------------------------- */
typedef struct txm_batch_stmt {
    const char *sql;          /* one statement, portable `?` placeholders */
    const txm_value *params;
    size_t nparams;
    txm_rows **rows_out;      /* NULL: rows discarded; else receives the buffered result (caller
                               * frees); set to NULL unless the whole batch succeeded */
    int64_t affected;         /* out: rows changed, -1 if unknown or not executed; with rows_out:
                               * the number of rows returned */
    int status;               /* out: 0 executed; the TXM_E* code of the statement that failed;
                               * TXM_ECANCELED for statements not executed (or undone by a retry);
                               * TXM_ECOMMIT_UNKNOWN for those whose answer was lost with the
                               * connection after the COMMIT was sent */
} txm_batch_stmt;

#define TXM_BATCH_OPTIONS_VERSION 1
typedef struct txm_batch_options {
    unsigned version;
    const txm_tx_options *tx;       /* the transaction's options; NULL = defaults. Inside a
                                     * transaction the batch is a nested level: what txm_begin
                                     * refuses on one (durable, isolation, read-only, deferrable,
                                     * timeouts) is TXM_EMISUSE, nothing sent; so is a durable
                                     * retry->tx */
    const txm_retry_policy *retry;  /* depth 0 only: retry the whole batch on transient errors, as
                                     * txm_retry would; NULL = run once. Ignored inside a transaction
                                     * (the caller's transaction decides). */
} txm_batch_options;
#define TXM_BATCH_OPTIONS_INIT { TXM_BATCH_OPTIONS_VERSION, NULL, NULL }
TXM_EXTERN int txm_batch_options_init(txm_batch_options *opts, unsigned version);

/* Runs stmts[0..n) all-or-nothing (see above). Returns 0, or the failing statement's code with
 * txm_error_last() describing it (its message names the statement's index). TXM_ECOMMIT_UNKNOWN
 * as for txm_commit. Transaction control statements are refused (TXM_EMISUSE) before anything is
 * sent; n == 0 is a no-op. */
TXM_EXTERN int txm_batch(txm_conn *c, txm_batch_stmt *stmts, size_t n, const txm_batch_options *opts);

/* ---------------------------------------------------------------------------------------------
 * SQL built at run time: dialect facts, so that portable code never interpolates identifiers raw
 * and never hard-codes one engine's syntax.
 * ------------------------------------------------------------------------------------------- */
/* Writes `name` quoted as an identifier for c's engine ("name" with '"' doubled; `name` with '`'
 * doubled on MySQL/MariaDB) into buf (NUL-terminated). TXM_EINVALID (nothing written but "") if
 * name is NULL, empty, longer than 63 bytes, contains a control character or is not valid UTF-8,
 * or if buf is too small (size >= 2 * strlen(name) + 3 always suffices). */
TXM_EXTERN int txm_quote_ident(const txm_conn *c, char *buf, size_t size, const char *name);

#define TXM_ROW_LOCK_UPDATE 0x0u /* exclusive: SELECT ... FOR UPDATE */
#define TXM_ROW_LOCK_SHARE 0x1u  /* shared: FOR SHARE / LOCK IN SHARE MODE */
/* The clause to append to a SELECT so that the rows it reads stay locked until the transaction
 * ends, with a leading space (" FOR UPDATE", " FOR SHARE", " LOCK IN SHARE MODE"), or "" where
 * the engine has no row locks: on SQLite a txm write transaction holds the database's write lock
 * from BEGIN IMMEDIATE on, so every read in it is already serialized against other writers (not
 * so in a TXM_TX_READ_ONLY transaction). A locking read also reads the newest committed row
 * version, even in a REPEATABLE READ transaction on MySQL. Never NULL ("" for a NULL c). */
TXM_EXTERN const char *txm_sql_row_lock(const txm_conn *c, unsigned mode);

/* ---------------------------------------------------------------------------------------------
 * Advisory locks (TXM_CAP_ADVISORY_LOCKS). Keys are strings; how each driver maps them:
 * docs/driver-postgresql.md "Advisory locks" (a bigint or an int4 pair), docs/driver-mysql.md
 * "Advisory locks" (GET_LOCK names; exclusive only); SQLite has none. timeout_ms: <0 waits
 * forever, 0 tries once, >0 waits that long (TXM_ELOCK_TIMEOUT after). Transaction-scoped locks
 * need an open transaction and are released when it ends; session-scoped ones by txm_unlock or
 * txm_close. txm_unlock of a session lock this connection does not hold: TXM_ENOTFOUND.
 * ------------------------------------------------------------------------------------------- */
#define TXM_LOCK_EXCLUSIVE 0x0u
#define TXM_LOCK_SHARED 0x1u
#define TXM_LOCK_SESSION 0x0u
#define TXM_LOCK_TX 0x2u
TXM_EXTERN int txm_lock(txm_conn *c, const char *key, unsigned flags, int timeout_ms);
TXM_EXTERN int txm_unlock(txm_conn *c, const char *key, unsigned flags);

/* ---------------------------------------------------------------------------------------------
 * Recovery
 * ------------------------------------------------------------------------------------------- */
/* Asks the server to cancel the statement running on c. Safe to call from another thread. */
TXM_EXTERN int txm_cancel(txm_conn *c);
/* Re-establishes a lost connection. TXM_EMISUSE while levels are open (roll them back first). */
TXM_EXTERN int txm_reconnect(txm_conn *c);

typedef enum txm_outcome { TXM_OUTCOME_UNKNOWN = 0, TXM_OUTCOME_COMMITTED = 1, TXM_OUTCOME_ABORTED = 2 } txm_outcome;
/* After TXM_ECOMMIT_UNKNOWN: asks the server (on a fresh connection to the same URL) whether the
 * last transaction committed. TXM_ENOTSUPPORTED without TXM_CAP_RESOLVE_OUTCOME. */
TXM_EXTERN int txm_resolve_outcome(txm_conn *c, txm_outcome *out);

/* ---------------------------------------------------------------------------------------------
 * Statistics: counts since open (or txm_stats_reset). Round trips are the times txm waited for
 * the engine: network flights for servers, driver calls for embedded SQLite.
 * ------------------------------------------------------------------------------------------- */
typedef struct txm_stats {
    uint64_t round_trips;
    uint64_t statements;     /* application statements sent (exec, query, lock) */
    uint64_t control;        /* control statements sent (BEGIN .. ROLLBACK, RELEASE ...) */
    uint64_t begins;
    uint64_t commits;
    uint64_t rollbacks;      /* outermost ROLLBACKs sent */
    uint64_t savepoints;     /* SAVEPOINTs sent */
    uint64_t releases;       /* RELEASE SAVEPOINTs sent */
    uint64_t rollbacks_to;   /* ROLLBACK TO SAVEPOINTs sent */
    uint64_t refused;        /* statements refused without a round trip (poisoned level) */
    uint64_t retries;        /* txm_retry attempts after the first */
    uint64_t hooks_run;
    uint64_t hooks_failed;
    uint64_t tx_savepoints;  /* SAVEPOINTs sent in the current (or last) top-level transaction */
    /* Added after 0.1.0. txm_stats has no version field and txm_stats_get writes the whole
     * struct: a program built against a header without this field must be rebuilt
     * (docs/decisions.md). */
    uint64_t autocommit_retries; /* statements re-run at depth 0 (txm_open_options.autocommit_retries) */
} txm_stats;
TXM_EXTERN void txm_stats_get(const txm_conn *c, txm_stats *out);
TXM_EXTERN void txm_stats_reset(txm_conn *c);

/* ---------------------------------------------------------------------------------------------
 * Test support. txm_test_baseline opens an outer transaction that txm_depth does not count, so
 * code under test behaves as on a fresh connection (durable levels are allowed directly inside
 * it) while everything it commits is undone by txm_test_end. On-commit hooks that would run when
 * a level commits into the baseline are captured instead; txm_test_run_hooks runs them (in order)
 * and txm_test_hook_count counts them. txm_test_end rolls back and frees captured hooks.
 * ------------------------------------------------------------------------------------------- */
TXM_EXTERN int txm_test_baseline(txm_conn *c);
TXM_EXTERN size_t txm_test_hook_count(const txm_conn *c);
TXM_EXTERN int txm_test_run_hooks(txm_conn *c);
TXM_EXTERN int txm_test_end(txm_conn *c);

TXM_EXTERN const char *txm_version(void);

#ifdef __cplusplus
}
#endif
#endif /* TXM_H */
