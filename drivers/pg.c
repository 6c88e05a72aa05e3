/*
 * PostgreSQL driver (libpq). See docs/driver-postgresql.md for URLs, types, the error table,
 * advisory lock keys and how commit outcomes are resolved.
 *
 * Flights. run() sends every op in libpq pipeline mode (unnamed with PQsendQueryParams, or
 * through the prepared-statement cache: see pg_stmt; off behind a pooler that does not track
 * named statements, URL txm_statement_cache=off), ends the batch with ONE
 * PQpipelineSync and then reads the results: one network round trip per run, however many
 * control statements (BEGIN, SAVEPOINT, RELEASE, COMMIT) and statements travel together. The one
 * exception: a statement whose rows are buffered ends its flight when ops follow it (see pg_run).
 * After a failed statement the server skips the rest of the batch (PGRES_PIPELINE_ABORTED) until
 * the sync, so ops after a failure are "not executed", as the driver contract requires.
 *
 * Errors are classified by SQLSTATE (pg_states below), never by message text. Connection errors
 * at connect time have no PGresult: libpq is put in verbose error mode before it connects, and
 * the SQLSTATE is taken from the fixed "SEVERITY:  CODE: " layout of its message.
 *
 * Passwords: libpq messages may quote connection parameters. Every message this driver produces
 * names the URL by its redacted form, and every libpq or server text is passed through the core's
 * secret scrubber (txm__scrub, core/url.c: every spelling of every secret of the URL) as soon as
 * it is copied, before a bounded buffer can cut a secret in half. The core scrubs the final
 * error record and log line once more.
 */
#include "internal.h"

#include <libpq-fe.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern TXM_INTERNAL const txm_driver txm__driver_pg;

/* Built-in type OIDs (catalog/pg_type.dat); fixed forever. */
#define PG_OID_BOOL 16
#define PG_OID_BYTEA 17
#define PG_OID_INT8 20
#define PG_OID_INT2 21
#define PG_OID_INT4 23
#define PG_OID_OID 26
#define PG_OID_FLOAT4 700
#define PG_OID_FLOAT8 701

/* PostgreSQL caches 64 subtransaction ids per backend (PGPROC_MAX_CACHED_SUBXIDS); past that
 * every snapshot has to consult pg_subtrans and throughput collapses. Warn well before. */
#define PG_SUBXACT_WARN 48
#define PG_MAX_PARAMS 65535
/* resolve_outcome waits this long for a transaction that is still "in progress" (the old
 * backend has not noticed yet that its client is gone). */
#define PG_RESOLVE_WAIT_MS 5000

/* ---- SQLSTATE -> category ------------------------------------------------------------------
 * Exact codes first, then whole classes (two characters). Everything else is TXM_ERROR.
 * TX_LOST: after this error the server has rolled back (or will only roll back) the whole
 * transaction; txm then poisons every level. */
#define LOST TXM_ERRF_TX_LOST
static const struct pg_state {
    const char *state;
    int code;
    unsigned flags;
} pg_states[] = {
    {"23505", TXM_EUNIQUE, 0},
    {"23503", TXM_EFOREIGN_KEY, 0},
    {"23001", TXM_EFOREIGN_KEY, 0}, /* restrict_violation */
    {"23502", TXM_ENOT_NULL, 0},
    {"23514", TXM_ECHECK, 0},
    {"44000", TXM_ECHECK, 0}, /* WITH CHECK OPTION of a view */
    {"23P01", TXM_EEXCLUSION, 0},
    {"40P01", TXM_EDEADLOCK, LOST},
    {"40001", TXM_ESERIALIZATION, LOST},
    {"40003", TXM_ECOMMIT_UNKNOWN, LOST}, /* statement_completion_unknown */
    {"55P03", TXM_ELOCK_TIMEOUT, 0},
    {"57014", TXM_ECANCELED, 0},
    {"25P02", TXM_ETX_ABORTED, 0},
    {"25006", TXM_EREAD_ONLY, 0},
    {"25P03", TXM_ECONNECTION, LOST}, /* idle_in_transaction_session_timeout (FATAL) */
    {"25P04", TXM_ECONNECTION, LOST}, /* transaction_timeout (FATAL, PostgreSQL 17) */
    {"08007", TXM_ECOMMIT_UNKNOWN, LOST}, /* transaction_resolution_unknown */
    {"57P01", TXM_ECONNECTION, LOST}, /* admin_shutdown, pg_terminate_backend */
    {"57P02", TXM_ECONNECTION, LOST}, /* crash_shutdown */
    {"57P03", TXM_ECONNECTION, LOST}, /* cannot_connect_now */
    {"57P04", TXM_ECONNECTION, LOST}, /* database_dropped */
    {"57P05", TXM_ECONNECTION, LOST}, /* idle_session_timeout */
    {"53300", TXM_ECONNECTION, LOST}, /* too_many_connections */
    {"42501", TXM_EAUTH, 0},          /* insufficient_privilege */
    {"3D000", TXM_ENOTFOUND, 0},      /* invalid_catalog_name: no such database */
    {"3F000", TXM_ESYNTAX, 0},        /* invalid_schema_name: undefined schema */
    {"08", TXM_ECONNECTION, LOST},
    {"22", TXM_EDATA, 0},
    {"28", TXM_EAUTH, 0},
    {"0L", TXM_EAUTH, 0}, /* invalid grantor */
    {"0P", TXM_EAUTH, 0}, /* invalid role specification */
    {"40", TXM_ERROR, LOST},
    {"42", TXM_ESYNTAX, 0},
};
#undef LOST

static const struct pg_state *pg_state_find(const char *st)
{
    size_t i;
    if (!st || strlen(st) != 5)
        return NULL;
    for (i = 0; i < sizeof pg_states / sizeof pg_states[0]; i++) {
        if (strlen(pg_states[i].state) == 5 && memcmp(pg_states[i].state, st, 5) == 0)
            return &pg_states[i];
    }
    for (i = 0; i < sizeof pg_states / sizeof pg_states[0]; i++) {
        if (strlen(pg_states[i].state) == 2 && memcmp(pg_states[i].state, st, 2) == 0)
            return &pg_states[i];
    }
    return NULL;
}

/* ---- connection state ---------------------------------------------------------------------- */

typedef enum pg_role {
    Q_MAIN, /* the statement that is the op */
    Q_XID,  /* pg_current_xact_id_if_assigned() in front of COMMIT */
    Q_AUX,   /* lock_timeout save/set/restore around an advisory lock; SET LOCAL timeouts after BEGIN */
    Q_COLUMN, /* catalog lookup of a constraint's column after the transaction's end (colpending[aux]) */
    Q_DEALLOC /* DEALLOCATE of an evicted or invalidated cached statement (stmt), in a sync of its own */
} pg_role;

typedef struct pg_query {
    size_t op;
    pg_role role;
    unsigned aux;  /* Q_COLUMN: index into colpending */
    uint32_t stmt; /* the cached statement it prepares, executes or deallocates (0: none) */
    bool prepare;  /* the Parse that prepares `stmt` (its result says whether the name exists) */
} pg_query;

/* ---- prepared-statement cache ----------------------------------------------------------------
 * A statement executed PG_PREPARE_AT times on a connection is prepared under a name of its own
 * (Parse in the same flight as its execution: no extra round trip) and later executions send
 * only Bind/Execute: the server skips parsing and planning. The control statements (BEGIN,
 * SAVEPOINT, RELEASE, ROLLBACK TO, COMMIT, ROLLBACK) and the transaction-id query in front of
 * COMMIT go through the same cache. Keyed by the full text as sent and the parameter types
 * (a prepared statement's parameter types are fixed): a changed text can never hit a stale
 * entry. Per connection, bounded (URL txm_statement_cache=N, default PG_STMT_CACHE_DEFAULT),
 * least recently used entry replaced. The server's copy of a replaced or invalidated statement
 * is DEALLOCATEd later, in a sync segment of its own at the front of a flight that starts
 * outside a transaction (never inside one: a failed DEALLOCATE there would abort it), so it
 * costs no round trip and cannot touch the application's work. A cached statement that fails
 * with 0A000 (cached plan must not change result type: the schema changed under it) or 26000
 * (its name is gone: DEALLOCATE/DISCARD by the application) is dropped; run alone outside a
 * transaction it is re-run once unnamed, inside one the error is reported (the transaction is
 * aborted, as any failed statement aborts it) and the next execution prepares it afresh.
 * Nothing is prepared in an aborted transaction (the server refuses the Parse). A reconnect
 * empties the cache (a new session has no statements). An allocation failure only means the
 * statement runs unnamed, as with the cache off. Off (txm_statement_cache=off) behind a
 * transaction pooler that does not track named statements (PgBouncer before 1.21). */
#define PG_STMT_CACHE_DEFAULT 128
#define PG_STMT_CACHE_MAX 4096
#define PG_PREPARE_AT 2

typedef enum pg_prep {
    PREP_NONE = 0, /* not on the server */
    PREP_SENT,     /* its Parse is in the current flight */
    PREP_READY     /* prepared on the server */
} pg_prep;

typedef struct pg_stmt {
    uint64_t hash;
    char *sql;   /* txm__malloc'd: the text, NUL, then ntypes Oids (aligned) */
    size_t len;
    const Oid *types;
    int ntypes;
    unsigned uses;
    uint32_t id; /* the name's number (0 until first prepared) */
    char name[40]; /* stmt_prefix + id, formatted once (snprintf per execution showed in profiles) */
    pg_prep state;
    uint64_t tick; /* last use, for LRU */
} pg_stmt;

/* ---- constraint columns ----------------------------------------------------------------------
 * PostgreSQL names the constraint, table and schema of a violation (PG_DIAG_*), but the column
 * only for NOT NULL. For a constraint on exactly one column the driver fills column_name from the
 * catalog (COL_SQL, keyed by the error's schema, table and constraint names, all bound), never
 * from the DETAIL text. The lookup must never run inside the failed transaction (every query in
 * an aborted PostgreSQL transaction fails), nor change the outcome or the error reported:
 *  - a cached answer is used at once, in or out of a transaction (no round trip);
 *  - when the server is outside a transaction after the failure (autocommit), the lookup runs at
 *    once: one extra round trip, only on a cache miss, only on this error path;
 *  - inside a transaction the key waits (colpending) and the lookup travels in the flight of the
 *    outermost ROLLBACK or COMMIT, after it (no extra round trip); the answer reaches the records
 *    the application still holds through txm_driver_late_column.
 * The cache is per connection, bounded (PG_COLCACHE entries, oldest replaced), remembers
 * "no single column" answers too (multi-column constraints, expression indexes, a failed lookup),
 * and is emptied on reconnect and whenever this connection runs DDL (a CREATE, ALTER or DROP
 * command tag). DDL run by other sessions is not seen: an entry stays until one of those. */
#define PG_COLCACHE 32
#define PG_COLPENDING 4
#define PG_NAME 64 /* NAMEDATALEN: identifiers are at most 63 bytes */

typedef struct pg_colkey {
    char schema[PG_NAME];
    char table[PG_NAME];
    char constraint[PG_NAME];
} pg_colkey;

typedef struct pg_colentry {
    bool used;
    pg_colkey key;
    char column[PG_NAME]; /* "" = the constraint has no single column (or the lookup failed) */
} pg_colentry;

/* The constraint (or, for a unique index that is not a constraint, the index) of that name on
 * that table, when it has exactly one key column that is a plain column: one row with the
 * column's name, else none. The names are bound text; quote_ident/to_regclass resolve the table
 * and index without a search_path and without an error when they are gone. Built to plan fast
 * (a few index probes, no join tree to order): planning, not execution, is most of its cost. */
static const char COL_SQL[] =
    "SELECT a.attname::text FROM (SELECT r.t, COALESCE("
    "(SELECT c.conkey FROM pg_catalog.pg_constraint c WHERE c.conrelid = r.t AND c.conname::text = $3::text),"
    " (SELECT CASE WHEN i.indnatts = 1 THEN ARRAY[i.indkey[0]] END FROM pg_catalog.pg_index i"
    " WHERE i.indrelid = r.t AND i.indexrelid = pg_catalog.to_regclass("
    "pg_catalog.quote_ident($1::text) || '.' || pg_catalog.quote_ident($3::text))::oid)) AS k"
    " FROM (SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($1::text) || '.' ||"
    " pg_catalog.quote_ident($2::text))::oid AS t) r OFFSET 0) s"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = s.t AND a.attnum = s.k[1] AND a.attnum > 0"
    " WHERE pg_catalog.cardinality(s.k) = 1";

typedef enum pg_xid_state {
    XID_NONE = 0, /* no COMMIT sent yet */
    XID_PENDING,  /* asked for, answer not received (connection lost first) */
    XID_NULL,     /* the transaction had no xid: it wrote nothing */
    XID_KNOWN     /* xid holds the transaction id */
} pg_xid_state;

typedef struct pg_conn {
    txm_driver_conn base;
    PGconn *conn;
    char *conninfo; /* url->full: holds the password; used for reconnect and resolve_outcome only */
    const char *redacted; /* what messages quote: the core's url->redacted (outlives this state) */
    const txm_url *url; /* the core's parsed URL (outlives this state): its secrets are scrubbed */
    int server_version;

    pthread_mutex_t cancel_mu; /* cancel() runs on another thread */
    bool cancel_mu_ok;
    PGcancel *cancel;

    /* Batch buffers, grown on demand and kept. */
    pg_query *q;
    size_t qcap;
    Oid *ptypes;
    const char **pvalues;
    int *plengths;
    int *pformats;
    size_t pcap;
    char *pbuf; /* parameter bytes of one statement (libpq copies them when sending) */
    size_t pbufcap;
    const char **names;
    txm_value *cells;
    Oid *ctypes;
    size_t ccap;
    unsigned char *blob; /* decoded bytea of one row */
    size_t blobcap;

    /* Subtransaction guard: SAVEPOINTs sent in the current top-level transaction. */
    unsigned tx_savepoints;
    bool subxact_warned;
    bool tx_read_only; /* the current transaction began READ ONLY */
    bool track_outcome; /* URL txm_resolve_outcome=on (default): ask for the xid before COMMIT */

    /* Constraint columns (see COL_SQL). */
    pg_colentry colcache[PG_COLCACHE];
    unsigned colnext;                    /* next entry to replace */
    pg_colkey colpending[PG_COLPENDING]; /* looked up when the transaction ends */
    size_t ncolpending;
    pg_colkey colflight[PG_COLPENDING];  /* those queued in the current flight (Q_COLUMN aux) */
    size_t ncolflight;
    const char *col_sql;                 /* COL_SQL; tests replace it (txm__pg_col_sql_for_tests) */

    /* Prepared-statement cache (see pg_stmt). */
    size_t stmt_cap;      /* 0 = off */
    pg_stmt *stmts;       /* stmt_cap entries, allocated at first use */
    size_t nstmts;
    uint64_t stmt_tick;
    uint32_t stmt_next_id;
    char stmt_prefix[24]; /* "txm_<hex>_": names of this connection */
    uint32_t *dealloc;    /* names to DEALLOCATE (stmt_cap slots) */
    size_t ndealloc;
    bool stmt_retrying;   /* pg_run is re-running a statement whose cached plan went stale */

    /* Commit outcome. */
    bool outcome_pending; /* the last COMMIT ended with TXM_ECOMMIT_UNKNOWN */
    pg_xid_state xid_state;
    char xid[32];
} pg_conn;

static pg_conn *pgc(txm_driver_conn *dc) { return (pg_conn *)(void *)dc; }

const char *txm__pg_col_sql_for_tests = NULL;

/* A failure, collected while the results of a batch are read and reported at the end. */
typedef struct pg_fail {
    bool set;
    bool from_server; /* carries a SQLSTATE */
    bool fatal;       /* severity FATAL/PANIC: the server closes the connection */
    size_t op;
    pg_role role;     /* which of the op's queries failed (Q_XID: the one before COMMIT) */
    bool stale;       /* a cached statement failed because its server copy is stale or gone */
    int code;
    unsigned flags;
    char sqlstate[6];
    char message[TXM_ERR_MSG_MAX];
    char constraint_name[TXM_ERR_NAME_MAX];
    char table_name[TXM_ERR_NAME_MAX];
    char column_name[TXM_ERR_NAME_MAX];
    char schema_name[TXM_ERR_NAME_MAX];
    char detail[TXM_ERR_MSG_MAX];
} pg_fail;

static void fail_init(pg_fail *f)
{
    f->set = f->from_server = f->fatal = f->stale = false;
    f->op = 0;
    f->role = Q_MAIN;
    f->code = TXM_ERROR;
    f->flags = 0;
    f->sqlstate[0] = f->message[0] = f->constraint_name[0] = f->table_name[0] = '\0';
    f->column_name[0] = f->schema_name[0] = f->detail[0] = '\0';
}

static int fail_report(const pg_fail *f)
{
    txm_error_detail d;
    memset(&d, 0, sizeof d);
    d.sqlstate = f->sqlstate;
    d.constraint_name = f->constraint_name;
    d.table_name = f->table_name;
    d.column_name = f->column_name;
    d.schema_name = f->schema_name;
    d.detail = f->detail;
    d.flags = f->flags;
    return txm_driver_error(f->code, &d, "%s", f->message);
}

/* ---- constraint columns (see COL_SQL) ---- */

static void scrub(const pg_conn *pc, char *dst, size_t size, const char *src);
static void stmt_clear(pg_conn *pc);

/* Whether f is a constraint violation the catalog can complete: the server named the constraint,
 * its table and schema (names that fit an identifier), and no column. */
static bool col_key_of(const pg_fail *f, pg_colkey *k)
{
    if (!f->from_server || f->fatal || !txm_err_is_constraint(f->code) || f->column_name[0] ||
        !f->constraint_name[0] || !f->table_name[0] || !f->schema_name[0] ||
        strlen(f->schema_name) >= PG_NAME || strlen(f->table_name) >= PG_NAME ||
        strlen(f->constraint_name) >= PG_NAME)
        return false;
    memcpy(k->schema, f->schema_name, strlen(f->schema_name) + 1);
    memcpy(k->table, f->table_name, strlen(f->table_name) + 1);
    memcpy(k->constraint, f->constraint_name, strlen(f->constraint_name) + 1);
    return true;
}

static bool col_key_eq(const pg_colkey *a, const pg_colkey *b)
{
    return strcmp(a->constraint, b->constraint) == 0 && strcmp(a->table, b->table) == 0 &&
           strcmp(a->schema, b->schema) == 0;
}

static const pg_colentry *col_find(const pg_conn *pc, const pg_colkey *k)
{
    size_t i;
    for (i = 0; i < PG_COLCACHE; i++)
        if (pc->colcache[i].used && col_key_eq(&pc->colcache[i].key, k))
            return &pc->colcache[i];
    return NULL;
}

static void col_store(pg_conn *pc, const pg_colkey *k, const char *column)
{
    pg_colentry *e = (pg_colentry *)col_find(pc, k);
    if (!e) {
        e = &pc->colcache[pc->colnext];
        pc->colnext = (pc->colnext + 1) % PG_COLCACHE;
    }
    e->used = true;
    e->key = *k;
    scrub(pc, e->column, sizeof e->column, column);
}

/* A lookup's answer: the column, or "" when the constraint has no single plain column. Returns
 * false (nothing learned) for anything but a result or a server's refusal of the query (a lost
 * connection, a pipeline aborted by an earlier failure). A refusal (no privilege on the catalog)
 * is remembered as "": it would be refused again. */
static bool col_answer(const PGresult *res, char *column, size_t size)
{
    const char *sev;
    column[0] = '\0';
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
        if (PQntuples(res) == 1 && PQnfields(res) == 1 && !PQgetisnull(res, 0, 0))
            txm__strlcpy(column, PQgetvalue(res, 0, 0), size);
        return true;
    case PGRES_FATAL_ERROR:
        sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
        return PQresultErrorField(res, PG_DIAG_SQLSTATE) && sev && strcmp(sev, "ERROR") == 0;
    default:
        return false;
    }
}

/* Copies a libpq or server text into dst with every secret of the URL masked (core scrubber). */
static void scrub(const pg_conn *pc, char *dst, size_t size, const char *src)
{
    txm__scrub(pc->url, dst, size, src, false);
}

/* Trims trailing whitespace/newlines in place. */
static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* dst = a + b, truncated to size. */
static void join(char *dst, size_t size, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (!size)
        return;
    if (la >= size)
        la = size - 1;
    memmove(dst, a, la);
    if (lb >= size - la)
        lb = size - la - 1;
    memmove(dst + la, b, lb);
    dst[la + lb] = '\0';
}

/* ---- connecting -------------------------------------------------------------------------- */

static const char *const pg_keywords[] = {"dbname", "client_encoding", "fallback_application_name", NULL};

static int conninfo_int(PGconn *conn, const char *key, bool *multi_host)
{
    PQconninfoOption *opts = PQconninfo(conn), *o;
    int v = 0;
    if (!opts)
        return 0;
    for (o = opts; o->keyword; o++) {
        if (o->val && strcmp(o->keyword, key) == 0)
            v = atoi(o->val);
        if (o->val && multi_host && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0) &&
            strchr(o->val, ','))
            *multi_host = true;
    }
    PQconninfoFree(opts);
    return v;
}

static int64_t now_ms(void) { return (int64_t)(txm__now_us() / 1000u); }

/* Connects to pc->conninfo with client_encoding=UTF8. libpq runs in verbose error mode from the
 * start, so a server's refusal (wrong password, no such database) carries its SQLSTATE.
 * connect_timeout is honoured per host, as libpq does; when a host times out and others are
 * listed, the attempt is repeated with libpq's own blocking loop, which moves on to the next
 * host (its messages then lack the SQLSTATE). Returns NULL only when out of memory. */
static PGconn *pg_connect(const pg_conn *pc)
{
    const char *values[4];
    PGconn *conn;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    bool multi_host = false;
    int timeout_s;
    int64_t deadline = 0;
    char last_host[256] = "";

    values[0] = pc->conninfo;
    values[1] = "UTF8";
    values[2] = "txm";
    values[3] = NULL;
    conn = PQconnectStartParams(pg_keywords, values, 1);
    if (!conn || PQstatus(conn) == CONNECTION_BAD)
        return conn;
    PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
    timeout_s = conninfo_int(conn, "connect_timeout", &multi_host);
    if (timeout_s > 0 && timeout_s < 2)
        timeout_s = 2; /* libpq's minimum */

    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd pfd;
        int wait_ms = -1, r;
        if (timeout_s > 0) {
            /* Restart the timer whenever libpq moves on to another host, as libpq does. */
            char host[256];
            snprintf(host, sizeof host, "%s:%s", PQhost(conn) ? PQhost(conn) : "", PQport(conn) ? PQport(conn) : "");
            if (deadline == 0 || strcmp(host, last_host) != 0) {
                deadline = now_ms() + (int64_t)timeout_s * 1000;
                memcpy(last_host, host, sizeof host);
            }
            wait_ms = (int)(deadline - now_ms());
            if (wait_ms < 0)
                wait_ms = 0;
        }
        pfd.fd = PQsocket(conn);
        pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        pfd.revents = 0;
        if (pfd.fd < 0)
            break;
        r = poll(&pfd, 1, wait_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            /* Timed out on this host. */
            if (multi_host) {
                PQfinish(conn);
                conn = PQconnectdbParams(pg_keywords, values, 1);
                if (conn)
                    PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
                return conn;
            }
            break;
        }
        st = PQconnectPoll(conn);
    }
    return conn;
}

/* Reports a failed connection attempt. `conn` may be NULL (out of memory). */
static int connect_error(const pg_conn *pc, PGconn *conn, const char *verb)
{
    char raw[2048], msg[TXM_ERR_MSG_MAX], state[6] = "";
    const char *line;
    size_t o = 0;
    txm_error_detail d;
    int code = TXM_ECONNECTION;

    if (!conn)
        return txm_driver_error(TXM_ENOMEM, NULL, "cannot %s %s: out of memory", verb, pc->redacted);
    if (PQstatus(conn) != CONNECTION_OK && PQerrorMessage(conn)[0] == '\0')
        scrub(pc, raw, sizeof raw, "timeout expired");
    else
        scrub(pc, raw, sizeof raw, PQerrorMessage(conn));

    /* Verbose libpq messages: "connection to server at ... failed: FATAL:  28P01: text\n"
     * followed by "DETAIL:  ", "HINT:  ", "LOCATION:  " lines; client-side ones continue with a
     * tab-indented line. Keep the main lines and continuations, drop the code and aux lines. */
    msg[0] = '\0';
    for (line = raw; *line;) {
        size_t len = strcspn(line, "\n");
        size_t word = strcspn(line, " :\t\n");
        bool aux = word > 0 && word < len && line[word] == ':' && line[word + 1] == ' ' && line[word + 2] == ' ';
        if (!aux) {
            const char *p = line, *end = line + len;
            bool cont = line[0] == '\t';
            if (o && o + 2 < sizeof msg) {
                msg[o++] = cont ? ' ' : ';';
                if (!cont)
                    msg[o++] = ' ';
            }
            if (cont)
                p++;
            while (p < end && o + 1 < sizeof msg) {
                /* ":  XXXXX: " -> remember XXXXX, keep ":  " */
                if (end - p >= 10 && p[0] == ':' && p[1] == ' ' && p[2] == ' ' && p[8] == ':' && p[9] == ' ') {
                    int k, ok = 1;
                    for (k = 3; k < 8; k++) {
                        char ch = p[k];
                        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z')))
                            ok = 0;
                    }
                    if (ok) {
                        memcpy(state, p + 3, 5);
                        state[5] = '\0';
                        if (o + 3 < sizeof msg) {
                            msg[o++] = ':';
                            msg[o++] = ' ';
                        }
                        p += 10;
                        continue;
                    }
                }
                msg[o++] = *p++;
            }
            msg[o] = '\0';
        }
        line += len;
        if (*line == '\n')
            line++;
    }
    rtrim(msg);
    if (state[0]) {
        const struct pg_state *m = pg_state_find(state);
        if (m && (m->code == TXM_EAUTH || m->code == TXM_ENOTFOUND))
            code = m->code;
    }
    memset(&d, 0, sizeof d);
    d.sqlstate = state;
    return txm_driver_error(code, &d, "cannot %s %s: %s", verb, pc->redacted, msg[0] ? msg : "unknown libpq error");
}

static void pg_notice(void *arg, const PGresult *res)
{
    pg_conn *pc = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    char buf[TXM_ERR_MSG_MAX];
    scrub(pc, buf, sizeof buf, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    txm_driver_log(&pc->base, sev && strcmp(sev, "WARNING") == 0 ? TXM_LOG_INFO : TXM_LOG_DEBUG, "PostgreSQL %s: %s",
                   sev ? sev : "NOTICE", buf);
}

/* After a successful connect: pipeline mode, notice routing, a cancel handle. */
static int pg_setup(pg_conn *pc)
{
    PGcancel *fresh, *old;
    PQsetNoticeReceiver(pc->conn, pg_notice, pc);
    if (PQpipelineStatus(pc->conn) == PQ_PIPELINE_OFF && !PQenterPipelineMode(pc->conn)) {
        char buf[TXM_ERR_MSG_MAX];
        scrub(pc, buf, sizeof buf, PQerrorMessage(pc->conn));
        rtrim(buf);
        return txm_driver_error(TXM_ECONNECTION, NULL, "%s: cannot enter libpq pipeline mode: %s", pc->redacted, buf);
    }
    pc->server_version = PQserverVersion(pc->conn);
    fresh = PQgetCancel(pc->conn);
    pthread_mutex_lock(&pc->cancel_mu);
    old = pc->cancel;
    pc->cancel = fresh;
    pthread_mutex_unlock(&pc->cancel_mu);
    if (old)
        PQfreeCancel(old);
    pc->tx_savepoints = 0;
    pc->subxact_warned = false;
    pc->tx_read_only = false;
    /* A new session may see another database: forget every constraint column. */
    memset(pc->colcache, 0, sizeof pc->colcache);
    pc->colnext = 0;
    pc->ncolpending = 0;
    pc->ncolflight = 0;
    pc->col_sql = txm__pg_col_sql_for_tests ? txm__pg_col_sql_for_tests : COL_SQL;
    /* A new session has none of the old one's prepared statements. */
    stmt_clear(pc);
    return 0;
}

/* The URL for libpq: `full` without its txm_* query parameters (libpq would reject them). */
static char *strip_txm_params(const char *full)
{
    const char *q = strchr(full, '?'), *seg;
    size_t o;
    bool first = true;
    char *out = txm__malloc(strlen(full) + 1);
    if (!out || !q) {
        if (out)
            memcpy(out, full, strlen(full) + 1);
        return out;
    }
    o = (size_t)(q - full);
    memcpy(out, full, o);
    for (seg = q + 1;;) {
        size_t len = strcspn(seg, "&");
        if (len && strncmp(seg, "txm_", 4) != 0) {
            out[o++] = first ? '?' : '&';
            memcpy(out + o, seg, len);
            o += len;
            first = false;
        }
        if (!seg[len])
            break;
        seg += len + 1;
    }
    out[o] = '\0';
    return out;
}

/* txm_statement_cache: on (the default size), off, or a number of statements (0 = off). */
static bool stmt_cache_size(const char *v, size_t *cap)
{
    size_t n = 0, i;
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0) {
        /* "1" reads as a boolean, like txm_resolve_outcome=1; a one-entry cache is no use. */
        *cap = PG_STMT_CACHE_DEFAULT;
        return true;
    }
    if (strcmp(v, "off") == 0) {
        *cap = 0;
        return true;
    }
    if (!v[0] || strlen(v) > 5)
        return false;
    for (i = 0; v[i]; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (size_t)(v[i] - '0');
    }
    if (n > PG_STMT_CACHE_MAX)
        return false;
    *cap = n;
    return true;
}

/* The prefix of this connection's statement names: distinct per connection and process, so that
 * a pooler that hands this client another client's server session (the cache must be off there,
 * see docs/driver-postgresql.md) makes a cached name fail as unknown rather than run another
 * client's statement. */
static void stmt_prefix_init(pg_conn *pc)
{
    static _Atomic uint32_t serial;
    uint64_t h = 0xcbf29ce484222325u, parts[4];
    size_t i;
    parts[0] = (uint64_t)getpid();
    parts[1] = txm__now_us();
    parts[2] = (uint64_t)(uintptr_t)pc;
    parts[3] = (uint64_t)++serial;
    for (i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        h ^= parts[i];
        h *= 0x100000001b3u;
        h ^= h >> 29;
    }
    /* All 64 bits: behind a pooler that lends server sessions, two clients whose prefixes collided
     * would run each other's statements (a Bind of "BEGIN" finding another client's "COMMIT"). */
    snprintf(pc->stmt_prefix, sizeof pc->stmt_prefix, "txm_%016" PRIx64 "_", h);
}

/* txm's own URL parameters (txm_*); libpq never sees them. */
static int read_txm_params(pg_conn *pc, const txm_url *url)
{
    size_t i;
    pc->track_outcome = true;
    pc->stmt_cap = PG_STMT_CACHE_DEFAULT;
    for (i = 0; i < url->nparams; i++) {
        const char *k = url->params[i].key, *v = url->params[i].value;
        if (strncmp(k, "txm_", 4) != 0)
            continue;
        if (strcmp(k, "txm_resolve_outcome") == 0 && (strcmp(v, "on") == 0 || strcmp(v, "1") == 0)) {
            pc->track_outcome = true;
        } else if (strcmp(k, "txm_resolve_outcome") == 0 && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0)) {
            pc->track_outcome = false;
        } else if (strcmp(k, "txm_statement_cache") == 0) {
            if (!stmt_cache_size(v, &pc->stmt_cap))
                return txm_driver_error(TXM_EINVALID, NULL,
                                        "%s: bad value txm_statement_cache=%s (expected on, off, or a number of "
                                        "statements from 0 to %d)",
                                        pc->redacted, v, PG_STMT_CACHE_MAX);
        } else {
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "%s: unknown URL parameter %s=%s (the PostgreSQL driver knows "
                                    "txm_resolve_outcome=on|off and txm_statement_cache=on|off|N)",
                                    pc->redacted, k, v);
        }
    }
    return 0;
}

static int pg_open(txm_driver_conn *dc, const txm_url *url)
{
    pg_conn *pc = pgc(dc);
    int rc;
    if (pthread_mutex_init(&pc->cancel_mu, NULL) != 0)
        return txm_driver_error(TXM_ENOMEM, NULL, "cannot create a mutex for the PostgreSQL connection");
    pc->cancel_mu_ok = true;
    pc->conninfo = strip_txm_params(url->full ? url->full : "");
    pc->redacted = url->redacted ? url->redacted : "postgresql://";
    pc->url = url;
    if (!pc->conninfo)
        return txm_driver_error(TXM_ENOMEM, NULL, "out of memory opening a PostgreSQL connection");
    if ((rc = read_txm_params(pc, url)))
        return rc;
    stmt_prefix_init(pc);
    pc->conn = pg_connect(pc);
    if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK)
        return connect_error(pc, pc->conn, "connect to");
    return pg_setup(pc);
}

static void pg_close(txm_driver_conn *dc)
{
    pg_conn *pc = pgc(dc);
    if (pc->conn)
        PQfinish(pc->conn);
    pc->conn = NULL;
    if (pc->cancel_mu_ok) {
        pthread_mutex_lock(&pc->cancel_mu);
        if (pc->cancel)
            PQfreeCancel(pc->cancel);
        pc->cancel = NULL;
        pthread_mutex_unlock(&pc->cancel_mu);
        pthread_mutex_destroy(&pc->cancel_mu);
        pc->cancel_mu_ok = false;
    }
    txm__free(pc->conninfo);
    txm__free(pc->q);
    txm__free(pc->ptypes);
    txm__free(pc->pvalues);
    txm__free(pc->plengths);
    txm__free(pc->pformats);
    txm__free(pc->pbuf);
    txm__free(pc->names);
    txm__free(pc->cells);
    txm__free(pc->ctypes);
    txm__free(pc->blob);
    stmt_clear(pc);
    txm__free(pc->stmts);
    txm__free(pc->dealloc);
}

static int pg_reconnect(txm_driver_conn *dc)
{
    pg_conn *pc = pgc(dc);
    /* A fresh PGconn (rather than PQreset) goes through the same connect path as open. */
    if (pc->conn)
        PQfinish(pc->conn);
    pc->conn = pg_connect(pc);
    if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK) {
        int rc = connect_error(pc, pc->conn, "reconnect to");
        if (pc->conn)
            PQfinish(pc->conn);
        pc->conn = NULL;
        return rc;
    }
    return pg_setup(pc);
}

static txm_tx_status pg_tx_status(txm_driver_conn *dc)
{
    pg_conn *pc = pgc(dc);
    if (!pc->conn)
        return TXM_TXS_UNKNOWN;
    switch (PQtransactionStatus(pc->conn)) {
    case PQTRANS_IDLE:
        return TXM_TXS_IDLE;
    case PQTRANS_INTRANS:
        return TXM_TXS_ACTIVE;
    case PQTRANS_INERROR:
        return TXM_TXS_FAILED;
    default: /* ACTIVE (a command in flight) or UNKNOWN (connection bad) */
        return TXM_TXS_UNKNOWN;
    }
}

static int pg_cancel(txm_driver_conn *dc)
{
    pg_conn *pc = pgc(dc);
    char err[256], msg[256];
    int rc = 0;
    if (!pc->cancel_mu_ok)
        return txm_driver_error(TXM_ECONNECTION, NULL, "cannot cancel: the PostgreSQL connection is not open");
    pthread_mutex_lock(&pc->cancel_mu);
    if (!pc->cancel) {
        rc = txm_driver_error(TXM_ECONNECTION, NULL, "cannot cancel: the connection to %s is not open", pc->redacted);
    } else if (!PQcancel(pc->cancel, err, (int)sizeof err)) {
        scrub(pc, msg, sizeof msg, err);
        rtrim(msg);
        rc = txm_driver_error(TXM_ECONNECTION, NULL, "cancel request to %s failed: %s", pc->redacted, msg);
    }
    pthread_mutex_unlock(&pc->cancel_mu);
    return rc;
}

/* ---- growing buffers --------------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t n;
    void *np;
    if (need <= *cap)
        return 0;
    n = *cap ? *cap : 8;
    while (n < need)
        n *= 2;
    np = txm__realloc(*p, n * elem);
    if (!np)
        return TXM_ENOMEM;
    *p = np;
    *cap = n;
    return 0;
}

static int grow_params(pg_conn *pc, size_t n)
{
    size_t cap;
    void *p;
    if (n <= pc->pcap)
        return 0;
    cap = pc->pcap ? pc->pcap : 8;
    while (cap < n)
        cap *= 2;
    if (!(p = txm__realloc(pc->ptypes, cap * sizeof(Oid))))
        return TXM_ENOMEM;
    pc->ptypes = p;
    if (!(p = txm__realloc(pc->pvalues, cap * sizeof(char *))))
        return TXM_ENOMEM;
    pc->pvalues = p;
    if (!(p = txm__realloc(pc->plengths, cap * sizeof(int))))
        return TXM_ENOMEM;
    pc->plengths = p;
    if (!(p = txm__realloc(pc->pformats, cap * sizeof(int))))
        return TXM_ENOMEM;
    pc->pformats = p;
    pc->pcap = cap;
    return 0;
}

static int grow_cols(pg_conn *pc, size_t n)
{
    size_t cap;
    void *p;
    if (n <= pc->ccap)
        return 0;
    cap = pc->ccap ? pc->ccap : 8;
    while (cap < n)
        cap *= 2;
    if (!(p = txm__realloc(pc->names, cap * sizeof(char *))))
        return TXM_ENOMEM;
    pc->names = p;
    if (!(p = txm__realloc(pc->cells, cap * sizeof(txm_value))))
        return TXM_ENOMEM;
    pc->cells = p;
    if (!(p = txm__realloc(pc->ctypes, cap * sizeof(Oid))))
        return TXM_ENOMEM;
    pc->ctypes = p;
    pc->ccap = cap;
    return 0;
}

/* ---- sending ----------------------------------------------------------------------------- */

static void local_fail(pg_fail *f, size_t op, int code, const char *fmt, ...) TXM_PRINTF(4, 5);
static void local_fail(pg_fail *f, size_t op, int code, const char *fmt, ...)
{
    va_list ap;
    if (f->set)
        return;
    fail_init(f);
    f->set = true;
    f->op = op;
    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
}

/* Queues one query: an unnamed statement (name NULL), the Parse that prepares `name` (prepare),
 * or the execution of the prepared `name`. On failure fills *lf (libpq's send functions fail
 * only on a broken connection or when libpq is out of memory). */
static int queue_q(pg_conn *pc, size_t *nq, size_t op, pg_role role, const char *name, uint32_t stmt, bool prepare,
                   const char *sql, int nparams, const Oid *types, const char *const *values, const int *lengths,
                   const int *formats, pg_fail *lf)
{
    int ok;
    if (grow((void **)&pc->q, &pc->qcap, *nq + 1, sizeof(pg_query))) {
        local_fail(lf, op, TXM_ENOMEM, "out of memory queueing a PostgreSQL statement");
        return TXM_ENOMEM;
    }
    if (prepare)
        ok = PQsendPrepare(pc->conn, name, sql, nparams, types);
    else if (name)
        ok = PQsendQueryPrepared(pc->conn, name, nparams, values, lengths, formats, 0);
    else
        ok = PQsendQueryParams(pc->conn, sql, nparams, types, values, lengths, formats, 0);
    if (!ok) {
        char buf[TXM_ERR_MSG_MAX];
        bool bad = PQstatus(pc->conn) == CONNECTION_BAD;
        scrub(pc, buf, sizeof buf, PQerrorMessage(pc->conn));
        rtrim(buf);
        local_fail(lf, op, bad ? TXM_ECONNECTION : TXM_ERROR, "libpq could not send the statement: %s", buf);
        if (bad)
            lf->flags |= TXM_ERRF_TX_LOST;
        return lf->code;
    }
    pc->q[*nq].op = op;
    pc->q[*nq].role = role;
    pc->q[*nq].aux = 0;
    pc->q[*nq].stmt = stmt;
    pc->q[*nq].prepare = prepare;
    (*nq)++;
    return 0;
}

static int queue(pg_conn *pc, size_t *nq, size_t op, pg_role role, const char *sql, int nparams, const Oid *types,
                 const char *const *values, const int *lengths, const int *formats, pg_fail *lf)
{
    return queue_q(pc, nq, op, role, NULL, 0, false, sql, nparams, types, values, lengths, formats, lf);
}

static int queue_sql(pg_conn *pc, size_t *nq, size_t op, pg_role role, const char *sql, pg_fail *lf)
{
    return queue(pc, nq, op, role, sql, 0, NULL, NULL, NULL, NULL, lf);
}

/* ---- the prepared-statement cache (see pg_stmt) ---- */

static void fail_from_result(pg_conn *pc, pg_fail *f, size_t op, pg_role role, const txm_op *o,
                             const PGresult *res);

#define PG_STMT_MAX_LEN 65536 /* longer texts (generated bulk statements) run unnamed */

/* 8 bytes per step (a per-byte FNV loop was most of a lookup's cost in profiles); equal keys are
 * confirmed by comparing the whole text and types, so the hash only has to spread. */
static uint64_t stmt_hash(const char *sql, size_t len, const Oid *types, int n)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ len, w;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, sql + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    if (i < len) {
        w = 0;
        memcpy(&w, sql + i, len - i);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    for (i = 0; i < (size_t)n; i++) {
        h = (h ^ (uint64_t)types[i]) * 0xc4ceb9fe1a85ec53u;
        h ^= h >> 29;
    }
    return h;
}

static void stmt_name(const pg_conn *pc, uint32_t id, char *buf, size_t size)
{
    snprintf(buf, size, "%s%" PRIu32, pc->stmt_prefix, id);
}

static pg_stmt *stmt_by_id(pg_conn *pc, uint32_t id)
{
    size_t i;
    for (i = 0; id && i < pc->nstmts; i++)
        if (pc->stmts[i].id == id)
            return &pc->stmts[i];
    return NULL;
}

/* Forgets s; its server copy (if any) is DEALLOCATEd later when `dealloc` and there is room. */
static void stmt_remove(pg_conn *pc, pg_stmt *s, bool dealloc)
{
    if (dealloc && s->state != PREP_NONE && pc->ndealloc < pc->stmt_cap)
        pc->dealloc[pc->ndealloc++] = s->id;
    txm__free(s->sql);
    *s = pc->stmts[--pc->nstmts];
}

/* Forgets every entry and every pending DEALLOCATE: the session has none of them any more
 * (a new session, DISCARD ALL, DEALLOCATE ALL). */
static void stmt_clear(pg_conn *pc)
{
    size_t i;
    for (i = 0; i < pc->nstmts; i++)
        txm__free(pc->stmts[i].sql);
    pc->nstmts = 0;
    pc->ndealloc = 0;
}

static void dealloc_done(pg_conn *pc, uint32_t id)
{
    size_t i;
    for (i = 0; i < pc->ndealloc; i++) {
        if (pc->dealloc[i] == id) {
            pc->dealloc[i] = pc->dealloc[--pc->ndealloc];
            return;
        }
    }
}

/* The entry for (sql, types), created if new (the least recently used one makes room). NULL when
 * the statement is not to be cached: too long, no memory, or no room to remember the DEALLOCATE
 * of the entry it would replace. */
static pg_stmt *stmt_get(pg_conn *pc, const char *sql, int n, const Oid *types)
{
    size_t len = strlen(sql), i, off, size;
    uint64_t h;
    pg_stmt *s;
    char *mem;
    if (len > PG_STMT_MAX_LEN)
        return NULL;
    if (!pc->stmts) {
        pc->stmts = txm__calloc(pc->stmt_cap, sizeof *pc->stmts);
        pc->dealloc = txm__calloc(pc->stmt_cap, sizeof *pc->dealloc);
        if (!pc->stmts || !pc->dealloc) {
            txm__free(pc->stmts);
            txm__free(pc->dealloc);
            pc->stmts = NULL;
            pc->dealloc = NULL;
            return NULL;
        }
    }
    h = stmt_hash(sql, len, types, n);
    for (i = 0; i < pc->nstmts; i++) {
        s = &pc->stmts[i];
        if (s->hash == h && s->len == len && s->ntypes == n && memcmp(s->sql, sql, len) == 0 &&
            (n == 0 || memcmp(s->types, types, (size_t)n * sizeof(Oid)) == 0)) {
            s->tick = ++pc->stmt_tick;
            return s;
        }
    }
    if (pc->nstmts == pc->stmt_cap) {
        pg_stmt *victim = &pc->stmts[0];
        for (i = 1; i < pc->nstmts; i++)
            if (pc->stmts[i].tick < victim->tick)
                victim = &pc->stmts[i];
        if (victim->state != PREP_NONE && pc->ndealloc == pc->stmt_cap)
            return NULL;
        stmt_remove(pc, victim, true);
    }
    off = (len + 1 + sizeof(Oid) - 1) / sizeof(Oid) * sizeof(Oid);
    size = off + (size_t)n * sizeof(Oid);
    if (!(mem = txm__malloc(size)))
        return NULL;
    memcpy(mem, sql, len + 1);
    if (n)
        memcpy(mem + off, types, (size_t)n * sizeof(Oid));
    s = &pc->stmts[pc->nstmts++];
    memset(s, 0, sizeof *s);
    s->hash = h;
    s->sql = mem;
    s->len = len;
    s->types = (const Oid *)(void *)(mem + off);
    s->ntypes = n;
    s->tick = ++pc->stmt_tick;
    return s;
}

/* Queues a statement through the cache: unnamed until its PG_PREPARE_AT-th execution, then a
 * Parse under its name in the same flight, then Bind/Execute of the name. In an aborted
 * transaction nothing is prepared (the server refuses a Parse there). */
static int send_cached(pg_conn *pc, size_t *nq, size_t idx, pg_role role, const char *sql, int n, const Oid *types,
                       const char *const *values, const int *lengths, const int *formats, bool in_failed,
                       pg_fail *lf)
{
    pg_stmt *s = pc->stmt_cap ? stmt_get(pc, sql, n, types) : NULL;
    int rc;
    if (!s)
        return queue(pc, nq, idx, role, sql, n, types, values, lengths, formats, lf);
    if (s->uses < UINT_MAX)
        s->uses++;
    if (s->state == PREP_NONE && (s->uses < PG_PREPARE_AT || in_failed))
        return queue(pc, nq, idx, role, sql, n, types, values, lengths, formats, lf);
    if (s->state == PREP_NONE) {
        if (!s->id) {
            if (++pc->stmt_next_id == 0)
                ++pc->stmt_next_id;
            s->id = pc->stmt_next_id;
            stmt_name(pc, s->id, s->name, sizeof s->name);
        }
        if ((rc = queue_q(pc, nq, idx, role, s->name, s->id, true, s->sql, n, s->types, NULL, NULL, NULL, lf)))
            return rc;
        s->state = PREP_SENT;
    }
    return queue_q(pc, nq, idx, role, s->name, s->id, false, NULL, n, NULL, values, lengths, formats, lf);
}

/* A control statement (no parameters) through the cache. */
static int queue_ctl(pg_conn *pc, size_t *nq, size_t idx, pg_role role, const char *sql, bool in_failed, pg_fail *lf)
{
    return send_cached(pc, nq, idx, role, sql, 0, NULL, NULL, NULL, NULL, in_failed, lf);
}

/* The pending DEALLOCATEs, in a sync segment of their own in front of the flight (the server is
 * outside a transaction): one that fails (the name is already gone) fails nothing else. Returns
 * whether the segment was sent. Nothing is reported: a query that cannot be sent stays pending,
 * and a broken connection fails the ops that follow. */
static bool queue_deallocs(pg_conn *pc, size_t *nq)
{
    size_t i, q0 = *nq;
    pg_fail scratch;
    fail_init(&scratch);
    for (i = 0; i < pc->ndealloc; i++) {
        char sql[64], name[48];
        stmt_name(pc, pc->dealloc[i], name, sizeof name);
        snprintf(sql, sizeof sql, "DEALLOCATE %s", name);
        if (queue_q(pc, nq, 0, Q_DEALLOC, NULL, pc->dealloc[i], false, sql, 0, NULL, NULL, NULL, NULL, &scratch))
            break;
    }
    return *nq > q0 && PQpipelineSync(pc->conn);
}

/* The result of a Parse that prepared a cached statement. Failures are the op's (the Bind that
 * follows is skipped by the server). */
static void prepare_result(pg_conn *pc, txm_op *ops, const pg_query *q, const PGresult *res, pg_fail *f)
{
    pg_stmt *s = stmt_by_id(pc, q->stmt);
    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
        if (s && s->state == PREP_SENT)
            s->state = PREP_READY;
        return;
    case PGRES_FATAL_ERROR:
        if (s)
            stmt_remove(pc, s, false); /* the server refused it: no name to deallocate */
        if (!f->set)
            fail_from_result(pc, f, q->op, q->role, &ops[q->op], res);
        return;
    default:
        if (s && s->state == PREP_SENT)
            s->state = PREP_NONE; /* skipped after an earlier failure: never prepared */
        local_fail(f, q->op, TXM_ERROR, "statement skipped by the server after an earlier failure in its batch");
        return;
    }
}

/* Whether a failure of the cached statement s is certainly about txm's server copy, not about what
 * the statement does: 0A000 is any "feature not supported" and 26000 any missing prepared
 * statement (a function the statement calls may raise either), and treating those as a stale copy
 * would re-run work that ran (a sequence, a session lock, a remote write) and empty the cache.
 *  - stale: "cached plan must not change result type" is raised by the plan cache's revalidation
 *    (RevalidateCachedQuery) at top level, with no PL/pgSQL or SQL-function CONTEXT;
 *  - gone: the message names this statement's own name. */
static bool copy_is_stale(const PGresult *res)
{
    const char *fn = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION);
    return fn && strcmp(fn, "RevalidateCachedQuery") == 0 && PQresultErrorField(res, PG_DIAG_CONTEXT) == NULL;
}

static bool copy_is_gone(const PGresult *res, const char *name)
{
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *hit;
    size_t len = strlen(name);
    if (!primary || !len)
        return false;
    for (hit = strstr(primary, name); hit; hit = strstr(hit + 1, name))
        if (hit > primary && hit[-1] == '"' && hit[len] == '"')
            return true;
    return false;
}

/* A cached statement's execution failed: when the server's copy is stale (0A000, "cached plan
 * must not change result type") or gone (26000, naming txm's statement), the entry is dropped (a
 * stale one is DEALLOCATEd later) so that the next execution prepares the current text afresh.
 * Any other 0A000/26000 is the statement's own error: reported as it is, the entry kept. */
static void stmt_failed(pg_conn *pc, const pg_query *q, const PGresult *res, pg_fail *f)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    pg_stmt *s = stmt_by_id(pc, q->stmt);
    bool stale = st && strcmp(st, "0A000") == 0 && copy_is_stale(res);
    bool gone = st && strcmp(st, "26000") == 0 && copy_is_gone(res, s ? s->name : pc->stmt_prefix);
    if (!stale && !gone)
        return;
    if (f->set && f->op == q->op && f->role == q->role)
        f->stale = true;
    if (!s)
        return;
    if (gone && s->state == PREP_READY) {
        /* A statement this session prepared has vanished, and the application ran no DISCARD ALL
         * or DEALLOCATE ALL: a transaction pooler that does not track named statements lent
         * this client another server session (or the application deallocated txm's name). Named
         * statements cannot be trusted on this connection: the cache goes off for good. */
        stmt_clear(pc);
        pc->stmt_cap = 0;
        txm_driver_log(&pc->base, TXM_LOG_WARN,
                       "%s: a statement txm prepared on this connection is gone from the server (26000); this "
                       "happens behind a transaction pooler that does not track prepared statements (PgBouncer "
                       "before 1.21, or without max_prepared_statements): the statement cache is now off for "
                       "this connection; put txm_statement_cache=off in the URL",
                       pc->redacted);
        return;
    }
    stmt_remove(pc, s, stale);
}

static void put_be64(char *dst, uint64_t v)
{
    int i;
    for (i = 7; i >= 0; i--) {
        dst[i] = (char)(unsigned char)(v & 0xffu);
        v >>= 8;
    }
}

/* Parameters: integers as int8 and reals as float8, both in binary (no text round trip, no
 * locale); text as type "unknown" in text format so the server infers the type from context;
 * blobs as bytea in binary; NULL as a NULL pointer. */
static int send_statement(pg_conn *pc, size_t *nq, size_t idx, const txm_op *op, bool in_failed, pg_fail *lf)
{
    size_t i, need = 0, off = 0, n = op->nparams;
    if (n > PG_MAX_PARAMS) {
        local_fail(lf, idx, TXM_EINVALID, "PostgreSQL accepts at most %d parameters per statement; %zu were given",
                   PG_MAX_PARAMS, n);
        return lf->code;
    }
    for (i = 0; i < n; i++) {
        const txm_value *v = &op->params[i];
        if (v->type == TXM_T_INT || v->type == TXM_T_REAL) {
            need += 8;
        } else if (v->type == TXM_T_TEXT) {
            if (v->u.buf.len && memchr(v->u.buf.ptr, '\0', v->u.buf.len)) {
                local_fail(lf, idx, TXM_EDATA,
                           "text parameter %zu contains a NUL byte, which PostgreSQL text cannot hold (pass it as a "
                           "blob)",
                           i + 1);
                return lf->code;
            }
            need += v->u.buf.len + 1;
        } else if (v->type == TXM_T_BLOB && v->u.buf.len > (size_t)INT_MAX) {
            local_fail(lf, idx, TXM_EINVALID, "blob parameter %zu is larger than libpq accepts (%d bytes)", i + 1,
                       INT_MAX);
            return lf->code;
        }
    }
    if (grow_params(pc, n) || grow((void **)&pc->pbuf, &pc->pbufcap, need ? need : 1, 1)) {
        local_fail(lf, idx, TXM_ENOMEM, "out of memory binding statement parameters");
        return lf->code;
    }
    for (i = 0; i < n; i++) {
        const txm_value *v = &op->params[i];
        switch (v->type) {
        case TXM_T_INT:
            put_be64(pc->pbuf + off, (uint64_t)v->u.i);
            pc->ptypes[i] = PG_OID_INT8;
            pc->pvalues[i] = pc->pbuf + off;
            pc->plengths[i] = 8;
            pc->pformats[i] = 1;
            off += 8;
            break;
        case TXM_T_REAL: {
            uint64_t bits;
            memcpy(&bits, &v->u.d, sizeof bits);
            put_be64(pc->pbuf + off, bits);
            pc->ptypes[i] = PG_OID_FLOAT8;
            pc->pvalues[i] = pc->pbuf + off;
            pc->plengths[i] = 8;
            pc->pformats[i] = 1;
            off += 8;
            break;
        }
        case TXM_T_TEXT:
            if (v->u.buf.len)
                memcpy(pc->pbuf + off, v->u.buf.ptr, v->u.buf.len);
            pc->pbuf[off + v->u.buf.len] = '\0';
            pc->ptypes[i] = 0;
            pc->pvalues[i] = pc->pbuf + off;
            pc->plengths[i] = 0;
            pc->pformats[i] = 0;
            off += v->u.buf.len + 1;
            break;
        case TXM_T_BLOB:
            pc->ptypes[i] = PG_OID_BYTEA;
            pc->pvalues[i] = v->u.buf.len ? (const char *)v->u.buf.ptr : "";
            pc->plengths[i] = (int)v->u.buf.len;
            pc->pformats[i] = 1;
            break;
        default:
            pc->ptypes[i] = 0;
            pc->pvalues[i] = NULL;
            pc->plengths[i] = 0;
            pc->pformats[i] = 0;
            break;
        }
    }
    return send_cached(pc, nq, idx, Q_MAIN, op->sql, (int)n, pc->ptypes, pc->pvalues, pc->plengths, pc->pformats,
                       in_failed, lf);
}

/* Advisory lock keys. "A:B" with two decimal int32 -> the two-key form (int4, int4); a decimal
 * int64 -> that bigint (what pg_advisory_lock(123) in SQL takes); anything else -> 64-bit FNV-1a
 * of the key's bytes as a signed bigint. Writes the argument list, e.g. "-4237389227734458417". */
static int64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3u;
    }
    /* Two's complement reinterpretation without implementation-defined conversion. */
    return h > (uint64_t)INT64_MAX ? -(int64_t)(~h) - 1 : (int64_t)h;
}

static bool parse_i64(const char *s, const char *end, int64_t *out)
{
    char buf[32];
    char *e;
    long long v;
    size_t len = (size_t)(end - s), i = 0;
    if (len == 0 || len >= sizeof buf)
        return false;
    if (s[0] == '-')
        i = 1;
    if (i == len)
        return false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoll(buf, &e, 10);
    if (errno || *e)
        return false;
    *out = (int64_t)v;
    return true;
}

static void lock_args(const char *key, char *buf, size_t size)
{
    const char *colon = strchr(key, ':');
    const char *end = key + strlen(key);
    int64_t a, b;
    if (colon && parse_i64(key, colon, &a) && parse_i64(colon + 1, end, &b) && a >= INT32_MIN && a <= INT32_MAX &&
        b >= INT32_MIN && b <= INT32_MAX) {
        snprintf(buf, size, "%lld,%lld", (long long)a, (long long)b);
        return;
    }
    if (parse_i64(key, end, &a)) {
        snprintf(buf, size, "%lld", (long long)a);
        return;
    }
    snprintf(buf, size, "%lld", (long long)fnv1a64(key));
}

static int send_lock(pg_conn *pc, size_t *nq, size_t idx, const txm_op *op, pg_fail *lf)
{
    char args[48], sql[160];
    const char *shared = (op->lock_flags & TXM_LOCK_SHARED) ? "_shared" : "";
    const char *xact = (op->lock_flags & TXM_LOCK_TX) ? "xact_" : "";
    int rc;
    lock_args(op->key, args, sizeof args);
    if (op->kind == TXM_OP_UNLOCK) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock%s(%s)", shared, args);
        return queue_sql(pc, nq, idx, Q_MAIN, sql, lf);
    }
    if (op->timeout_ms == 0) {
        snprintf(sql, sizeof sql, "SELECT pg_try_advisory_%slock%s(%s)", xact, shared, args);
        return queue_sql(pc, nq, idx, Q_MAIN, sql, lf);
    }
    snprintf(sql, sizeof sql, "SELECT pg_advisory_%slock%s(%s)", xact, shared, args);
    if (op->timeout_ms < 0)
        return queue_sql(pc, nq, idx, Q_MAIN, sql, lf);
    /* Bounded wait: lock_timeout for this one statement, set and restored in the same flight.
     * set_config(..., true) is transaction-local: inside a transaction a failed wait is undone
     * by the rollback the failure requires anyway; outside one, the statements of a pipeline
     * before its sync form one implicit transaction, so the setting ends with it. The value in
     * force before is saved in a custom setting and put back. */
    {
        char set[96];
        snprintf(set, sizeof set, "SELECT set_config('lock_timeout', '%dms', true)", op->timeout_ms);
        if ((rc = queue_sql(pc, nq, idx, Q_AUX,
                            "SELECT set_config('txm.saved_lock_timeout', current_setting('lock_timeout'), true)", lf)) ||
            (rc = queue_sql(pc, nq, idx, Q_AUX, set, lf)) || (rc = queue_sql(pc, nq, idx, Q_MAIN, sql, lf)))
            return rc;
        return queue_sql(pc, nq, idx, Q_AUX,
                         "SELECT set_config('lock_timeout', current_setting('txm.saved_lock_timeout'), true)", lf);
    }
}

static const char *begin_sql(const txm_tx_options *tx, char *buf, size_t size)
{
    static const char *const iso[] = {"", " ISOLATION LEVEL READ UNCOMMITTED", " ISOLATION LEVEL READ COMMITTED",
                                      " ISOLATION LEVEL REPEATABLE READ", " ISOLATION LEVEL SERIALIZABLE"};
    unsigned i = tx ? (unsigned)tx->isolation : 0;
    unsigned flags = tx ? tx->flags : 0;
    if (i >= sizeof iso / sizeof iso[0])
        i = 0;
    if (i == 0 && !(flags & (TXM_TX_READ_ONLY | TXM_TX_DEFERRABLE)))
        return "BEGIN";
    snprintf(buf, size, "BEGIN%s%s%s", iso[i], (flags & TXM_TX_READ_ONLY) ? " READ ONLY" : "",
             (flags & TXM_TX_DEFERRABLE) ? " DEFERRABLE" : "");
    return buf;
}

/* The transaction's own timeouts, queued right behind BEGIN in its flight (no round trip of
 * their own). SET LOCAL ends with the transaction, so nothing stays in the session that a
 * transaction pooler could hand to another client. The values are integers the core checked
 * (<= TXM_TX_TIMEOUT_MAX_MS), formatted here: nothing of the caller's reaches the SQL text. */
static int queue_timeouts(pg_conn *pc, size_t *nq, size_t idx, const txm_tx_options *tx, pg_fail *lf)
{
    char sql[64];
    int rc;
    if (!tx)
        return 0;
    if (tx->lock_timeout_ms) {
        snprintf(sql, sizeof sql, "SET LOCAL lock_timeout = %u", tx->lock_timeout_ms);
        if ((rc = queue_sql(pc, nq, idx, Q_AUX, sql, lf)))
            return rc;
    }
    if (tx->statement_timeout_ms) {
        snprintf(sql, sizeof sql, "SET LOCAL statement_timeout = %u", tx->statement_timeout_ms);
        if ((rc = queue_sql(pc, nq, idx, Q_AUX, sql, lf)))
            return rc;
    }
    return 0;
}

static const char *xid_sql(const pg_conn *pc)
{
    /* Before 13 the same answer has the txid_ names (bigint, epoch-qualified too). */
    return pc->server_version >= 130000 ? "SELECT pg_current_xact_id_if_assigned()"
                                        : "SELECT txid_current_if_assigned()";
}

static int send_op(pg_conn *pc, size_t *nq, size_t idx, const txm_op *op, bool in_failed, pg_fail *lf)
{
    char sql[160], name[32];
    switch (op->kind) {
    case TXM_OP_BEGIN:
        pc->ncolpending = 0; /* keys of an earlier transaction that ended without their lookup */
        pc->tx_savepoints = 0;
        pc->subxact_warned = false;
        pc->tx_read_only = op->tx && (op->tx->flags & TXM_TX_READ_ONLY);
        {
            int rc = queue_ctl(pc, nq, idx, Q_MAIN, begin_sql(op->tx, sql, sizeof sql), in_failed, lf);
            return rc ? rc : queue_timeouts(pc, nq, idx, op->tx, lf);
        }
    case TXM_OP_SAVEPOINT:
        snprintf(sql, sizeof sql, "SAVEPOINT %s", txm_savepoint_name(name, sizeof name, op->level));
        if (++pc->tx_savepoints == PG_SUBXACT_WARN && !pc->subxact_warned) {
            pc->subxact_warned = true;
            txm_driver_log(&pc->base, TXM_LOG_WARN,
                           "this transaction has opened %d savepoints: PostgreSQL caches 64 subtransaction ids per "
                           "backend (only ROLLBACK TO frees one, RELEASE does not) and every snapshot slows down "
                           "sharply past that; restructure the nesting or commit in smaller transactions",
                           PG_SUBXACT_WARN);
        }
        return queue_ctl(pc, nq, idx, Q_MAIN, sql, in_failed, lf);
    case TXM_OP_RELEASE:
        snprintf(sql, sizeof sql, "RELEASE SAVEPOINT %s", txm_savepoint_name(name, sizeof name, op->level));
        return queue_ctl(pc, nq, idx, Q_MAIN, sql, in_failed, lf);
    case TXM_OP_ROLLBACK_TO:
        snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT %s", txm_savepoint_name(name, sizeof name, op->level));
        return queue_ctl(pc, nq, idx, Q_MAIN, sql, in_failed, lf);
    case TXM_OP_COMMIT: {
        int rc;
        pc->outcome_pending = false;
        pc->xid_state = XID_NONE;
        /* The transaction id, for resolve_outcome, in the COMMIT's own flight (no extra round
         * trip). _if_assigned: a transaction that wrote nothing has no id and gets none (taking
         * one would cost a WAL commit record, and fails on a hot standby). In an aborted
         * transaction any statement fails, and COMMIT must still run (and answer ROLLBACK).
         * A READ ONLY transaction cannot write anything durable: no id to ask for. */
        if (!pc->track_outcome) {
            pc->xid_state = XID_NONE;
        } else if (pc->tx_read_only) {
            pc->xid_state = XID_NULL;
        } else if (!in_failed) {
            if ((rc = queue_ctl(pc, nq, idx, Q_XID, xid_sql(pc), in_failed, lf)))
                return rc;
            pc->xid_state = XID_PENDING;
        }
        return queue_ctl(pc, nq, idx, Q_MAIN, "COMMIT", in_failed, lf);
    }
    case TXM_OP_ROLLBACK:
        return queue_ctl(pc, nq, idx, Q_MAIN, "ROLLBACK", in_failed, lf);
    case TXM_OP_STATEMENT:
        return send_statement(pc, nq, idx, op, in_failed, lf);
    case TXM_OP_LOCK:
    case TXM_OP_UNLOCK:
        return send_lock(pc, nq, idx, op, lf);
    }
    local_fail(lf, idx, TXM_EINVALID, "unknown op kind %d", (int)op->kind);
    return lf->code;
}

/* ---- results ----------------------------------------------------------------------------- */

static int64_t parse_int(const char *s) { return (int64_t)strtoll(s, NULL, 10); }

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes bytea text output (hex "\x..." or the old escape format) into dst (at least len
 * bytes); returns the decoded length. */
static size_t bytea_decode(const char *s, size_t len, unsigned char *dst)
{
    size_t i, o = 0;
    if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
        for (i = 2; i + 1 < len; i += 2) {
            int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
            if (hi < 0 || lo < 0)
                break;
            dst[o++] = (unsigned char)(hi << 4 | lo);
        }
        return o;
    }
    for (i = 0; i < len;) {
        if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\\') {
            dst[o++] = '\\';
            i += 2;
        } else if (s[i] == '\\' && i + 3 < len && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
                   s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            dst[o++] = (unsigned char)((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0'));
            i += 4;
        } else {
            dst[o++] = (unsigned char)s[i++];
        }
    }
    return o;
}

/* Rows to the sink, converted by column type: integers and oid -> INT, float4/8 -> REAL,
 * bool -> INT 0/1, bytea -> BLOB, everything else (numeric included: it may not fit a double)
 * -> TEXT as PostgreSQL prints it. */
static int sink_rows(pg_conn *pc, txm_sink *sink, const PGresult *res)
{
    int ncols = PQnfields(res), nrows = PQntuples(res), r, c;
    int rc = 0;
    if (grow_cols(pc, ncols > 0 ? (size_t)ncols : 1))
        return txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading a result");
    for (c = 0; c < ncols; c++) {
        pc->names[c] = PQfname(res, c);
        pc->ctypes[c] = PQftype(res, c);
    }
    if ((rc = txm_sink_columns(sink, (size_t)ncols, pc->names)))
        return rc;
    for (r = 0; r < nrows && !rc; r++) {
        size_t blob_need = 0, off = 0;
        for (c = 0; c < ncols; c++) {
            if (pc->ctypes[c] == PG_OID_BYTEA && !PQgetisnull(res, r, c))
                blob_need += (size_t)PQgetlength(res, r, c);
        }
        if (grow((void **)&pc->blob, &pc->blobcap, blob_need ? blob_need : 1, 1)) {
            rc = txm_driver_error(TXM_ENOMEM, NULL, "out of memory reading a result");
            break;
        }
        for (c = 0; c < ncols; c++) {
            txm_value *v = &pc->cells[c];
            const char *s;
            if (PQgetisnull(res, r, c)) {
                *v = txm_null();
                continue;
            }
            s = PQgetvalue(res, r, c);
            switch (pc->ctypes[c]) {
            case PG_OID_INT2:
            case PG_OID_INT4:
            case PG_OID_INT8:
            case PG_OID_OID:
                *v = txm_int(parse_int(s));
                break;
            case PG_OID_FLOAT4:
            case PG_OID_FLOAT8:
                *v = txm_real(txm__strtod(s, NULL)); /* PostgreSQL prints '.', whatever LC_NUMERIC says */
                break;
            case PG_OID_BOOL:
                *v = txm_int(s[0] == 't' ? 1 : 0);
                break;
            case PG_OID_BYTEA: {
                size_t n = bytea_decode(s, (size_t)PQgetlength(res, r, c), pc->blob + off);
                *v = txm_blob(pc->blob + off, n);
                off += n;
                break;
            }
            default:
                *v = txm_textn(s, (size_t)PQgetlength(res, r, c));
                break;
            }
        }
        rc = txm_sink_row(sink, pc->cells);
    }
    return rc;
}

/* Fills *f from an error result (fields are copied: they die with PQclear). */
static void fail_from_result(pg_conn *pc, pg_fail *f, size_t op, pg_role role, const txm_op *o,
                             const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const struct pg_state *m = pg_state_find(st);
    char text[TXM_ERR_MSG_MAX], name[32];
    fail_init(f);
    f->set = true;
    f->op = op;
    f->role = role;
    f->from_server = st != NULL;
    f->fatal = sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
    f->code = m ? m->code : TXM_ERROR;
    f->flags = m ? m->flags : 0;
    txm__strlcpy(f->sqlstate, st, sizeof f->sqlstate);
    scrub(pc, f->constraint_name, sizeof f->constraint_name, PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME));
    scrub(pc, f->table_name, sizeof f->table_name, PQresultErrorField(res, PG_DIAG_TABLE_NAME));
    scrub(pc, f->column_name, sizeof f->column_name, PQresultErrorField(res, PG_DIAG_COLUMN_NAME));
    scrub(pc, f->schema_name, sizeof f->schema_name, PQresultErrorField(res, PG_DIAG_SCHEMA_NAME));
    scrub(pc, f->detail, sizeof f->detail, PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
    if (primary) {
        scrub(pc, text, sizeof text, primary);
    } else {
        /* A client-side failure (lost connection): libpq's own message. */
        scrub(pc, text, sizeof text, PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(pc->conn));
        rtrim(text);
    }
    {
        char prefix[96];
        switch (o->kind) {
        case TXM_OP_STATEMENT:
            prefix[0] = '\0';
            break;
        case TXM_OP_LOCK:
        case TXM_OP_UNLOCK:
            snprintf(prefix, sizeof prefix, "%s('%.60s'): ", o->kind == TXM_OP_LOCK ? "txm_lock" : "txm_unlock",
                     o->key);
            break;
        case TXM_OP_BEGIN:
            snprintf(prefix, sizeof prefix, "BEGIN failed: ");
            break;
        case TXM_OP_COMMIT:
            snprintf(prefix, sizeof prefix,
                     role == Q_XID ? "the transaction-id query in front of COMMIT failed: " : "COMMIT failed: ");
            break;
        case TXM_OP_ROLLBACK:
            snprintf(prefix, sizeof prefix, "ROLLBACK failed: ");
            break;
        default:
            snprintf(prefix, sizeof prefix, "%s %s failed: ",
                     o->kind == TXM_OP_SAVEPOINT  ? "SAVEPOINT"
                     : o->kind == TXM_OP_RELEASE ? "RELEASE SAVEPOINT"
                                                 : "ROLLBACK TO SAVEPOINT",
                     txm_savepoint_name(name, sizeof name, o->level));
            break;
        }
        join(f->message, sizeof f->message, prefix, text);
    }
}

static bool first_bool(const PGresult *res)
{
    return PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0) && PQgetvalue(res, 0, 0)[0] == 't';
}

static void col_result(pg_conn *pc, unsigned aux, const PGresult *res);

/* A FATAL or PANIC from the server: the session ends with this result. */
static bool result_is_fatal(const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* Handles one result of query q. Failures go to *f (the first one wins). */
static void handle(pg_conn *pc, txm_op *ops, const pg_query *q, const PGresult *res, pg_fail *f)
{
    txm_op *op = &ops[q->op];
    if (q->role == Q_COLUMN) {
        col_result(pc, q->aux, res); /* after the transaction's end: never a failure of the run */
        return;
    }
    if (q->role == Q_DEALLOC) {
        /* Done, or refused (the name is gone): either way nothing is left to deallocate. Skipped
         * or unanswered: it stays pending. Never a failure of the run, with one exception: a
         * FATAL here (the session was terminated while idle: its FATAL waits on the socket and
         * answers the flight's first query) ends the session before any op of the run was
         * reached. It is recorded against op 0, so that a run carrying its COMMIT reports the
         * connection lost (nothing ran), not "commit outcome unknown". */
        if (PQresultStatus(res) == PGRES_FATAL_ERROR && !f->set && result_is_fatal(res)) {
            fail_from_result(pc, f, 0, Q_MAIN, &ops[0], res);
            return;
        }
        if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_FATAL_ERROR)
            dealloc_done(pc, q->stmt);
        return;
    }
    if (q->prepare) {
        prepare_result(pc, ops, q, res, f);
        return;
    }
    switch (PQresultStatus(res)) {
    case PGRES_FATAL_ERROR:
        if (!f->set)
            fail_from_result(pc, f, q->op, q->role, op, res);
        if (q->stmt)
            stmt_failed(pc, q, res, f);
        return;
    case PGRES_PIPELINE_ABORTED:
        local_fail(f, q->op, TXM_ERROR, "statement skipped by the server after an earlier failure in its batch");
        return;
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_NONFATAL_ERROR:
        break;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
        local_fail(f, q->op, TXM_ENOTSUPPORTED, "COPY is not supported by txm's PostgreSQL driver");
        return;
    default:
        local_fail(f, q->op, TXM_ERROR, "unexpected libpq result status %s", PQresStatus(PQresultStatus(res)));
        return;
    }
    if (f->set)
        return; /* after a failure that did not abort the pipeline (see below) nothing counts */
    switch (q->role) {
    case Q_AUX:
    case Q_COLUMN:
    case Q_DEALLOC:
        return;
    case Q_XID:
        if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
            txm__strlcpy(pc->xid, PQgetvalue(res, 0, 0), sizeof pc->xid);
            pc->xid_state = XID_KNOWN;
        } else {
            pc->xid_state = XID_NULL;
        }
        return;
    case Q_MAIN:
        break;
    }
    switch (op->kind) {
    case TXM_OP_COMMIT:
        /* COMMIT of an aborted transaction "succeeds" with the tag ROLLBACK: a failed commit. */
        if (strcmp(PQcmdStatus((PGresult *)res), "ROLLBACK") == 0) {
            local_fail(f, q->op, TXM_ETX_ABORTED,
                       "COMMIT failed: the transaction had been aborted by an earlier error, and the server rolled "
                       "it back (it answered ROLLBACK)");
            txm__strlcpy(f->sqlstate, "25P02", sizeof f->sqlstate); /* in_failed_sql_transaction */
        }
        return;
    case TXM_OP_STATEMENT: {
        const char *t = PQcmdTuples((PGresult *)res);
        const char *tag = PQcmdStatus((PGresult *)res);
        op->affected = t[0] ? parse_int(t) : -1;
        if (strncmp(tag, "CREATE ", 7) == 0 || strncmp(tag, "ALTER ", 6) == 0 || strncmp(tag, "DROP ", 5) == 0) {
            /* This session changed the schema: a cached constraint column may be stale. */
            memset(pc->colcache, 0, sizeof pc->colcache);
            pc->colnext = 0;
        }
        if (strcmp(tag, "DISCARD ALL") == 0 || strcmp(tag, "DEALLOCATE ALL") == 0)
            stmt_clear(pc); /* the application dropped every prepared statement of the session */
        if (op->sink) {
            int rc = sink_rows(pc, op->sink, res);
            if (rc) {
                const txm_error *e = txm_error_last();
                local_fail(f, q->op, rc, "%s", e->code == rc ? e->message : "cannot buffer the result");
            }
        }
        return;
    }
    case TXM_OP_LOCK:
        if (op->timeout_ms == 0 && !first_bool(res))
            local_fail(f, q->op, TXM_ELOCK_TIMEOUT, "txm_lock('%s'): the advisory lock is held by another session",
                       op->key);
        return;
    case TXM_OP_UNLOCK:
        if (!first_bool(res))
            local_fail(f, q->op, TXM_ENOTFOUND,
                       "txm_unlock('%s'): lock not held: this session holds no %s session-scoped advisory lock on it",
                       op->key, (op->lock_flags & TXM_LOCK_SHARED) ? "shared" : "exclusive");
        return;
    default:
        return;
    }
}

/* True only when the server's own answer proves that the COMMIT at ops[commit_op] was never
 * executed, so the transaction died with the backend (a definite rollback):
 *  - a FATAL answered a query queued before the COMMIT query (an earlier op, or the
 *    transaction-id query in front of COMMIT). The server answers a flight's queries in order, so
 *    a FATAL in place of an earlier query's result means it never got to COMMIT. This is the
 *    backend terminated (pg_terminate_backend, idle_in_transaction_session_timeout) while idle in
 *    the transaction: its FATAL waits on the socket and answers the flight's first query.
 *  - the FATAL is one that only an idle backend raises (25P03 idle-in-transaction timeout,
 *    57P05 idle-session timeout): nothing of this flight ran, whichever query it answered.
 * A FATAL answering the COMMIT itself (57P01 during a deferred trigger, say), a client-side
 * failure (no SQLSTATE) or a silent close proves nothing: the COMMIT may have happened. */
static bool commit_not_run(const pg_fail *f, size_t commit_op)
{
    if (!f->from_server || !f->fatal)
        return false;
    if (strcmp(f->sqlstate, "25P03") == 0 || strcmp(f->sqlstate, "57P05") == 0)
        return true;
    return f->op < commit_op || (f->op == commit_op && f->role == Q_XID);
}

/* Whether ops[i] must be the last op of its flight: a statement whose rows are buffered, when
 * work follows it (a statement, a lock, a COMMIT). A failure storing the rows (out of memory) is
 * no server error: the server would run that work after the failure the run reports. A trailing
 * RELEASE (a test baseline's per-statement savepoint) may share the flight: if it runs after such
 * a failure, the core's ROLLBACK TO fails and the baseline is poisoned; nothing is committed. */
static bool ends_flight(const txm_op *ops, size_t i, size_t n)
{
    size_t j;
    if (ops[i].kind != TXM_OP_STATEMENT || !ops[i].sink)
        return false;
    for (j = i + 1; j < n; j++)
        if (ops[j].kind == TXM_OP_STATEMENT || ops[j].kind == TXM_OP_LOCK || ops[j].kind == TXM_OP_UNLOCK ||
            ops[j].kind == TXM_OP_COMMIT)
            return true;
    return false;
}

/* Runs the column lookup for k in a flight of its own; the server is outside any transaction.
 * True with *column set when the server answered (see col_answer). If the connection is lost
 * meanwhile, the failure being reported stands and the next run reports the loss. */
static bool col_lookup_now(pg_conn *pc, const pg_colkey *k, char *column, size_t size, txm_run_result *out)
{
    const char *values[3];
    bool got = false;
    int nulls = 0;
    values[0] = k->schema;
    values[1] = k->table;
    values[2] = k->constraint;
    if (!PQsendQueryParams(pc->conn, pc->col_sql, 3, NULL, values, NULL, NULL, 0) || !PQpipelineSync(pc->conn))
        return false;
    out->round_trips++;
    for (;;) {
        PGresult *res = PQgetResult(pc->conn);
        if (!res) {
            /* One NULL ends the query's results; the sync follows. */
            if (PQstatus(pc->conn) == CONNECTION_BAD || ++nulls > 1)
                break;
            continue;
        }
        nulls = 0;
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (!got)
            got = col_answer(res, column, size);
        PQclear(res);
        if (PQstatus(pc->conn) == CONNECTION_BAD)
            break;
    }
    return got;
}

/* The failure f of a run: fills its column from the cache, or looks it up now (the server is
 * outside a transaction), or leaves the key for the flight that ends the transaction. Never
 * changes anything else of f. */
static void col_fill(pg_conn *pc, pg_fail *f, txm_run_result *out)
{
    pg_colkey k;
    const pg_colentry *e;
    char column[PG_NAME];
    size_t i;
    if (!col_key_of(f, &k) || !pc->conn || PQstatus(pc->conn) != CONNECTION_OK)
        return;
    if ((e = col_find(pc, &k)) == NULL && PQtransactionStatus(pc->conn) == PQTRANS_IDLE &&
        col_lookup_now(pc, &k, column, sizeof column, out)) {
        col_store(pc, &k, column);
        e = col_find(pc, &k);
    }
    if (e) {
        txm__strlcpy(f->column_name, e->column, sizeof f->column_name);
        return;
    }
    if (PQtransactionStatus(pc->conn) == PQTRANS_IDLE)
        return; /* the lookup failed: nothing to wait for */
    for (i = 0; i < pc->ncolpending; i++)
        if (col_key_eq(&pc->colpending[i], &k))
            return;
    if (pc->ncolpending < PG_COLPENDING)
        pc->colpending[pc->ncolpending++] = k;
}

/* After the outermost COMMIT or ROLLBACK, the last op of its run: the pending lookups join its
 * flight (they run once the transaction is over: no extra round trip). Only as many as the query
 * buffer holds already: the transaction's end never allocates for them (txm_rollback must work
 * without memory). A query that cannot be sent is left out: the flight's sync reports the lost
 * connection. */
static void col_queue_pending(pg_conn *pc, size_t *nq, size_t op)
{
    size_t i;
    pc->ncolflight = 0;
    for (i = 0; i < pc->ncolpending && *nq < pc->qcap; i++) {
        const pg_colkey *k = &pc->colpending[i];
        const char *values[3];
        values[0] = k->schema;
        values[1] = k->table;
        values[2] = k->constraint;
        if (!PQsendQueryParams(pc->conn, pc->col_sql, 3, NULL, values, NULL, NULL, 0))
            break;
        pc->colflight[pc->ncolflight] = *k;
        pc->q[*nq].op = op;
        pc->q[*nq].role = Q_COLUMN;
        pc->q[*nq].aux = (unsigned)pc->ncolflight++;
        pc->q[*nq].stmt = 0;
        pc->q[*nq].prepare = false;
        (*nq)++;
    }
    pc->ncolpending = 0;
}

/* The answer to a lookup that travelled after the transaction's end: cached, and handed to the
 * core for the error records the application still holds. Whatever it is, it fails nothing. */
static void col_result(pg_conn *pc, unsigned aux, const PGresult *res)
{
    char column[PG_NAME];
    const pg_colkey *k;
    const pg_colentry *e;
    if (aux >= pc->ncolflight || !col_answer(res, column, sizeof column))
        return;
    k = &pc->colflight[aux];
    col_store(pc, k, column);
    e = col_find(pc, k);
    if (e && e->column[0])
        txm_driver_late_column(&pc->base, k->schema, k->table, k->constraint, e->column);
}

static int pg_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out)
{
    pg_conn *pc = pgc(dc);
    PGconn *conn = pc->conn;
    pg_fail f, lf;
    size_t nq = 0, qi = 0, i, fop, commit_op = SIZE_MAX, start = 0;
    PGTransactionStatusType before;
    bool lost = false, have = false, in_tx_at_fail;
    int nulls = 0;

    out->completed = 0;
    out->round_trips = 0;
    if (n == 0)
        return 0;
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        txm_error_detail d;
        memset(&d, 0, sizeof d);
        d.flags = TXM_ERRF_TX_LOST;
        return txm_driver_error(TXM_ECONNECTION, &d, "the connection to %s is lost; call txm_reconnect",
                                pc->redacted);
    }
    fail_init(&f);
    fail_init(&lf);
    before = PQtransactionStatus(conn);

    /* One flight (one sync) per chunk. A chunk ends after a statement whose rows are buffered:
     * a client-side failure storing them (out of memory) is no server error, so the server would
     * run the rest of the chunk (a COMMIT included) after it. Anything else shares the flight. */
    while (start < n && !f.set && !lf.set && !lost) {
        size_t q0 = nq;
        bool in_failed = (start == 0 ? before : PQtransactionStatus(conn)) == PQTRANS_INERROR;
        unsigned syncs = 1;
        if (start == 0 && before == PQTRANS_IDLE && pc->ndealloc && queue_deallocs(pc, &nq))
            syncs++;
        for (i = start; i < n; i++) {
            if (ops[i].kind == TXM_OP_COMMIT && commit_op == SIZE_MAX)
                commit_op = i;
            if (send_op(pc, &nq, i, &ops[i], in_failed, &lf))
                break;
            if (i == n - 1 && pc->ncolpending && (ops[i].kind == TXM_OP_COMMIT || ops[i].kind == TXM_OP_ROLLBACK))
                col_queue_pending(pc, &nq, i);
            if (ends_flight(ops, i, n)) {
                i++;
                break;
            }
        }
        start = i;
        if (lf.set && PQstatus(conn) == CONNECTION_BAD) {
            lost = true;
        } else if (nq > q0) {
            if (!PQpipelineSync(conn)) {
                lost = PQstatus(conn) == CONNECTION_BAD;
                if (!lost)
                    local_fail(&lf, pc->q[q0].op, TXM_ERROR, "libpq could not send the batch");
            } else {
                out->round_trips++;
                /* Read until the sync. PQgetResult returns each query's result then NULL. */
                for (;;) {
                    PGresult *res = PQgetResult(conn);
                    if (!res) {
                        if (PQstatus(conn) == CONNECTION_BAD) {
                            lost = true;
                            break;
                        }
                        if (have) {
                            qi++;
                            have = false;
                            nulls = 0;
                            continue;
                        }
                        if (++nulls > 1) {
                            /* No result, no sync: libpq and the server disagree. Do not reuse. */
                            lost = true;
                            break;
                        }
                        continue;
                    }
                    nulls = 0;
                    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                        PQclear(res);
                        if (--syncs)
                            continue; /* the end of the DEALLOCATE segment */
                        break;
                    }
                    if (qi < nq) {
                        handle(pc, ops, &pc->q[qi], res, &f);
                        have = true;
                    }
                    PQclear(res);
                    if (PQstatus(conn) == CONNECTION_BAD) {
                        lost = true;
                        break;
                    }
                }
            }
        }
    }
    if (PQstatus(conn) == CONNECTION_BAD)
        lost = true;

    /* The failing op: the first server failure, else the first op whose result never came,
     * else a failure detected before sending. A connection lost after the last result (before
     * the sync) did not fail the batch: every op was answered. */
    if (have)
        qi++;
    /* Column lookups travel last, after the transaction's end: one left unanswered is no
     * failure of an op. */
    if (f.set)
        fop = f.op;
    else if (lost && qi < nq && pc->q[qi].role != Q_COLUMN)
        fop = pc->q[qi].op;
    else if (lf.set)
        fop = lf.op;
    else {
        out->completed = n;
        return 0;
    }
    if (!f.set)
        f = lf;
    if (!f.set) {
        fail_init(&f);
        f.set = true;
        f.op = fop;
    }

    in_tx_at_fail = before == PQTRANS_INTRANS || before == PQTRANS_INERROR;
    for (i = 0; i < fop && !in_tx_at_fail; i++)
        in_tx_at_fail = ops[i].kind == TXM_OP_BEGIN;

    if (lost)
        f.flags |= TXM_ERRF_TX_LOST;
    if (lost && (f.fatal || !f.from_server || f.code == TXM_ECONNECTION || f.code == TXM_ECOMMIT_UNKNOWN)) {
        char why[TXM_ERR_MSG_MAX];
        /* The COMMIT's fate is unknown if it was sent and the server did not prove that it died
         * before executing it (see commit_not_run). */
        bool commit_sent = commit_op != SIZE_MAX && nq > 0 &&
                           (pc->q[nq - 1].op > commit_op || (pc->q[nq - 1].op == commit_op && pc->q[nq - 1].role != Q_XID &&
                                                       !pc->q[nq - 1].prepare));
        bool commit_unknown = commit_sent && !commit_not_run(&f, commit_op);
        if (f.message[0]) {
            memcpy(why, f.message, sizeof why);
        } else {
            scrub(pc, why, sizeof why, PQerrorMessage(conn));
            rtrim(why);
        }
        if (commit_unknown || f.code == TXM_ECOMMIT_UNKNOWN) {
            f.code = TXM_ECOMMIT_UNKNOWN;
            int w = snprintf(f.message, sizeof f.message,
                             "connection to %s lost after COMMIT was sent (%s): the outcome is unknown; "
                             "txm_resolve_outcome can find out",
                             pc->redacted, why[0] ? why : "no reason given");
            (void)w; /* a long reason is cut: the message is bounded by design */
        } else {
            f.code = TXM_ECONNECTION;
            int w = snprintf(f.message, sizeof f.message, "connection to %s lost: %s", pc->redacted,
                             why[0] ? why : "no reason given");
            (void)w; /* a long reason is cut: the message is bounded by design */
        }
    } else if (in_tx_at_fail && PQtransactionStatus(conn) == PQTRANS_IDLE) {
        f.flags |= TXM_ERRF_TX_LOST; /* the server ended the transaction (e.g. a failed COMMIT) */
    }
    if (f.code == TXM_ECOMMIT_UNKNOWN)
        pc->outcome_pending = true;
    if (f.stale && !lost && f.op == 0 && before == PQTRANS_IDLE && PQtransactionStatus(conn) == PQTRANS_IDLE &&
        !pc->stmt_retrying) {
        /* The run's first op failed at the Bind of a cached statement that was stale or gone
         * (see stmt_failed), outside a transaction, and the server is still outside one: the
         * server ran nothing of the run (the error comes at Bind, the rest of the flight was
         * skipped, and the implicit transaction or the BEGIN died with it). The entry is gone
         * (or the cache off): run it all once more. This is a lone statement after an ALTER
         * TABLE, or the BEGIN of a transaction on the server session a pooler lent. */
        unsigned rt = out->round_trips;
        int rc;
        pc->stmt_retrying = true;
        rc = pg_run(dc, ops, n, out);
        pc->stmt_retrying = false;
        out->round_trips += rt;
        return rc;
    }
    if (!lost)
        col_fill(pc, &f, out);
    out->completed = fop;
    return fail_report(&f);
}

/* ---- commit outcome ---------------------------------------------------------------------- */

static int pg_resolve_outcome(txm_driver_conn *dc, txm_outcome *out)
{
    pg_conn *pc = pgc(dc);
    PGconn *conn;
    int64_t deadline;
    unsigned wait_ms = 5;
    int rc = 0;

    *out = TXM_OUTCOME_UNKNOWN;
    if (!pc->outcome_pending)
        return txm_driver_error(TXM_EMISUSE, NULL,
                                "txm_resolve_outcome: the last COMMIT on this connection did not end with an unknown "
                                "outcome");
    if (!pc->track_outcome)
        return txm_driver_error(TXM_ENOTSUPPORTED, NULL,
                                "txm_resolve_outcome: the URL turned outcome tracking off "
                                "(txm_resolve_outcome=off), so the transaction id was not recorded");
    if (pc->xid_state == XID_NULL) {
        /* No transaction id: the transaction wrote nothing, so there is nothing to lose. */
        *out = TXM_OUTCOME_COMMITTED;
        return 0;
    }
    if (pc->xid_state != XID_KNOWN)
        return 0; /* the id never reached us: nobody can tell */
    if (pc->server_version < 100000)
        return 0;

    conn = pg_connect(pc);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        rc = connect_error(pc, conn, "resolve the commit outcome on");
        if (conn)
            PQfinish(conn);
        return rc;
    }
    PQsetNoticeReceiver(conn, pg_notice, pc);
    deadline = now_ms() + PG_RESOLVE_WAIT_MS;
    for (;;) {
        const char *values[1];
        const char *sql = PQserverVersion(conn) >= 130000 ? "SELECT pg_xact_status($1::xid8)"
                                                          : "SELECT txid_status($1::bigint)";
        PGresult *res;
        values[0] = pc->xid;
        res = PQexecParams(conn, sql, 1, NULL, values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            pg_fail f;
            txm_op dummy;
            memset(&dummy, 0, sizeof dummy);
            dummy.kind = TXM_OP_STATEMENT;
            fail_from_result(pc, &f, 0, Q_MAIN, &dummy, res);
            PQclear(res);
            snprintf(f.message + strlen(f.message), sizeof f.message - strlen(f.message), " (asking pg_xact_status)");
            rc = fail_report(&f);
            break;
        }
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            const char *s = PQgetvalue(res, 0, 0);
            if (strcmp(s, "committed") == 0)
                *out = TXM_OUTCOME_COMMITTED;
            else if (strcmp(s, "aborted") == 0)
                *out = TXM_OUTCOME_ABORTED;
            else if (now_ms() < deadline) {
                /* "in progress": the old backend has not finished yet. */
                PQclear(res);
                txm__sleep_us((uint64_t)wait_ms * 1000u);
                if (wait_ms < 100)
                    wait_ms *= 2;
                continue;
            }
        }
        /* NULL: the id is too old for the commit log to remember. */
        PQclear(res);
        break;
    }
    PQfinish(conn);
    return rc;
}

static const char *const pg_schemes[] = {"postgresql", "postgres", NULL};

TXM_INTERNAL const txm_driver txm__driver_pg = {
    .version = TXM_DRIVER_VERSION,
    .name = "postgresql",
    .schemes = pg_schemes,
    .caps = TXM_CAP_PIPELINE | TXM_CAP_ADVISORY_LOCKS | TXM_CAP_SHARED_LOCKS | TXM_CAP_ISOLATION |
            TXM_CAP_READ_ONLY_TX | TXM_CAP_CANCEL | TXM_CAP_RECONNECT | TXM_CAP_RESOLVE_OUTCOME |
            TXM_CAP_TX_TIMEOUTS,
    .placeholders = TXM_PH_DOLLAR,
    .dialect = TXM_DIALECT_DOLLAR_QUOTES | TXM_DIALECT_ROW_LOCKS | TXM_DIALECT_SQLSTATE_25P02,
    .conn_size = sizeof(pg_conn),
    .open = pg_open,
    .close = pg_close,
    .run = pg_run,
    .tx_status = pg_tx_status,
    .cancel = pg_cancel,
    .reconnect = pg_reconnect,
    .resolve_outcome = pg_resolve_outcome,
};
