/*
 * txm driver ABI. A driver is a versioned vtable (txm_driver) plus a connection state struct that
 * embeds txm_driver_conn as its first member ("subclass", as sqlite3_file does).
 *
 * Versioning: `version` comes first; methods are only ever appended, each block marked with the
 * version that introduced it. The core reads a method only if the driver's version is high
 * enough and the pointer is non-NULL; each optional method documents the core's fallback.
 *
 * The core owns the transaction logic. A driver only executes batches of operations (txm_op) in
 * order and reports results, errors and the server's transaction status; it never calls back into
 * transaction logic. The conformance suite (tests/conformance, `txm conformance URL`) is the
 * executable form of this contract.
 */
#ifndef TXM_DRIVER_H
#define TXM_DRIVER_H

#include "../txm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TXM_DRIVER_VERSION 1

typedef struct txm_driver txm_driver;

/* Base of every driver connection struct. The core sets `driver` before calling open. */
typedef struct txm_driver_conn {
    const txm_driver *driver;
} txm_driver_conn;

/* A parsed URL: scheme://user:password@host:port/path?k=v&k=v, or scheme:opaque?k=v.
 * All strings are NUL-terminated and percent-decoded ("" when absent); `full` is the URL as
 * given (contains the password: never put it in a message, use `redacted`). */
typedef struct txm_url_param {
    const char *key;
    const char *value;
} txm_url_param;
typedef struct txm_url {
    const char *full;
    const char *redacted;   /* full with every secret (password, password=..., ...) replaced by "***" */
    const char *scheme;
    const char *user;
    const char *password;
    const char *host;       /* "" for opaque URLs */
    int port;               /* 0 when absent */
    const char *path;       /* without the leading '/' for hierarchical URLs; the opaque part otherwise */
    int hierarchical;       /* 1 if the URL had "//" after the scheme */
    const txm_url_param *params;
    size_t nparams;
} txm_url;
/* The value of query parameter `key`, or NULL. */
TXM_EXTERN const char *txm_url_param_get(const txm_url *u, const char *key);

/* Server transaction status, as the engine reports it. */
typedef enum txm_tx_status {
    TXM_TXS_UNKNOWN = 0, /* the driver cannot tell (e.g. connection lost) */
    TXM_TXS_IDLE = 1,    /* no transaction open on the server */
    TXM_TXS_ACTIVE = 2,  /* a transaction is open */
    TXM_TXS_FAILED = 3   /* a transaction is open and aborted (PostgreSQL) */
} txm_tx_status;

typedef enum txm_op_kind {
    TXM_OP_BEGIN = 1,       /* start the transaction with `tx` options */
    TXM_OP_SAVEPOINT,       /* SAVEPOINT txm_sp_<level> */
    TXM_OP_RELEASE,         /* RELEASE SAVEPOINT txm_sp_<level> */
    TXM_OP_ROLLBACK_TO,     /* ROLLBACK TO SAVEPOINT txm_sp_<level> */
    TXM_OP_COMMIT,
    TXM_OP_ROLLBACK,
    TXM_OP_STATEMENT,       /* sql + params; rows go to `sink` when non-NULL */
    TXM_OP_LOCK,            /* advisory lock: key, lock_flags, timeout_ms */
    TXM_OP_UNLOCK           /* advisory unlock: key, lock_flags */
} txm_op_kind;

typedef struct txm_sink txm_sink; /* core-owned result buffer */

typedef struct txm_op {
    txm_op_kind kind;
    unsigned level;               /* SAVEPOINT/RELEASE/ROLLBACK_TO: savepoint number (>= 1) */
    const txm_tx_options *tx;     /* BEGIN: options of the outermost level (never NULL; always
                                   * TXM_TX_OPTIONS_VERSION: the core converts older structs).
                                   * lock_timeout_ms / statement_timeout_ms are non-zero only if the
                                   * driver declares TXM_CAP_TX_TIMEOUTS (the core refuses them
                                   * otherwise with TXM_ENOTSUPPORTED); such a driver applies them
                                   * to this transaction alone and undoes them when it ends
                                   * (COMMIT, ROLLBACK, or an engine-side end), with no state left
                                   * in the session that a pooler could hand to another client. */
    const char *sql;              /* STATEMENT: placeholders already in the driver's style */
    size_t sql_len;
    const txm_value *params;
    size_t nparams;
    txm_sink *sink;               /* STATEMENT: NULL = discard rows */
    const char *key;              /* LOCK/UNLOCK */
    unsigned lock_flags;          /* LOCK/UNLOCK: TXM_LOCK_* */
    int timeout_ms;               /* LOCK */
    int64_t affected;             /* out (STATEMENT): rows changed, -1 if unknown */
} txm_op;

/* What a run reports besides its return code. The core zeroes it before the call. */
typedef struct txm_run_result {
    size_t completed;       /* ops that succeeded; on failure ops[completed] is the one that failed */
    unsigned round_trips;   /* flights waited on (embedded engines: 1 per run) */
} txm_run_result;

typedef enum txm_placeholder_style {
    TXM_PH_QMARK = 0,  /* ? (SQLite, MySQL) */
    TXM_PH_DOLLAR = 1  /* $1, $2 ... (PostgreSQL) */
} txm_placeholder_style;

/* SQL dialect hints for the placeholder rewriter and control-statement detector. */
#define TXM_DIALECT_DOLLAR_QUOTES 0x1u  /* $tag$ ... $tag$ strings (PostgreSQL) */
#define TXM_DIALECT_BACKSLASH 0x2u      /* backslash escapes inside '...' and "..." (MySQL) */
#define TXM_DIALECT_BACKTICKS 0x4u      /* `identifiers` (MySQL, SQLite) */
#define TXM_DIALECT_BRACKETS 0x8u       /* [identifiers] (SQLite) */
#define TXM_DIALECT_HASH_COMMENTS 0x10u /* # comments (MySQL) */
/* Dialect facts for SQL built at run time (txm_quote_ident, txm_sql_row_lock). A driver without
 * them gets the SQL standard: "identifiers", no row-lock clause. */
#define TXM_DIALECT_IDENT_BACKTICK 0x20u /* identifiers are quoted `like this` (MySQL) */
#define TXM_DIALECT_ROW_LOCKS 0x40u      /* SELECT ... FOR UPDATE / FOR SHARE (PostgreSQL, MySQL) */
#define TXM_DIALECT_SHARE_MODE 0x80u     /* shared row locks are spelled LOCK IN SHARE MODE (MariaDB) */
/* An error fact rather than syntax: the engine reports statements refused in an aborted
 * transaction as SQLSTATE 25P02 (PostgreSQL), so the TXM_ETX_ABORTED records txm makes itself
 * (a statement refused without a round trip, the commit of a failed level) carry it too. Without
 * it they carry "" (docs/errors.md). */
#define TXM_DIALECT_SQLSTATE_25P02 0x100u

struct txm_driver {
    unsigned version;             /* TXM_DRIVER_VERSION this driver was written against */
    const char *name;             /* "sqlite", "postgresql", "mysql" */
    const char *const *schemes;   /* NULL-terminated URL schemes, e.g. {"postgresql","postgres",NULL} */
    unsigned caps;                /* TXM_CAP_* */
    txm_placeholder_style placeholders;
    unsigned dialect;             /* TXM_DIALECT_* */
    size_t conn_size;             /* bytes the core allocates (zeroed) for the connection struct */

    /* --- version 1 --- */

    /* Connects. On failure: return the code, set the error with txm_driver_error, and leave dc in a
     * state that close() accepts (close is always called, even after a failed open). */
    int (*open)(txm_driver_conn *dc, const txm_url *url);
    /* Frees everything the driver holds. Must not fail; the core has already rolled back. */
    void (*close)(txm_driver_conn *dc);
    /* Executes ops[0..n) in order and stops at the first failure. Returns 0 or the failing op's
     * TXM_E* code (after txm_driver_error). Sets out->completed and out->round_trips.
     * When the error means the server rolled back the whole transaction (deadlock,
     * serialization failure, a lost connection, an engine-side rollback), set TXM_ERRF_TX_LOST
     * in the error flags. A connection lost after COMMIT was sent is TXM_ECOMMIT_UNKNOWN.
     * The driver may pipeline the ops (send them in one flight); ops after a failure count as
     * not executed. */
    int (*run)(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out);
    /* Optional. The server's transaction status after the last run. Fallback: the core trusts
     * its own model (no implicit-commit detection). */
    txm_tx_status (*tx_status)(txm_driver_conn *dc);
    /* Optional. Cancels the running statement; called from another thread. Fallback:
     * TXM_ENOTSUPPORTED. */
    int (*cancel)(txm_driver_conn *dc);
    /* Optional. Reconnects after a lost connection (no transaction is open). Fallback:
     * TXM_ENOTSUPPORTED. */
    int (*reconnect)(txm_driver_conn *dc);
    /* Optional. After a run that failed with TXM_ECOMMIT_UNKNOWN, finds out (typically on a fresh
     * connection) whether that COMMIT took effect. The driver records what it needs (e.g. the
     * PostgreSQL transaction id) while the transaction runs. Fallback: TXM_ENOTSUPPORTED. */
    int (*resolve_outcome)(txm_driver_conn *dc, txm_outcome *out);
};

/* Registers a driver for its schemes (later registrations win). Thread-safe. The struct must
 * outlive every connection that uses it. TXM_EINVALID if version is 0 or newer than this core's
 * TXM_DRIVER_VERSION, or a required method is missing. Built-in drivers are registered at first
 * use of txm_open. */
TXM_EXTERN int txm_driver_register(const txm_driver *d);
/* The driver registered for `scheme`, or NULL. Thread-safe. For "fault+X" with no driver
 * registered under that exact name: the fault-injecting wrapper of X's driver (include/txm/fault.h,
 * docs/fault-driver.md), built on first use and valid until exit. */
TXM_EXTERN const txm_driver *txm_driver_find(const char *scheme);

/* Reports a driver error into the calling thread's last-error record and returns `code`.
 * `d` may be NULL; its strings are copied (truncated to fit). */
typedef struct txm_error_detail {
    const char *sqlstate;
    int native_code;
    const char *constraint_name;
    const char *table_name;
    const char *column_name;
    const char *schema_name;
    const char *detail;
    unsigned flags; /* TXM_ERRF_* */
} txm_error_detail;
/* Sets the thread's error. During a driver callback the message, detail and names are scrubbed of
 * every spelling of every secret of the connection's URL (docs/errors.md). */
TXM_EXTERN int txm_driver_error(int code, const txm_error_detail *d, const char *fmt, ...) TXM_PRINTF(3, 4);

/* Reports a column learned after the error it belongs to was reported: the PostgreSQL driver
 * looks up the column of a single-column constraint once the failed transaction has ended, in the
 * flight of its ROLLBACK or COMMIT (docs/errors.md). When the current txm call on the connection
 * returns, the core writes `column` into the calling thread's error record and into its cause,
 * each only where it is a constraint error (txm_err_is_constraint) whose schema, table and
 * constraint names equal these and whose column_name is empty; nothing else of the record
 * changes. Names are scrubbed like every driver field. NULL or empty arguments are ignored. */
TXM_EXTERN void txm_driver_late_column(txm_driver_conn *dc, const char *schema, const char *table,
                                       const char *constraint, const char *column);

/* Result sink: a driver running a STATEMENT with a sink calls txm_sink_columns once, then
 * txm_sink_row per row. Values are copied. Both return 0 or TXM_ENOMEM. */
TXM_EXTERN int txm_sink_columns(txm_sink *s, size_t ncols, const char *const *names);
TXM_EXTERN int txm_sink_row(txm_sink *s, const txm_value *cells);

/* Log through the connection's log callback (respecting its level); the line is scrubbed of every
 * secret of the connection's URL first. */
TXM_EXTERN void txm_driver_log(txm_driver_conn *dc, txm_log_level level, const char *fmt, ...) TXM_PRINTF(3, 4);

/* Savepoint name for a level: writes "txm_sp_<level>" into buf (at least 24 bytes). */
TXM_EXTERN const char *txm_savepoint_name(char *buf, size_t size, unsigned level);

#ifdef __cplusplus
}
#endif
#endif /* TXM_DRIVER_H */
