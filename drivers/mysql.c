/*
 * MySQL / MariaDB driver over MariaDB Connector/C (API-compatible with libmysqlclient).
 *
 * Protocol choice (docs/driver-mysql.md has the measurements): the text protocol with
 * CLIENT_MULTI_STATEMENTS. The control statements a run carries (START TRANSACTION, SAVEPOINT,
 * RELEASE, ROLLBACK TO ...) and the application statement after them go to the server as ONE
 * query packet, "SAVEPOINT txm_sp_2;INSERT ...", so a nested level costs no extra round trip. The
 * server executes them in order and stops at the first error, which is exactly the contract of
 * run(): ops after a failure are not executed. Parameters are interpolated client-side:
 * integers and doubles printed, text through mysql_real_escape_string (which follows the
 * connection character set and NO_BACKSLASH_ESCAPES), blobs as X'hex'. Server-side prepared
 * statements would cost a PREPARE round trip per new SQL text and cannot share a flight with the
 * control statements.
 *
 * Transaction truth: error packets carry no status flags, so after an error the client's
 * SERVER_STATUS_IN_TRANS is stale. The driver keeps its own `in_tx`, updates it from the OK/EOF
 * packet of every successful statement (which is how implicit commits by DDL are seen) and, when
 * an error may or may not have rolled the transaction back (1213 from InnoDB does, 1213 from a
 * GET_LOCK deadlock does not; 1205 with innodb_rollback_on_timeout), asks the server with a cheap
 * `DO 0` whose OK packet carries the current status.
 */
#include "internal.h"
#include "mysql_errparse.h"

#include <mysql.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MY_DEFAULT_CHARSET "utf8mb4"
#define MY_DEFAULT_CONNECT_TIMEOUT 10 /* seconds */
/* Seconds one network read / write may wait (0 in the URL: forever). A bound, not a statement
 * timeout: MariaDB can leave a client waiting for a result it will never send (a KILL QUERY or
 * max_statement_time landing between two statements of a packet; see wait_result), and only a
 * read timeout ends that wait when the kill did not come from txm_cancel. */
#define MY_DEFAULT_IO_TIMEOUT 3600
#define MY_LOCK_KEY_MAX 64            /* GET_LOCK name limit on MySQL 5.7+ (characters) */
#define MY_FOREVER_S 31536000         /* "wait forever" for MariaDB, which rejects negative timeouts */

/* ---------------------------------------------------------------------------------------------
 * Connection state
 * ------------------------------------------------------------------------------------------- */
typedef struct my_params {
    char *host; /* NULL: localhost through the Unix socket */
    char *user;
    char *password;
    char *db;
    char *socket;
    char *charset;
    char *ssl_ca;
    const char *redacted; /* the core's txm_url::redacted (outlives this state), for messages; the core
                           * also scrubs every secret spelling from each message and log line */
    unsigned port;
    unsigned connect_timeout;
    unsigned read_timeout;
    unsigned write_timeout;
    int ssl;        /* 1: require TLS */
    int ssl_verify; /* 1: verify the server certificate */
} my_params;

/* A transaction-scoped advisory lock (emulated: GET_LOCK is session-scoped). */
typedef struct my_txlock {
    char *key;      /* the name passed to GET_LOCK (hashed form for long keys) */
    unsigned level; /* savepoint level it was taken at (0 = outermost) */
    size_t sched;   /* expectation index + 1 of the RELEASE_LOCK statement that will free it */
} my_txlock;

/* What the driver expects back for each statement of a flight, in order. */
typedef enum my_role {
    R_BEGIN_SET = 1, /* SET TRANSACTION ISOLATION LEVEL (first half of a BEGIN op) */
    R_BEGIN,
    R_SAVEPOINT,
    R_RELEASE,
    R_ROLLBACK_TO,
    R_COMMIT,
    R_ROLLBACK,
    R_STMT,
    R_LOCK,
    R_UNLOCK,
    R_RELEASE_TXLOCKS, /* DO RELEASE_LOCK(...) after COMMIT / ROLLBACK / ROLLBACK TO */
    R_TMO_SAVE,        /* SET @txm_saved_...=@@SESSION... before a BEGIN with timeouts */
    R_TMO_SET,         /* SET SESSION innodb_lock_wait_timeout=..., max_statement_time=... */
    R_TMO_RESTORE      /* SET SESSION ...=@txm_saved_... after COMMIT / ROLLBACK */
} my_role;

typedef struct my_expect {
    size_t op;  /* index into the run's ops */
    my_role role;
    int last;   /* last statement of its op */
} my_expect;

typedef struct my_conn {
    txm_driver_conn base;
    MYSQL *db;
    my_params prm;
    unsigned flavour;        /* TXM_MY_* */
    int rollback_on_timeout; /* innodb_rollback_on_timeout: 0, 1, or -1 unknown */
    unsigned long max_packet; /* @@max_allowed_packet (0 unknown): larger queries close the connection */
    int in_tx;               /* server transaction open, per the last status we trust */
    int broken;              /* connection lost: only ROLLBACK (local), close and reconnect */
    unsigned sp_level;       /* deepest savepoint executed and not ended */
    int implicit_commit;     /* this run: a successful statement ended the transaction (DDL, ...) */
    /* Per-transaction timeouts (docs/driver-mysql.md): MY_TMO_* bits of the session variables a
     * BEGIN changed and that still have to be put back from the @txm_saved_* user variables. */
    unsigned tmo_set;
    unsigned tmo_begin; /* bits the BEGIN being built changes (applied when its SET succeeds) */

    my_txlock *txlocks;
    size_t ntxlocks, captxlocks;

    size_t *spans; /* txm__mysql_interpolate only: where each literal went (start, end) */
    char *buf; /* the flight's SQL text */
    size_t len, cap;
    my_expect *exp;
    size_t nexp, capexp;

    const char **names; /* result column names (borrowed from MYSQL_FIELD) */
    txm_value *cells;
    size_t capcells;

    pthread_mutex_t id_mu; /* guards thread_id and the wait state below, read by cancel() */
    int id_mu_init;
    unsigned long thread_id;
    int waiting;             /* blocked reading the next result of a flight (see wait_result) */
    unsigned long wait_seq;  /* bumped at every such wait */
    int wait_fd;             /* the socket it waits on */
    int unstuck;             /* my_cancel shut the socket down: the server would never answer */
} my_conn;

static pthread_once_t my_lib_once = PTHREAD_ONCE_INIT;
static int my_lib_rc;
static void my_lib_init(void) { my_lib_rc = mysql_library_init(0, NULL, NULL); }

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */
static void wipe_free(char *s)
{
    if (s) {
        volatile char *p = s;
        while (*p)
            *p++ = '\0';
        txm__free(s);
    }
}

static int reserve(my_conn *c, size_t extra)
{
    size_t need, cap;
    char *nb;
    if (c->cap - c->len > extra)
        return 0;
    if (extra > SIZE_MAX / 4 - c->len)
        return txm_driver_error(TXM_ENOMEM, NULL, "mysql: a query of more than %zu bytes", extra);
    need = c->len + extra + 1;
    cap = c->cap ? c->cap : 256;
    while (cap < need)
        cap *= 2;
    nb = txm__realloc(c->buf, cap);
    if (!nb)
        return txm_driver_error(TXM_ENOMEM, NULL, "mysql: out of memory building a %zu-byte query", need);
    c->buf = nb;
    c->cap = cap;
    return 0;
}

static int put(my_conn *c, const char *s, size_t n)
{
    int rc = reserve(c, n);
    if (rc)
        return rc;
    memcpy(c->buf + c->len, s, n);
    c->len += n;
    c->buf[c->len] = '\0';
    return 0;
}

static int puts_(my_conn *c, const char *s) { return put(c, s, strlen(s)); }

static int putf(my_conn *c, const char *fmt, ...) TXM_PRINTF(2, 3);
static int putf(my_conn *c, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return txm_driver_error(TXM_EINVALID, NULL, "mysql: internal formatting overflow");
    return put(c, tmp, (size_t)n);
}

static int put_sep(my_conn *c);

/* Appends the decimal form of v (hot path: no printf). */
static int put_i64(my_conn *c, int64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    return put(c, tmp + i, sizeof tmp - i);
}

/* Appends "<prefix>txm_sp_<level>". */
static int put_savepoint(my_conn *c, const char *prefix, unsigned level)
{
    int rc;
    if ((rc = put_sep(c)) || (rc = puts_(c, prefix)) || (rc = puts_(c, "txm_sp_")))
        return rc;
    return put_i64(c, (int64_t)level);
}

/* Appends a quoted string literal, escaped for the connection's current charset and sql_mode. */
static int put_quoted(my_conn *c, const char *s, size_t n)
{
    unsigned long w;
    int rc;
    if (n > SIZE_MAX / 4)
        return txm_driver_error(TXM_ENOMEM, NULL, "mysql: text parameter too large");
    if ((rc = reserve(c, 2 * n + 3)))
        return rc;
    c->buf[c->len++] = '\'';
    w = mysql_real_escape_string(c->db, c->buf + c->len, s, (unsigned long)n);
    if (w == (unsigned long)-1)
        return txm_driver_error(TXM_EINVALID, NULL, "mysql: cannot escape a text parameter for charset %s",
                                mysql_character_set_name(c->db));
    c->len += w;
    c->buf[c->len++] = '\'';
    c->buf[c->len] = '\0';
    return 0;
}

static int push_expect(my_conn *c, size_t op, my_role role, int last)
{
    if (c->nexp == c->capexp) {
        size_t cap = c->capexp ? c->capexp * 2 : 8;
        my_expect *ne = txm__realloc(c->exp, cap * sizeof *ne);
        if (!ne)
            return txm_driver_error(TXM_ENOMEM, NULL, "mysql: out of memory");
        c->exp = ne;
        c->capexp = cap;
    }
    c->exp[c->nexp].op = op;
    c->exp[c->nexp].role = role;
    c->exp[c->nexp].last = last;
    c->nexp++;
    return 0;
}

/* A statement separator, unless the flight is empty. */
static int put_sep(my_conn *c) { return c->len ? put(c, ";", 1) : 0; }

/* ---------------------------------------------------------------------------------------------
 * Per-transaction timeouts. Both variables are session-scoped on MySQL/MariaDB: the BEGIN flight
 * saves the session's values in user variables and sets the transaction's; the COMMIT/ROLLBACK
 * flight puts them back. A transaction that ends otherwise (deadlock, implicit commit, a failed
 * COMMIT) or a restore that failed is put back at the end of the run (restore_timeouts). A lost
 * connection needs nothing: the next session starts with the server's defaults.
 * ------------------------------------------------------------------------------------------- */
#define MY_TMO_LWT 0x1u /* innodb_lock_wait_timeout */
#define MY_TMO_MST 0x2u /* max_statement_time (MariaDB) */

/* `to_default`: the server's global values (what a new session gets) instead of the saved copies. */
static int put_timeouts_restore(my_conn *c, size_t op, unsigned bits, int to_default)
{
    int rc;
    if (!bits)
        return 0;
    if ((rc = put_sep(c)) || (rc = puts_(c, "SET ")) ||
        ((bits & MY_TMO_LWT) &&
         (rc = puts_(c, to_default ? "SESSION innodb_lock_wait_timeout=DEFAULT"
                                   : "SESSION innodb_lock_wait_timeout=@txm_saved_lock_wait_timeout"))) ||
        ((bits & MY_TMO_MST) && (rc = puts_(c, (bits & MY_TMO_LWT) ? "," : ""))) ||
        ((bits & MY_TMO_MST) &&
         (rc = puts_(c, to_default ? "SESSION max_statement_time=DEFAULT"
                                   : "SESSION max_statement_time=@txm_saved_max_statement_time"))))
        return rc;
    return push_expect(c, op, R_TMO_RESTORE, 1);
}

/* The save and set statements in front of START TRANSACTION. Values are integers the core checked
 * (<= TXM_TX_TIMEOUT_MAX_MS) and formatted here. innodb_lock_wait_timeout takes whole seconds:
 * the milliseconds are rounded up (a shorter wait than asked would fail work that the caller
 * allowed to wait). */
static int put_timeouts_begin(my_conn *c, size_t op, const txm_tx_options *t)
{
    unsigned bits = (t->lock_timeout_ms ? MY_TMO_LWT : 0u) | (t->statement_timeout_ms ? MY_TMO_MST : 0u);
    /* A variable whose restore is still pending holds an earlier transaction's value: its saved
     * copy is the session's own value, so it is not saved again. */
    unsigned save = bits & ~c->tmo_set;
    int rc;
    c->tmo_begin = 0;
    if (!bits)
        return 0;
    if ((bits & MY_TMO_MST) && !(c->flavour & TXM_MY_MARIADB))
        return txm_driver_error(TXM_ENOTSUPPORTED, NULL,
                                "mysql: statement_timeout_ms needs MariaDB's max_statement_time; MySQL's "
                                "max_execution_time bounds only SELECT statements");
    if (save &&
        ((rc = put_sep(c)) || (rc = puts_(c, "SET ")) ||
         ((save & MY_TMO_LWT) &&
          (rc = puts_(c, "@txm_saved_lock_wait_timeout=@@SESSION.innodb_lock_wait_timeout"))) ||
         ((save & MY_TMO_MST) &&
          (rc = puts_(c, (save & MY_TMO_LWT) ? ",@txm_saved_max_statement_time=@@SESSION.max_statement_time"
                                             : "@txm_saved_max_statement_time=@@SESSION.max_statement_time"))) ||
         (rc = push_expect(c, op, R_TMO_SAVE, 0))))
        return rc;
    if ((rc = put_sep(c)) || (rc = puts_(c, "SET ")) ||
        ((bits & MY_TMO_LWT) && (rc = putf(c, "SESSION innodb_lock_wait_timeout=%u",
                                           t->lock_timeout_ms / 1000u + (t->lock_timeout_ms % 1000u != 0)))) ||
        ((bits & MY_TMO_MST) && (rc = putf(c, "%sSESSION max_statement_time=%u.%03u", (bits & MY_TMO_LWT) ? "," : "",
                                           t->statement_timeout_ms / 1000u, t->statement_timeout_ms % 1000u))) ||
        (rc = push_expect(c, op, R_TMO_SET, 0)))
        return rc;
    c->tmo_begin = bits;
    return 0;
}

static const char *op_name(txm_op_kind k)
{
    switch (k) {
    case TXM_OP_BEGIN: return "START TRANSACTION";
    case TXM_OP_SAVEPOINT: return "SAVEPOINT";
    case TXM_OP_RELEASE: return "RELEASE SAVEPOINT";
    case TXM_OP_ROLLBACK_TO: return "ROLLBACK TO SAVEPOINT";
    case TXM_OP_COMMIT: return "COMMIT";
    case TXM_OP_ROLLBACK: return "ROLLBACK";
    case TXM_OP_LOCK: return "GET_LOCK";
    case TXM_OP_UNLOCK: return "RELEASE_LOCK";
    case TXM_OP_STATEMENT: return "statement";
    }
    return "operation";
}

/* ---------------------------------------------------------------------------------------------
 * Advisory lock names. GET_LOCK names are limited to 64 characters on MySQL 5.7+; longer keys are
 * replaced by "txm#" + 128 bits of hash in hex (two independent 64-bit FNV-1a streams through a
 * splitmix64 finaliser). A collision only makes two keys share one lock (extra waiting, never a
 * lost exclusion).
 * ------------------------------------------------------------------------------------------- */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void lock_name(const char *key, char out[MY_LOCK_KEY_MAX + 1])
{
    size_t n = strlen(key);
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL ^ (uint64_t)n;
    if (n <= MY_LOCK_KEY_MAX) {
        memcpy(out, key, n + 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        h1 = (h1 ^ (unsigned char)key[i]) * 0x100000001b3ULL;
        h2 = (h2 ^ (unsigned char)key[n - 1 - i]) * 0x100000001b3ULL;
    }
    snprintf(out, MY_LOCK_KEY_MAX + 1, "txm#%016" PRIx64 "%016" PRIx64, mix64(h1), mix64(h2 ^ h1));
}

static int txlock_add(my_conn *c, const char *name)
{
    char *k;
    if (c->ntxlocks == c->captxlocks) {
        size_t cap = c->captxlocks ? c->captxlocks * 2 : 4;
        my_txlock *nl = txm__realloc(c->txlocks, cap * sizeof *nl);
        if (!nl)
            return TXM_ENOMEM;
        c->txlocks = nl;
        c->captxlocks = cap;
    }
    k = txm__strdup(name);
    if (!k)
        return TXM_ENOMEM;
    c->txlocks[c->ntxlocks].key = k;
    c->txlocks[c->ntxlocks].level = c->sp_level;
    c->txlocks[c->ntxlocks].sched = 0;
    c->ntxlocks++;
    return 0;
}

static void txlock_remove_at(my_conn *c, size_t i)
{
    txm__free(c->txlocks[i].key);
    memmove(&c->txlocks[i], &c->txlocks[i + 1], (c->ntxlocks - i - 1) * sizeof c->txlocks[0]);
    c->ntxlocks--;
}

static void txlocks_clear(my_conn *c)
{
    while (c->ntxlocks)
        txlock_remove_at(c, c->ntxlocks - 1);
}

/* Test hook (tests/mysql: a controlled failure of the DO after COMMIT): when non-NULL, appended as
 * one more expression to every DO RELEASE_LOCK(...) list. Never set outside the tests. */
TXM_INTERNAL extern const char *volatile txm__mysql_test_release_tail;
const char *volatile txm__mysql_test_release_tail = NULL;

/* Appends "DO RELEASE_LOCK(..),..." for the tx locks taken at `min_level` or deeper, if any. */
static int put_release_txlocks(my_conn *c, size_t op, unsigned min_level)
{
    int any = 0, rc;
    size_t tag = c->nexp + 1;
    for (size_t i = 0; i < c->ntxlocks; i++) {
        my_txlock *l = &c->txlocks[i];
        if (l->sched || l->level < min_level)
            continue;
        if ((rc = puts_(c, any ? "," : ";DO ")) || (rc = puts_(c, "RELEASE_LOCK(")) ||
            (rc = put_quoted(c, l->key, strlen(l->key))) || (rc = put(c, ")", 1)))
            return rc;
        l->sched = tag;
        any = 1;
    }
    if (any && txm__mysql_test_release_tail && (rc = puts_(c, (const char *)txm__mysql_test_release_tail)))
        return rc;
    return any ? push_expect(c, op, R_RELEASE_TXLOCKS, 1) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Statements: placeholder interpolation and the one-statement check.
 * ------------------------------------------------------------------------------------------- */
static int put_param(my_conn *c, const txm_value *v, size_t idx)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc;
    switch (v->type) {
    case TXM_T_NULL:
        return puts_(c, "NULL");
    case TXM_T_INT:
        return put_i64(c, v->u.i);
    case TXM_T_REAL:
        if (!isfinite(v->u.d))
            return txm_driver_error(TXM_EDATA, NULL, "parameter %zu: MySQL cannot store a non-finite REAL", idx + 1);
        /* 17 digits round-trip; printed in the C locale (txm__dtoa), and with an exponent, which
         * makes the server read a DOUBLE rather than a DECIMAL ("1.5" would be DECIMAL). */
        {
            char num[48];
            int n = txm__dtoa(num, sizeof num - 3, v->u.d);
            if (n <= 0 || (size_t)n >= sizeof num - 3)
                return txm_driver_error(TXM_EINVALID, NULL, "parameter %zu: cannot format a REAL", idx + 1);
            if (!strchr(num, 'e'))
                memcpy(num + n, "e0", 3);
            return puts_(c, num);
        }
    case TXM_T_TEXT:
        if (!v->u.buf.ptr && v->u.buf.len)
            return txm_driver_error(TXM_EINVALID, NULL, "parameter %zu: NULL text pointer", idx + 1);
        return put_quoted(c, v->u.buf.ptr ? v->u.buf.ptr : "", v->u.buf.len);
    case TXM_T_BLOB: {
        const unsigned char *p = v->u.buf.ptr;
        if (!p && v->u.buf.len)
            return txm_driver_error(TXM_EINVALID, NULL, "parameter %zu: NULL blob pointer", idx + 1);
        if (v->u.buf.len > SIZE_MAX / 4)
            return txm_driver_error(TXM_ENOMEM, NULL, "parameter %zu: blob too large", idx + 1);
        if ((rc = reserve(c, 2 * v->u.buf.len + 3)))
            return rc;
        c->buf[c->len++] = 'X';
        c->buf[c->len++] = '\'';
        for (size_t i = 0; i < v->u.buf.len; i++) {
            c->buf[c->len++] = hex[p[i] >> 4];
            c->buf[c->len++] = hex[p[i] & 15];
        }
        c->buf[c->len++] = '\'';
        c->buf[c->len] = '\0';
        return 0;
    }
    }
    return txm_driver_error(TXM_EINVALID, NULL, "parameter %zu: unknown type %d", idx + 1, (int)v->type);
}

static int is_word(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '$' || ch >= 0x80;
}

/* Whether the connection charset has multibyte characters, and the length of the one at p (1 if
 * none is valid there), as the server's lexer and mysql_real_escape_string see them. */
static int multibyte(MYSQL *db)
{
#if defined(MARIADB_PACKAGE_VERSION)
    return db->charset && db->charset->char_maxlen > 1 && db->charset->mb_valid;
#else
    (void)db;
    return 0; /* libmysqlclient (untested build): see docs/driver-mysql.md */
#endif
}

static unsigned mb_len(MYSQL *db, const char *p, const char *end)
{
#if defined(MARIADB_PACKAGE_VERSION)
    unsigned l = db->charset->mb_valid(p, end);
    return l ? l : 1;
#else
    (void)db, (void)p, (void)end;
    return 1;
#endif
}

/* Whether a byte next to an interpolated literal would fuse with it into one token. */
static int sticks(unsigned char ch) { return is_word(ch) || ch == '\'' || ch == '"' || ch == '`' || ch == '.'; }

static int word_is(const char *w, size_t n, const char *kw)
{
    size_t i;
    for (i = 0; i < n && kw[i]; i++) {
        char a = w[i];
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (a != kw[i])
            return 0;
    }
    return i == n && kw[i] == '\0';
}

/* Appends op's SQL with its parameters interpolated. MySQL lexical rules: '...' and "..." with
 * doubled quotes and (unless NO_BACKSLASH_ESCAPES) backslash escapes, `...` identifiers,
 * -- (followed by a blank) and # line comments, slash-star comments. A statement must be one
 * statement: the multi-statement protocol would otherwise run a second statement smuggled into
 * the text, and the driver would misread the results. Trailing ';' (and comments) are dropped.
 * The exception is a stored-program definition (CREATE PROCEDURE/FUNCTION/TRIGGER/EVENT), whose
 * body contains ';': *alone is set, and the statement is sent in a flight of its own. */
static int put_statement(my_conn *c, const txm_op *op, int *alone)
{
    const char *s = op->sql ? op->sql : "";
    size_t n = op->sql_len ? op->sql_len : strlen(s);
    int bs = !(c->db->server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES);
    /* The server lexes literals and quoted identifiers character by character in the connection
     * charset: in gbk, sjis, big5, cp932 and gb18030 a multibyte character may end in 0x5c, which
     * is then no backslash (misreading it would put a placeholder on the wrong side of a quote). */
    int mbcs = multibyte(c->db);
    size_t i = 0, pi = 0, semi = (size_t)-1, exec_at = 0, exec_close = 0, ambiguous = (size_t)-1, word_end = 0;
    /* s[run, i) is copied verbatim but not yet appended: the text goes out in one put() per
     * placeholder rather than one per token (the hot path of every statement). Output offsets of
     * the pending part are c->len + (source index - run). */
    size_t run = 0;
    int first_kw = 0, routine = 0, after = 0, content = 0, in_exec = 0, rc;

    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        size_t j;
        if (ch == '\'' || ch == '"' || ch == '`') {
            int closed = 0;
            for (j = i + 1; j < n; j++) {
                unsigned l;
                if (mbcs && (unsigned char)s[j] >= 0x80 && (l = mb_len(c->db, s + j, s + n)) > 1) {
                    j += l - 1;
                    continue;
                }
                if (bs && ch != '`' && s[j] == '\\') {
                    j++;
                    continue;
                }
                if ((unsigned char)s[j] == ch) {
                    if (j + 1 < n && (unsigned char)s[j + 1] == ch) {
                        j++;
                        continue;
                    }
                    closed = 1;
                    j++;
                    break;
                }
            }
            if (!closed)
                return txm_driver_error(TXM_EINVALID, NULL, "unterminated %s starting at offset %zu",
                                        ch == '`' ? "quoted identifier" : "string literal", i);
            if (semi != (size_t)-1)
                after = 1;
            else if (!first_kw)
                first_kw = 2;
            content = 1;
        } else if (ch == '#' || (ch == '-' && i + 1 < n && s[i + 1] == '-' &&
                                 (i + 2 >= n || (unsigned char)s[i + 2] <= ' ' || s[i + 2] == 0x7f))) {
            for (j = i; j < n && s[j] != '\n'; j++)
                ;
        } else if (ch == '/' && i + 1 < n && s[i + 1] == '*') {
            /* Executable comments (slash-star-bang, slash-star-M-bang) are code to the server: their
             * content is scanned like the rest, as the core's placeholder counter does. */
            size_t ex = (i + 2 < n && s[i + 2] == '!') ? 3 : (i + 3 < n && s[i + 2] == 'M' && s[i + 3] == '!') ? 4 : 0;
            if (ex && !in_exec) {
                in_exec = 1;
                exec_at = i;
                /* where a server that skips this comment ends it: the first star-slash */
                for (exec_close = i + ex; exec_close + 1 < n && !(s[exec_close] == '*' && s[exec_close + 1] == '/');
                     exec_close++)
                    ;
                j = i + ex;
                if (semi != (size_t)-1)
                    after = 1;
                content = 1;
            } else {
                for (j = i + 2; j + 1 < n && !(s[j] == '*' && s[j + 1] == '/'); j++)
                    ;
                if (j + 1 >= n)
                    return txm_driver_error(TXM_EINVALID, NULL, "unterminated comment starting at offset %zu", i);
                j += 2;
            }
        } else if (in_exec && ch == '*' && i + 1 < n && s[i + 1] == '/') {
            if (i != exec_close && ambiguous == (size_t)-1)
                ambiguous = exec_at;
            in_exec = 0;
            j = i + 2;
        } else if (ch == '?') {
            /* See core/sql.c: inside an executable comment a value would be a literal only to a
             * server that runs the comment; to one that skips it, a star-slash in the value ends
             * the comment and the rest of the value is SQL. */
            if (in_exec)
                return txm_driver_error(TXM_EINVALID, NULL,
                                        "placeholder at byte offset %zu is inside the MySQL executable comment "
                                        "starting at byte offset %zu: refused (a server that skips the comment "
                                        "would not read the value as a literal)",
                                        i, exec_at);
            if (pi >= op->nparams)
                return txm_driver_error(TXM_EINVALID, NULL, "statement has more placeholders than the %zu parameters",
                                        op->nparams);
            if (semi != (size_t)-1)
                after = 1;
            content = 1;
            if (i > run && (rc = put(c, s + run, i - run)))
                return rc;
            /* Keep the literal a token of its own: "a?" with 5 would be the identifier a5, "'x'?"
             * with 'y' the single string x'y, "?AND" with 5 the identifier 5AND. */
            if (c->len && (sticks((unsigned char)c->buf[c->len - 1]) || c->len == word_end) && (rc = put(c, " ", 1)))
                return rc;
            if (c->spans)
                c->spans[2 * pi] = c->len;
            if ((rc = put_param(c, &op->params[pi], pi)))
                return rc;
            if (c->spans)
                c->spans[2 * pi + 1] = c->len;
            if (i + 1 < n && sticks((unsigned char)s[i + 1]) && (rc = put(c, " ", 1)))
                return rc;
            pi++;
            run = ++i;
            continue;
        } else if (ch == ';') {
            if (semi == (size_t)-1)
                semi = c->len + (i - run);
            j = i + 1;
        } else if (is_word(ch)) {
            /* a multibyte character is part of the word even if its trail byte is ASCII ('[' in
             * gbk 0x9a 0x5b): a literal right after it must not fuse with the word */
            for (j = i; j < n && is_word((unsigned char)s[j]);)
                j += mbcs && (unsigned char)s[j] >= 0x80 ? mb_len(c->db, s + j, s + n) : 1;
            if (j > n)
                j = n;
            word_end = c->len + (j - run);
            content = 1;
            if (semi != (size_t)-1) {
                after = 1;
            } else if (!first_kw) {
                first_kw = word_is(s + i, j - i, "CREATE") ? 1 : 2;
            } else if (first_kw == 1 && (word_is(s + i, j - i, "PROCEDURE") || word_is(s + i, j - i, "FUNCTION") ||
                                         word_is(s + i, j - i, "TRIGGER") || word_is(s + i, j - i, "EVENT") ||
                                         word_is(s + i, j - i, "PACKAGE"))) {
                routine = 1;
            }
        } else {
            if (ch > ' ') {
                if (semi != (size_t)-1)
                    after = 1;
                content = 1;
            }
            j = i + 1;
        }
        i = j;
    }
    if (n > run && (rc = put(c, s + run, n - run)))
        return rc;
    if (in_exec)
        return txm_driver_error(TXM_EINVALID, NULL, "unterminated executable comment");
    if (ambiguous != (size_t)-1 && pi > 0)
        return txm_driver_error(TXM_EINVALID, NULL,
                                "the MySQL executable comment starting at byte offset %zu holds a '*/' inside a "
                                "literal or comment: a server that skips the comment ends it there, so the "
                                "statement's placeholders are refused",
                                ambiguous);
    if (pi != op->nparams)
        return txm_driver_error(TXM_EINVALID, NULL, "statement has %zu placeholders but %zu parameters were given", pi,
                                op->nparams);
    if (!content)
        return txm_driver_error(TXM_EINVALID, NULL, "empty SQL statement");
    if (semi != (size_t)-1) {
        if (!after) {
            c->len = semi; /* "...;  -- done" would be an extra empty statement */
            c->buf[c->len] = '\0';
        } else if (first_kw == 1 && routine) {
            *alone = 1;
        } else {
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "more than one SQL statement in one call (a ';' outside quotes and comments); "
                                    "send them separately");
        }
    }
    return 0;
}

/* For the interpolation fuzz target (tests/fuzz/fuzz_myparam.c): op's statement exactly as run()
 * would put it in a flight, for the character set and NO_BACKSLASH_ESCAPES status bit of `db` (a
 * handle from mysql_init; no server needed). Returns 0 with a txm__malloc'ed text in *out (*len
 * bytes), *alone set and, for parameter k, its literal at [spans[2k], spans[2k+1]) (spans: room
 * for 2 * op->nparams), or the TXM_E* code with the error record set. */
TXM_INTERNAL int txm__mysql_interpolate(MYSQL *db, const txm_op *op, char **out, size_t *len, int *alone,
                                        size_t *spans);
int txm__mysql_interpolate(MYSQL *db, const txm_op *op, char **out, size_t *len, int *alone, size_t *spans)
{
    my_conn c;
    int rc;
    memset(&c, 0, sizeof c);
    c.db = db;
    c.spans = spans;
    *out = NULL;
    *len = 0;
    *alone = 0;
    if ((rc = put_statement(&c, op, alone)) != 0) {
        txm__free(c.buf);
        return rc;
    }
    if (!c.buf && (rc = reserve(&c, 1)) != 0)
        return rc;
    *out = c.buf;
    *len = c.len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------------------------- */
static void params_free(my_params *p)
{
    txm__free(p->host);
    txm__free(p->user);
    wipe_free(p->password);
    txm__free(p->db);
    txm__free(p->socket);
    txm__free(p->charset);
    txm__free(p->ssl_ca);
    memset(p, 0, sizeof *p);
}

static int parse_uint(const char *v, unsigned max, unsigned *out)
{
    char *end;
    unsigned long x;
    if (!v || !*v || *v == '-' || *v == '+')
        return 0;
    errno = 0;
    x = strtoul(v, &end, 10);
    if (errno || *end || x > max)
        return 0;
    *out = (unsigned)x;
    return 1;
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d;
    if (!s || !*s)
        return NULL;
    d = txm__strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

static int params_from_url(my_params *p, const txm_url *u)
{
    int oom = 0;
    const char *charset = MY_DEFAULT_CHARSET;
    p->connect_timeout = MY_DEFAULT_CONNECT_TIMEOUT;
    p->read_timeout = MY_DEFAULT_IO_TIMEOUT;
    p->write_timeout = MY_DEFAULT_IO_TIMEOUT;
    if (!u->hierarchical)
        return txm_driver_error(TXM_EINVALID, NULL, "mysql URL must look like mysql://user:pass@host:port/db: %s",
                                u->redacted);
    for (size_t i = 0; i < u->nparams; i++) {
        const char *k = u->params[i].key, *v = u->params[i].value;
        if (strcmp(k, "socket") == 0 || strcmp(k, "ssl_ca") == 0) {
            /* taken below */
        } else if (strcmp(k, "charset") == 0) {
            if (!v || !*v)
                return txm_driver_error(TXM_EINVALID, NULL, "mysql URL: empty charset in %s", u->redacted);
            charset = v;
        } else if (strcmp(k, "connect_timeout") == 0) {
            if (!parse_uint(v, 3600, &p->connect_timeout))
                return txm_driver_error(TXM_EINVALID, NULL, "mysql URL: connect_timeout must be 0..3600 seconds in %s",
                                        u->redacted);
        } else if (strcmp(k, "read_timeout") == 0) {
            if (!parse_uint(v, 86400, &p->read_timeout))
                return txm_driver_error(TXM_EINVALID, NULL, "mysql URL: read_timeout must be 0..86400 seconds in %s",
                                        u->redacted);
        } else if (strcmp(k, "write_timeout") == 0) {
            if (!parse_uint(v, 86400, &p->write_timeout))
                return txm_driver_error(TXM_EINVALID, NULL, "mysql URL: write_timeout must be 0..86400 seconds in %s",
                                        u->redacted);
        } else if (strcmp(k, "ssl") == 0 || strcmp(k, "ssl_verify") == 0) {
            unsigned b;
            if (!parse_uint(v, 1, &b))
                return txm_driver_error(TXM_EINVALID, NULL, "mysql URL: %s must be 0 or 1 in %s", k, u->redacted);
            *(strcmp(k, "ssl") == 0 ? &p->ssl : &p->ssl_verify) = (int)b;
        } else {
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "mysql URL: unknown parameter '%s' (known: socket, charset, connect_timeout, "
                                    "read_timeout, write_timeout, ssl, ssl_verify, ssl_ca) in %s",
                                    k, u->redacted);
        }
    }
    if (u->port < 0 || u->port > 65535)
        return txm_driver_error(TXM_EINVALID, NULL, "mysql URL: bad port in %s", u->redacted);
    p->port = (unsigned)u->port;
    p->host = dup_or_null(u->host, &oom);
    p->user = dup_or_null(u->user, &oom);
    p->password = dup_or_null(u->password, &oom);
    p->db = dup_or_null(u->path, &oom);
    p->socket = dup_or_null(txm_url_param_get(u, "socket"), &oom);
    p->ssl_ca = dup_or_null(txm_url_param_get(u, "ssl_ca"), &oom);
    p->charset = dup_or_null(charset, &oom);
    p->redacted = u->redacted;
    if (oom)
        return txm_driver_error(TXM_ENOMEM, NULL, "mysql: out of memory");
    return 0;
}

/* Whether the connection negotiated TLS (a non-empty cipher). */
static int has_tls(MYSQL *db)
{
    const char *cipher = mysql_get_ssl_cipher(db);
    return cipher && *cipher;
}

/* Opens a MYSQL handle with p's settings. On failure returns NULL with *native / msg set. */
static MYSQL *my_connect(const my_params *p, unsigned connect_timeout, unsigned *native, char *msg, size_t msgsz)
{
    MYSQL *db;
    unsigned ct = connect_timeout;
    /* my_bool (MariaDB) and bool (MySQL 8) are both one byte */
    unsigned char off = 0, on = 1;
    unsigned int infile = 0;

    if (pthread_once(&my_lib_once, my_lib_init) != 0 || my_lib_rc != 0) {
        *native = 2008;
        snprintf(msg, msgsz, "MySQL client library failed to initialise");
        return NULL;
    }
    db = mysql_init(NULL);
    if (!db) {
        *native = 2008;
        snprintf(msg, msgsz, "mysql_init: out of memory");
        return NULL;
    }
    mysql_options(db, MYSQL_SET_CHARSET_NAME, p->charset ? p->charset : MY_DEFAULT_CHARSET);
    if (ct)
        mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    if (p->read_timeout)
        mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &p->read_timeout);
    if (p->write_timeout)
        mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &p->write_timeout);
    /* Never reconnect behind txm's back (a reconnect silently drops the transaction), and never
     * let a server read client files through LOAD DATA LOCAL. */
    mysql_options(db, MYSQL_OPT_RECONNECT, &off);
    mysql_options(db, MYSQL_OPT_LOCAL_INFILE, &infile);
#if defined(MARIADB_PACKAGE_VERSION)
    if (p->ssl)
        mysql_options(db, MYSQL_OPT_SSL_ENFORCE, &on);
    if (p->ssl_verify)
        mysql_options(db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
#else /* libmysqlclient 8: one mode instead (untested build path) */
    if (p->ssl || p->ssl_verify) {
        unsigned int mode = p->ssl_verify ? SSL_MODE_VERIFY_CA : SSL_MODE_REQUIRED;
        mysql_options(db, MYSQL_OPT_SSL_MODE, &mode);
    }
#endif
    if (p->ssl_ca)
        mysql_options(db, MYSQL_OPT_SSL_CA, p->ssl_ca);
    if (!mysql_real_connect(db, p->host, p->user, p->password, p->db, p->port, p->socket,
                            CLIENT_MULTI_STATEMENTS | CLIENT_FOUND_ROWS)) {
        *native = mysql_errno(db);
        snprintf(msg, msgsz, "%s", mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    /* Connector/C 3.3 falls back to plaintext, silently, when the server has no TLS and the
     * certificate is not verified: the negotiated cipher is the only reliable word. */
    if ((p->ssl || p->ssl_verify) && !has_tls(db)) {
        *native = 2026; /* CR_SSL_CONNECTION_ERROR */
        snprintf(msg, msgsz,
                 "%s requires TLS, but the server did not negotiate it (no cipher; the server may have TLS "
                 "disabled): connection closed",
                 p->ssl ? "ssl=1" : "ssl_verify=1");
        mysql_close(db);
        return NULL;
    }
    return db;
}

static void set_thread_id(my_conn *c, unsigned long id)
{
    pthread_mutex_lock(&c->id_mu);
    c->thread_id = id;
    pthread_mutex_unlock(&c->id_mu);
}

/* Connects c->db and learns what the server is. */
static int connect_main(my_conn *c)
{
    unsigned native = 0;
    char msg[MYSQL_ERRMSG_SIZE + 1];
    const char *info;
    unsigned long ver;
    MYSQL_RES *res;

    c->db = my_connect(&c->prm, c->prm.connect_timeout, &native, msg, sizeof msg);
    if (!c->db) {
        txm_error_detail d;
        int code = txm__mysql_classify(native, NULL, msg, TXM_MY_ANY, NULL);
        if (code != TXM_EAUTH && code != TXM_ENOMEM)
            code = TXM_ECONNECTION;
        memset(&d, 0, sizeof d);
        d.native_code = (int)native;
        return txm_driver_error(code, &d, "cannot connect to %s: %s", c->prm.redacted, msg);
    }
    info = mysql_get_server_info(c->db);
    ver = mysql_get_server_version(c->db);
    c->flavour = (info && strstr(info, "MariaDB")) ? TXM_MY_MARIADB : TXM_MY_MYSQL;
    if (c->flavour == TXM_MY_MYSQL && ver >= 80019)
        c->flavour |= TXM_MY_DUPKEY_QUALIFIED;
    c->rollback_on_timeout = -1;

    /* One round trip at connect: whether a lock wait timeout rolls back the whole transaction,
     * and (MariaDB) whether this is a Galera node, where 1213 is a certification conflict. */
    c->max_packet = 0;
    if (mysql_query(c->db, c->flavour & TXM_MY_MARIADB
                               ? "SELECT @@max_allowed_packet, @@innodb_rollback_on_timeout, @@wsrep_on"
                               : "SELECT @@max_allowed_packet, @@innodb_rollback_on_timeout") == 0 &&
        (res = mysql_store_result(c->db)) != NULL) {
        MYSQL_ROW row = mysql_fetch_row(res);
        if (row && row[0])
            c->max_packet = strtoul(row[0], NULL, 10);
        if (row && row[1])
            c->rollback_on_timeout = atoi(row[1]) ? 1 : 0;
        if (row && mysql_num_fields(res) > 2 && row[2] && atoi(row[2]))
            c->flavour |= TXM_MY_WSREP;
        mysql_free_result(res);
    } else if (txm__mysql_is_connection_lost(mysql_errno(c->db), c->flavour)) {
        txm_error_detail d;
        memset(&d, 0, sizeof d);
        d.native_code = (int)mysql_errno(c->db);
        return txm_driver_error(TXM_ECONNECTION, &d, "connection to %s lost right after connecting: %s",
                                c->prm.redacted, mysql_error(c->db));
    }
    /* (innodb disabled: the variable does not exist; stay "unknown" and probe after 1205.) */
    set_thread_id(c, mysql_thread_id(c->db));
    c->in_tx = 0;
    c->broken = 0;
    c->sp_level = 0;
    txm_driver_log(&c->base, TXM_LOG_DEBUG, "mysql: connected to %s (%s, thread %lu)", c->prm.redacted,
                   info ? info : "?", mysql_thread_id(c->db));
    return 0;
}

static int my_open(txm_driver_conn *dc, const txm_url *url)
{
    my_conn *c = (my_conn *)dc;
    int rc;
    if (pthread_mutex_init(&c->id_mu, NULL) != 0)
        return txm_driver_error(TXM_ENOMEM, NULL, "mysql: cannot create a mutex");
    c->id_mu_init = 1;
    if ((rc = params_from_url(&c->prm, url)))
        return rc;
    return connect_main(c);
}

static void my_close(txm_driver_conn *dc)
{
    my_conn *c = (my_conn *)dc;
    if (c->db)
        mysql_close(c->db);
    c->db = NULL;
    txlocks_clear(c);
    txm__free(c->txlocks);
    txm__free(c->buf);
    txm__free(c->exp);
    txm__free(c->names);
    txm__free(c->cells);
    params_free(&c->prm);
    if (c->id_mu_init)
        pthread_mutex_destroy(&c->id_mu);
    c->id_mu_init = 0;
}

static int my_reconnect(txm_driver_conn *dc)
{
    my_conn *c = (my_conn *)dc;
    if (c->db)
        mysql_close(c->db);
    c->db = NULL;
    set_thread_id(c, 0);
    txlocks_clear(c); /* the server released them with the old session */
    c->tmo_set = 0;   /* and the new session has the server's default timeouts */
    c->in_tx = 0;
    c->broken = 1; /* until the new connection is up */
    return connect_main(c);
}

/* Whether server thread `id` is idle (no statement: it owes its client nothing), asked on k. After
 * a KILL QUERY an idle thread shows COMMAND "Killed" instead of "Sleep" (the flag waits for its next
 * statement), so the test is on INFO, the statement text. */
static int server_idle(MYSQL *k, unsigned long id)
{
    char q[160];
    MYSQL_RES *res;
    MYSQL_ROW row;
    int idle = 0;
    snprintf(q, sizeof q,
             "SELECT INFO IS NULL AND COMMAND IN ('Sleep', 'Killed') FROM information_schema.PROCESSLIST "
             "WHERE ID = %lu",
             id);
    if (mysql_query(k, q) != 0 || (res = mysql_store_result(k)) == NULL)
        return 0;
    row = mysql_fetch_row(res);
    idle = row && row[0] && strcmp(row[0], "1") == 0;
    mysql_free_result(res);
    return idle;
}

/* After our KILL QUERY: if the connection waits for a result while its server thread is idle, the
 * server skipped the rest of the packet and will never answer (see wait_result). In this protocol
 * the server never idles while it owes a result, so: idle twice over ~100 ms, the same wait
 * (wait_seq) all along, and nothing readable on the socket mean it is stuck; shutting the socket
 * down wakes the reader with a lost connection, which the driver reports as such (COMMIT_UNKNOWN
 * if the unanswered statement was a COMMIT; the server rolls back what did not commit). Bounded:
 * about a second at most, ~10 ms when the connection makes progress after the kill. */
static void unstick(my_conn *c, MYSQL *k, unsigned long id)
{
    unsigned long seq0, last = 0;
    pthread_mutex_lock(&c->id_mu);
    seq0 = c->wait_seq;
    pthread_mutex_unlock(&c->id_mu);
    for (int round = 0; round < 100; round++) {
        struct timespec tick = {0, 10 * 1000000L};
        unsigned long seq;
        int waiting;
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&c->id_mu);
        waiting = c->waiting && c->thread_id == id;
        seq = c->wait_seq;
        pthread_mutex_unlock(&c->id_mu);
        /* The kill is used up by the statement it hits, or by the skip; two results later the
         * client is past it. Not waiting, or a wait that just began: nothing to do yet. */
        if (seq >= seq0 + 3 || (!waiting && seq != seq0))
            return;
        if (!waiting || seq != last) {
            last = seq;
            continue;
        }
        /* the same wait for 10 ms or more: is the server idle? */
        if (server_idle(k, id)) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            if (server_idle(k, id)) {
                pthread_mutex_lock(&c->id_mu);
                if (c->waiting && c->wait_seq == seq && c->thread_id == id) {
                    struct pollfd pfd;
                    pfd.fd = c->wait_fd;
                    pfd.events = POLLIN;
                    pfd.revents = 0;
                    if (pfd.fd >= 0 && poll(&pfd, 1, 0) == 0) {
                        shutdown(pfd.fd, SHUT_RDWR);
                        c->unstuck = 1; /* logged by the waiting thread (no user callback here) */
                        pthread_mutex_unlock(&c->id_mu);
                        return;
                    }
                }
                pthread_mutex_unlock(&c->id_mu);
            }
        }
    }
}

/* Cancels the running statement: KILL QUERY <thread id> on a second, short-lived connection.
 * Thread-safe: reads only the immutable parameters and the mutex-guarded thread id. There is the
 * usual race of every KILL QUERY: if the statement finished just before, the kill may hit the
 * next statement of the same connection. */
static int my_cancel(txm_driver_conn *dc)
{
    my_conn *c = (my_conn *)dc;
    unsigned long id;
    unsigned native = 0;
    char msg[MYSQL_ERRMSG_SIZE + 1], q[64];
    MYSQL *k;
    unsigned ct = c->prm.connect_timeout && c->prm.connect_timeout < 5 ? c->prm.connect_timeout : 5;

    pthread_mutex_lock(&c->id_mu);
    id = c->thread_id;
    pthread_mutex_unlock(&c->id_mu);
    if (!id)
        return txm_driver_error(TXM_ECONNECTION, NULL, "mysql cancel: the connection is not open");
    k = my_connect(&c->prm, ct, &native, msg, sizeof msg);
    if (!k) {
        txm_error_detail d;
        int code = txm__mysql_classify(native, NULL, msg, TXM_MY_ANY, NULL);
        memset(&d, 0, sizeof d);
        d.native_code = (int)native;
        return txm_driver_error(code == TXM_EAUTH ? code : TXM_ECONNECTION, &d,
                                "mysql cancel: cannot open a second connection to %s: %s", c->prm.redacted, msg);
    }
    snprintf(q, sizeof q, "KILL QUERY %lu", id);
    if (mysql_query(k, q) != 0) {
        txm_error_detail d;
        unsigned e = mysql_errno(k);
        /* TXM_MY_ANY, not c->flavour: cancel runs on another thread, and txm_reconnect rewrites
         * c->flavour (a data race TSan found); the KILL's errors read the same on every flavour. */
        int code = txm__mysql_classify(e, mysql_sqlstate(k), mysql_error(k), TXM_MY_ANY, NULL);
        memset(&d, 0, sizeof d);
        d.native_code = (int)e;
        d.sqlstate = mysql_sqlstate(k);
        code = txm_driver_error(code, &d, "mysql cancel: KILL QUERY %lu failed: %s", id, mysql_error(k));
        mysql_close(k);
        return code;
    }
    unstick(c, k, id);
    mysql_close(k);
    return 0;
}

static txm_tx_status my_tx_status(txm_driver_conn *dc)
{
    my_conn *c = (my_conn *)dc;
    if (c->broken || !c->db)
        return TXM_TXS_UNKNOWN;
    return c->in_tx ? TXM_TXS_ACTIVE : TXM_TXS_IDLE;
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */
typedef struct my_flight {
    txm_op *ops;
    size_t first, end; /* ops[first..end) are in this flight */
    txm_run_result *out;
} my_flight;

/* Cheap status probe: the OK packet of `DO 0` carries SERVER_STATUS_IN_TRANS. Returns 1 in a
 * transaction, 0 not, -1 connection lost. */
static int probe_in_tx(my_conn *c, txm_run_result *out)
{
    out->round_trips++;
    if (mysql_real_query(c->db, "DO 0", 4) != 0) {
        if (txm__mysql_is_connection_lost(mysql_errno(c->db), c->flavour))
            return -1;
        return c->in_tx; /* cannot tell; keep our belief */
    }
    return (c->db->server_status & SERVER_STATUS_IN_TRANS) ? 1 : 0;
}

static void mark_broken(my_conn *c)
{
    c->broken = 1;
    c->in_tx = 0;
    c->sp_level = 0;
    c->tmo_set = 0;   /* a new session starts with the server's defaults: nothing to put back */
    txlocks_clear(c); /* the server drops a dead session's locks */
}

/* Sets the error record for a failed op (names parsed from the English message when possible). */
static int report(my_conn *c, const txm_op *op, int code, unsigned native, const char *sqlstate, const char *msg,
                  int lost, const char *suffix)
{
    txm_my_names names;
    txm_error_detail d;
    char prefix[48] = "";

    memset(&d, 0, sizeof d);
    d.native_code = (int)native;
    d.sqlstate = sqlstate;
    if (txm__mysql_parse_names(native, c->flavour, msg, strlen(msg), &names)) {
        d.constraint_name = names.constraint_name;
        d.table_name = names.table_name;
        d.schema_name = names.schema_name;
        d.column_name = names.column_name;
    }
    d.flags = lost ? TXM_ERRF_TX_LOST : 0;
    if (op->kind == TXM_OP_SAVEPOINT || op->kind == TXM_OP_RELEASE || op->kind == TXM_OP_ROLLBACK_TO)
        snprintf(prefix, sizeof prefix, "%s txm_sp_%u: ", op_name(op->kind), op->level);
    else if (op->kind != TXM_OP_STATEMENT)
        snprintf(prefix, sizeof prefix, "%s: ", op_name(op->kind));
    return txm_driver_error(code, &d, "%s%s%s", prefix, msg, suffix);
}

/* Reports the failure of ops[k] with a server or client error. `sent` says whether the flight
 * reached the wire (a connection found dead before sending cannot have committed anything). */
static int fail_native(my_conn *c, my_flight *f, size_t k, unsigned native, const char *sqlstate, const char *msg,
                       int sent)
{
    txm_my_tx_effect eff;
    int code = txm__mysql_classify(native, sqlstate, msg, c->flavour, &eff);
    int was_in_tx = c->in_tx, commit_in_flight = 0;
    char m[MYSQL_ERRMSG_SIZE + 1], st[6];

    /* copy first: a probe overwrites the handle's error state */
    snprintf(m, sizeof m, "%s", msg ? msg : "");
    snprintf(st, sizeof st, "%s", sqlstate ? sqlstate : "");
    f->out->completed = k;
    for (size_t i = k; i < f->end; i++)
        if (f->ops[i].kind == TXM_OP_COMMIT)
            commit_in_flight = 1;

    if (code == TXM_ECONNECTION || txm__mysql_is_connection_lost(native, c->flavour)) {
        mark_broken(c);
        if (commit_in_flight && sent)
            return report(c, &f->ops[k], TXM_ECOMMIT_UNKNOWN, native, st, m, 0,
                          " (connection lost after COMMIT was sent: the outcome is unknown)");
        return report(c, &f->ops[k], TXM_ECONNECTION, native, st, m, 1,
                      was_in_tx ? " (connection lost: the transaction is gone)" : " (connection lost)");
    }
    if (eff == TXM_MY_TX_LOST && was_in_tx) {
        c->in_tx = 0;
        return report(c, &f->ops[k], code, native, st, m, 1, " (the server rolled back the whole transaction)");
    }
    if (eff == TXM_MY_TX_PROBE && was_in_tx && !(native == 1205 && c->rollback_on_timeout == 0)) {
        int r = probe_in_tx(c, f->out);
        if (r < 0) {
            mark_broken(c);
            return report(c, &f->ops[k], code, native, st, m, 1, " (and then the connection was lost)");
        }
        if (r == 0) {
            c->in_tx = 0;
            return report(c, &f->ops[k], code, native, st, m, 1, " (the server rolled back the whole transaction)");
        }
    }
    return report(c, &f->ops[k], code, native, st, m, 0, "");
}

static int fail_db(my_conn *c, my_flight *f, size_t k, int sent)
{
    return fail_native(c, f, k, mysql_errno(c->db), mysql_sqlstate(c->db), mysql_error(c->db), sent);
}

/* ---------------------------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------------------------- */
static int ensure_cells(my_conn *c, size_t n)
{
    if (n <= c->capcells)
        return 0;
    {
        const char **nn = txm__realloc(c->names, n * sizeof *nn);
        if (!nn)
            return TXM_ENOMEM;
        c->names = nn;
    }
    {
        txm_value *nc = txm__realloc(c->cells, n * sizeof *nc);
        if (!nc)
            return TXM_ENOMEM;
        c->cells = nc;
    }
    c->capcells = n;
    return 0;
}

/* Converts one text-protocol value to a typed txm_value. */
static txm_value cell_value(const MYSQL_FIELD *f, const char *v, unsigned long len)
{
    char *end;
    if (!v)
        return txm_null();
    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
        errno = 0;
        if (f->flags & UNSIGNED_FLAG) {
            unsigned long long u = strtoull(v, &end, 10);
            if (!errno && end == v + len && u <= (unsigned long long)INT64_MAX)
                return txm_int((int64_t)u);
        } else {
            long long x = strtoll(v, &end, 10);
            if (!errno && end == v + len)
                return txm_int((int64_t)x);
        }
        return txm_textn(v, len); /* BIGINT UNSIGNED above INT64_MAX stays exact as text */
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE: {
        double d = txm__strtod(v, &end); /* C locale */
        if (end == v + len)
            return txm_real(d);
        return txm_textn(v, len);
    }
    case MYSQL_TYPE_BIT: {
        uint64_t x = 0;
        if (len > 8)
            return txm_blob(v, len);
        for (unsigned long i = 0; i < len; i++)
            x = (x << 8) | (unsigned char)v[i];
        if (x > (uint64_t)INT64_MAX)
            return txm_blob(v, len);
        return txm_int((int64_t)x);
    }
    case MYSQL_TYPE_GEOMETRY:
        return txm_blob(v, len);
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VARCHAR:
        if (f->charsetnr == 63) /* the "binary" character set: BLOB, VARBINARY, BINARY */
            return txm_blob(v, len);
        return txm_textn(v, len);
    default: /* DECIMAL (exact, as text), dates and times, ENUM, SET, JSON */
        return txm_textn(v, len);
    }
}

/* Reads a result set. role R_STMT copies rows to op->sink (if any); R_LOCK / R_UNLOCK read the
 * single GET_LOCK / RELEASE_LOCK value into *scalar (-1 for NULL). Returns 0, 1 for a server
 * error during the fetch (mysql_errno is set), or a negative TXM code for a local failure. */
static int read_rows(my_conn *c, MYSQL_RES *res, my_role role, txm_op *op, int *scalar)
{
    unsigned nf = mysql_num_fields(res);
    MYSQL_FIELD *fields = mysql_fetch_fields(res);
    txm_sink *sink = role == R_STMT ? op->sink : NULL;
    MYSQL_ROW row;
    int rc = 0;

    if (sink) {
        if (ensure_cells(c, nf ? nf : 1))
            return txm_driver_error(TXM_ENOMEM, NULL, "mysql: out of memory reading %u columns", nf);
        for (unsigned i = 0; i < nf; i++)
            c->names[i] = fields[i].name;
        if ((rc = txm_sink_columns(sink, nf, c->names)))
            return txm_driver_error(rc, NULL, "mysql: out of memory storing result columns");
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(res);
        if (sink) {
            for (unsigned i = 0; i < nf; i++)
                c->cells[i] = cell_value(&fields[i], row[i], lens[i]);
            if ((rc = txm_sink_row(sink, c->cells)))
                return txm_driver_error(rc, NULL, "mysql: out of memory storing a result row");
        } else if ((role == R_LOCK || role == R_UNLOCK) && nf >= 1) {
            *scalar = row[0] ? atoi(row[0]) : -1;
        }
    }
    if (mysql_errno(c->db))
        return 1;
    return 0;
}

/* Applies the successful result of expectation e. */
static void on_success(my_conn *c, const my_expect *e, const txm_op *op)
{
    switch (e->role) {
    case R_BEGIN:
        c->sp_level = 0;
        break;
    case R_SAVEPOINT:
        c->sp_level = op->level;
        break;
    case R_RELEASE:
        c->sp_level = op->level ? op->level - 1 : 0;
        for (size_t i = 0; i < c->ntxlocks; i++)
            if (c->txlocks[i].level > c->sp_level)
                c->txlocks[i].level = c->sp_level; /* locks move up with the released level */
        break;
    case R_ROLLBACK_TO:
        c->sp_level = op->level ? op->level - 1 : 0;
        break;
    case R_COMMIT:
    case R_ROLLBACK:
        c->sp_level = 0;
        break;
    case R_TMO_SET:
        c->tmo_set |= c->tmo_begin;
        break;
    case R_TMO_RESTORE:
        c->tmo_set = 0;
        break;
    case R_RELEASE_TXLOCKS: {
        size_t tag = (size_t)(e - c->exp) + 1;
        for (size_t i = c->ntxlocks; i-- > 0;)
            if (c->txlocks[i].sched == tag)
                txlock_remove_at(c, i);
        break;
    }
    default:
        break;
    }
    /* The OK/EOF packet of a successful statement is the server's word on the transaction: a
     * statement that committed implicitly (DDL, LOCK TABLES, ...) leaves IN_TRANS off. */
    {
        int now = (c->db->server_status & SERVER_STATUS_IN_TRANS) != 0;
        if (c->in_tx && !now && e->role != R_COMMIT && e->role != R_ROLLBACK && e->role != R_RELEASE_TXLOCKS &&
            e->role != R_TMO_RESTORE) {
            txm_driver_log(&c->base, TXM_LOG_DEBUG,
                           "mysql: the server reports no open transaction after a successful %s: implicit commit",
                           op_name(op->kind));
            c->implicit_commit = 1;
        }
        c->in_tx = now;
    }
}

/* Connection sanity before sending a COMMIT: in the client/server protocol the server never speaks
 * first, so a readable socket means it closed the connection (KILL, wait_timeout, shutdown). Then
 * COMMIT is not sent at all and the outcome is certain: rolled back. Skipped with TLS, where
 * session tickets may legitimately be pending. */
static int connection_dead(my_conn *c)
{
#if defined(MARIADB_PACKAGE_VERSION)
    struct pollfd pfd;
    if (mysql_get_ssl_cipher(c->db))
        return 0;
    pfd.fd = (int)mysql_get_socket(c->db);
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (pfd.fd < 0)
        return 1;
    return poll(&pfd, 1, 0) > 0;
#else
    (void)c;
    return 0;
#endif
}

static int wait_result(my_conn *c, int first);

/* After a local failure: reads and discards whatever results are still coming, so that the
 * connection stays in sync (a CALL sends several). */
static void drain(my_conn *c)
{
    while (mysql_more_results(c->db)) {
        int st = wait_result(c, 0);
        if (st != 0)
            break;
        if (mysql_field_count(c->db) > 0) {
            MYSQL_RES *res = mysql_use_result(c->db);
            if (!res)
                break;
            mysql_free_result(res);
        }
    }
    if (txm__mysql_is_connection_lost(mysql_errno(c->db), c->flavour))
        mark_broken(c);
}

/* Reads the first (first != 0) or the next result of a flight, as mysql_read_query_result /
 * mysql_next_result do, publishing the wait for my_cancel: MariaDB skips the rest of a packet
 * WITHOUT an answer when a KILL QUERY lands between two of its statements after the first one's OK
 * announced more results (the server's multi-statement loop checks the kill flag; seen with the
 * COMMIT;DO RELEASE_LOCK packet). The client would then wait forever; my_cancel, which sent the
 * kill, sees the server idle while we wait and shuts the socket down (see unstick). */
static int wait_result(my_conn *c, int first)
{
    int st, unstuck;
    pthread_mutex_lock(&c->id_mu);
    c->waiting = 1;
    c->wait_seq++;
    c->wait_fd = (int)mysql_get_socket(c->db);
    pthread_mutex_unlock(&c->id_mu);
    st = first ? (mysql_read_query_result(c->db) ? 1 : 0) : mysql_next_result(c->db);
    pthread_mutex_lock(&c->id_mu);
    c->waiting = 0;
    unstuck = c->unstuck;
    c->unstuck = 0;
    pthread_mutex_unlock(&c->id_mu);
    if (unstuck)
        txm_driver_log(&c->base, TXM_LOG_WARN,
                       "mysql: the server skipped the rest of the packet after txm_cancel's KILL QUERY and would "
                       "never have answered; txm_cancel shut the connection down");
    return st;
}

/* Ends the session: the server then releases everything it held (advisory locks included). */
static void drop_session(my_conn *c)
{
    if (c->db)
        mysql_close(c->db);
    c->db = NULL;
    set_thread_id(c, 0);
    mark_broken(c);
}

/* The DO RELEASE_LOCK(...) that follows a COMMIT, ROLLBACK or ROLLBACK TO in the same packet got
 * no success: `st` < 0, the server skipped it (a KILL QUERY between the statements, see
 * wait_result), or an error. The op itself succeeded and stays so: nothing after a COMMIT may
 * change its outcome. What is left is the lock state, made certain here: a skipped DO did not run,
 * so it is sent again by itself; after an error we cannot know whether it ran (and RELEASE_LOCK
 * is counted: releasing twice could drop a session-scoped hold of the same name), so the session
 * is ended, which releases every lock it held. Returns 0 if the connection is still usable. */
static int release_failed(my_conn *c, my_flight *f, const my_expect *x, int st)
{
    const char *what = op_name(f->ops[x->op].kind);
    size_t tag = (size_t)(x - c->exp) + 1, mark = c->len;
    if (st > 0) {
        unsigned native = mysql_errno(c->db);
        txm_driver_log(&c->base, TXM_LOG_WARN,
                       "mysql: %s succeeded, but releasing its transaction-scoped advisory locks failed (%u: %s); %s",
                       what, native, mysql_error(c->db),
                       txm__mysql_is_connection_lost(native, c->flavour)
                           ? "the connection is lost, and the server released them with it"
                           : "closing the connection so that the server releases them (call txm_reconnect)");
        drop_session(c);
        return -1;
    }
    txm_driver_log(&c->base, TXM_LOG_WARN,
                   "mysql: %s succeeded; the server skipped the DO RELEASE_LOCK after it (KILL QUERY between "
                   "statements): sending it again",
                   what);
    /* rebuild it after the flight's text (the flight is over: nothing else is pending) */
    {
        int any = 0, rc = 0;
        for (size_t i = 0; i < c->ntxlocks && !rc; i++) {
            if (c->txlocks[i].sched != tag)
                continue;
            rc = puts_(c, any ? "," : "DO ");
            if (!rc)
                rc = puts_(c, "RELEASE_LOCK(");
            if (!rc)
                rc = put_quoted(c, c->txlocks[i].key, strlen(c->txlocks[i].key));
            if (!rc)
                rc = put(c, ")", 1);
            any = 1;
        }
        f->out->round_trips++;
        if (!rc && any && mysql_real_query(c->db, c->buf + mark, (unsigned long)(c->len - mark)) != 0) {
            txm_driver_log(&c->base, TXM_LOG_WARN, "mysql: releasing the advisory locks again failed (%u: %s): "
                           "closing the connection so that the server releases them", mysql_errno(c->db),
                           mysql_error(c->db));
            rc = -1;
        }
        c->len = mark;
        c->buf[mark] = '\0';
        if (rc) {
            drop_session(c);
            return -1;
        }
        for (size_t i = c->ntxlocks; i-- > 0;)
            if (c->txlocks[i].sched == tag)
                txlock_remove_at(c, i);
    }
    return 0;
}

/* The SET that puts the session's timeouts back after COMMIT / ROLLBACK got no success (`st` < 0:
 * skipped by the server; > 0: an error). Logged; tmo_set stays, so the end of the run tries again. */
static void restore_failed(my_conn *c, int st)
{
    unsigned native = st > 0 ? mysql_errno(c->db) : 0;
    txm_driver_log(&c->base, TXM_LOG_WARN,
                   "mysql: the transaction ended, but putting back the session's innodb_lock_wait_timeout / "
                   "max_statement_time failed (%u: %s); %s",
                   native, st > 0 ? mysql_error(c->db) : "skipped by the server",
                   st > 0 && txm__mysql_is_connection_lost(native, c->flavour)
                       ? "the connection is lost: a new session starts with the defaults"
                       : "trying again at the end of this call");
    if (st > 0 && txm__mysql_is_connection_lost(native, c->flavour))
        mark_broken(c);
}

/* ops[k] was not executed: the server skipped the rest of the packet without an answer. */
static int skipped(my_conn *c, my_flight *f, size_t k)
{
    txm_error_detail d;
    (void)c;
    memset(&d, 0, sizeof d);
    d.native_code = 1317; /* ER_QUERY_INTERRUPTED: what the server would have said */
    d.sqlstate = "70100";
    f->out->completed = k;
    return txm_driver_error(TXM_ECANCELED, &d,
                            "%s: not executed: the server skipped the rest of the statement packet without an error "
                            "(a KILL QUERY, e.g. txm_cancel, landed between two statements)",
                            op_name(f->ops[k].kind));
}

/* Sends the built flight and reads every result. */
static int exec_flight(my_conn *c, my_flight *f)
{
    size_t last_op = c->exp[c->nexp - 1].op;
    int has_commit = 0;

    for (size_t i = f->first; i < f->end; i++)
        if (f->ops[i].kind == TXM_OP_COMMIT)
            has_commit = 1;
    if (has_commit && connection_dead(c))
        return fail_native(c, f, f->first, 2006, "HY000", "MySQL server has gone away (detected before COMMIT was sent)",
                           0);

    f->out->round_trips++;
    if (mysql_send_query(c->db, c->buf, (unsigned long)c->len) != 0)
        return fail_db(c, f, f->first, 0);

    for (size_t e = 0; e < c->nexp; e++) {
        my_expect *x = &c->exp[e];
        txm_op *op = &f->ops[x->op];
        int st = wait_result(c, e == 0);
        int scalar = -2;

        if (st != 0 && x->role == R_TMO_RESTORE) {
            /* The COMMIT / ROLLBACK before it succeeded and stays so; the timeouts are put back at
             * the end of the run (or not at all if the connection is gone). */
            restore_failed(c, st);
            f->out->completed = x->op + 1;
            if (e + 1 == c->nexp || c->broken)
                return 0;
            return skipped(c, f, c->exp[e + 1].op);
        }
        if (st != 0 && x->role == R_RELEASE_TXLOCKS) {
            /* the op's own statement succeeded (the server stops at the first error): it stays done */
            int usable = release_failed(c, f, x, st) == 0;
            f->out->completed = x->op + 1;
            if (e + 1 == c->nexp)
                return 0;
            if (!usable) { /* the rest of the packet did not run either, and the session is gone */
                txm_error_detail d;
                memset(&d, 0, sizeof d);
                d.flags = TXM_ERRF_TX_LOST;
                f->out->completed = c->exp[e + 1].op;
                return txm_driver_error(TXM_ECONNECTION, &d,
                                        "%s: not executed: the advisory-lock release before it failed and txm closed "
                                        "the connection (see the log); call txm_reconnect",
                                        op_name(f->ops[c->exp[e + 1].op].kind));
            }
            return skipped(c, f, c->exp[e + 1].op);
        }
        if (e > 0 && st == -1)
            return skipped(c, f, x->op);
        if (st != 0)
            return fail_db(c, f, x->op, 1);
        if (mysql_field_count(c->db) > 0) {
            MYSQL_RES *res = mysql_use_result(c->db);
            int rc;
            if (!res)
                return fail_db(c, f, x->op, 1);
            rc = read_rows(c, res, x->role, op, &scalar);
            if (rc == 1) { /* error during the fetch: copy it, close the result, then report */
                char m[MYSQL_ERRMSG_SIZE + 1], st6[6];
                unsigned native = mysql_errno(c->db);
                snprintf(m, sizeof m, "%s", mysql_error(c->db));
                snprintf(st6, sizeof st6, "%s", mysql_sqlstate(c->db));
                mysql_free_result(res);
                return fail_native(c, f, x->op, native, st6, m, 1);
            }
            mysql_free_result(res); /* drains what is left (after a local failure) */
            if (rc < 0) {
                f->out->completed = x->op;
                drain(c);
                return rc;
            }
            if (x->role == R_STMT)
                op->affected = -1;
        } else if (x->role == R_STMT) {
            op->affected = (int64_t)mysql_affected_rows(c->db);
            if (op->sink && txm_sink_columns(op->sink, 0, NULL) != 0) { /* an empty result, not "no result" */
                f->out->completed = x->op;
                drain(c);
                return txm_driver_error(TXM_ENOMEM, NULL, "mysql: out of memory storing an empty result");
            }
        }
        on_success(c, x, op);

        if (x->role == R_LOCK) {
            char name[MY_LOCK_KEY_MAX + 1];
            lock_name(op->key, name);
            if (scalar == 0) {
                txm_error_detail d;
                memset(&d, 0, sizeof d);
                f->out->completed = x->op;
                return txm_driver_error(TXM_ELOCK_TIMEOUT, &d, "advisory lock '%s' not acquired within %d ms", op->key,
                                        op->timeout_ms);
            }
            if (scalar != 1) {
                /* NULL: the wait was interrupted (KILL QUERY, i.e. txm_cancel; MariaDB reports no
                 * error for it) or the server failed; the key and timeout are always valid here. */
                f->out->completed = x->op;
                return txm_driver_error(TXM_ECANCELED, NULL,
                                        "GET_LOCK('%s') returned NULL: the wait was interrupted (txm_cancel / KILL "
                                        "QUERY) or failed on the server",
                                        op->key);
            }
            if ((op->lock_flags & TXM_LOCK_TX) && txlock_add(c, name)) {
                /* Could not remember it: release now rather than leak a lock past the transaction. */
                char q[2 * MY_LOCK_KEY_MAX + 32];
                size_t n = (size_t)snprintf(q, sizeof q, "DO RELEASE_LOCK('");
                n += mysql_real_escape_string(c->db, q + n, name, (unsigned long)strlen(name));
                n += (size_t)snprintf(q + n, sizeof q - n, "')");
                f->out->round_trips++;
                (void)mysql_real_query(c->db, q, (unsigned long)n);
                f->out->completed = x->op;
                return txm_driver_error(TXM_ENOMEM, NULL, "mysql: out of memory tracking advisory lock '%s'", op->key);
            }
        } else if (x->role == R_UNLOCK) {
            if (scalar != 1) {
                f->out->completed = x->op;
                /* TXM_ENOTFOUND like PostgreSQL's "lock not held": the category is portable. */
                return txm_driver_error(TXM_ENOTFOUND, NULL,
                                        "txm_unlock('%s'): lock not held: this connection holds no advisory lock on it%s",
                                        op->key, scalar == 0 ? " (another connection holds it)" : "");
            }
            if (op->lock_flags & TXM_LOCK_TX) {
                char name[MY_LOCK_KEY_MAX + 1];
                lock_name(op->key, name);
                for (size_t i = c->ntxlocks; i-- > 0;)
                    if (!c->txlocks[i].sched && strcmp(c->txlocks[i].key, name) == 0) {
                        txlock_remove_at(c, i);
                        break;
                    }
            }
        }
        if (x->last && x->op != last_op)
            f->out->completed = x->op + 1;
    }
    /* Anything beyond the expected results belongs to the last statement (CALL returns its result
     * sets plus a final status; a stored-program body may add more): drain it, errors included. */
    while (mysql_more_results(c->db)) {
        int st = wait_result(c, 0);
        if (st > 0)
            return fail_db(c, f, last_op, 1);
        if (st < 0)
            break;
        if (mysql_field_count(c->db) > 0) {
            MYSQL_RES *res = mysql_use_result(c->db);
            if (!res)
                return fail_db(c, f, last_op, 1);
            while (mysql_fetch_row(res))
                ;
            if (mysql_errno(c->db)) {
                char m[MYSQL_ERRMSG_SIZE + 1], st6[6];
                unsigned native = mysql_errno(c->db);
                snprintf(m, sizeof m, "%s", mysql_error(c->db));
                snprintf(st6, sizeof st6, "%s", mysql_sqlstate(c->db));
                mysql_free_result(res);
                return fail_native(c, f, last_op, native, st6, m, 1);
            }
            mysql_free_result(res);
        }
        c->in_tx = (c->db->server_status & SERVER_STATUS_IN_TRANS) != 0;
    }
    f->out->completed = last_op + 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Building flights
 * ------------------------------------------------------------------------------------------- */
static const char *isolation_sql(txm_isolation iso)
{
    switch (iso) {
    case TXM_ISOLATION_READ_UNCOMMITTED: return "READ UNCOMMITTED";
    case TXM_ISOLATION_READ_COMMITTED: return "READ COMMITTED";
    case TXM_ISOLATION_REPEATABLE_READ: return "REPEATABLE READ";
    case TXM_ISOLATION_SERIALIZABLE: return "SERIALIZABLE";
    default: return NULL;
    }
}

/* Whether ops may follow statement `op` in the same packet. The server stops a packet at the first
 * ERROR, but two things it does not stop for would make it run ops that must not run:
 *  - a failure on the client's side while buffering rows (out of memory in the sink): the server
 *    has run the rest of the packet already (a COMMIT included). So a statement whose rows are
 *    kept ends its flight.
 *  - an implicit commit (DDL, SET autocommit, LOCK TABLES, ...): what follows would run outside
 *    the transaction; and a CALL answers with several results, which would be read as the answers
 *    of the ops after it. So only statements whose first word says they are plain DML
 *    (INSERT, UPDATE, DELETE, REPLACE, SELECT, WITH, VALUES) may be followed in a packet; any other
 *    ends its flight, and run_ops stops the run after it if it committed implicitly. */
static int flight_continues(const txm_op *op)
{
    static const char *const dml[] = {"INSERT", "UPDATE", "DELETE", "REPLACE", "SELECT", "WITH", "VALUES", NULL};
    const char *s = op->sql ? op->sql : "";
    const char *end = s + (op->sql_len ? op->sql_len : strlen(s));
    size_t n, k;
    if (op->sink)
        return 0;
    for (;;) { /* blanks and line comments; a slash-star comment may be executable: not skipped */
        while (s < end && (unsigned char)*s <= ' ')
            s++;
        if (s < end && (*s == '#' || (*s == '-' && end - s >= 3 && s[1] == '-' && (unsigned char)s[2] <= ' '))) {
            while (s < end && *s != '\n')
                s++;
            continue;
        }
        break;
    }
    for (n = 0; s + n < end && is_word((unsigned char)s[n]);)
        n++;
    for (k = 0; dml[k]; k++)
        if (word_is(s, n, dml[k]))
            return 1;
    return 0;
}

/* Appends op i to the flight. *ends: nothing may follow it in this flight (its failure may not be
 * a server error, so the server would go on executing). *alone: it must be the only op. */
static int append_op(my_conn *c, txm_op *ops, size_t i, int *ends, int *alone)
{
    txm_op *op = &ops[i];
    int rc = 0;
    char name[MY_LOCK_KEY_MAX + 1];

    *ends = 0;
    *alone = 0;
    switch (op->kind) {
    case TXM_OP_BEGIN: {
        const txm_tx_options *t = op->tx;
        const char *iso = t ? isolation_sql(t->isolation) : NULL;
        if (t && (rc = put_timeouts_begin(c, i, t)))
            return rc;
        if (iso) {
            if ((rc = put_sep(c)) || (rc = putf(c, "SET TRANSACTION ISOLATION LEVEL %s", iso)) ||
                (rc = push_expect(c, i, R_BEGIN_SET, 0)))
                return rc;
        }
        if ((rc = put_sep(c)) ||
            (rc = puts_(c, t && (t->flags & TXM_TX_READ_ONLY) ? "START TRANSACTION READ ONLY" : "START TRANSACTION")))
            return rc;
        return push_expect(c, i, R_BEGIN, 1);
    }
    case TXM_OP_SAVEPOINT:
        if ((rc = put_savepoint(c, "SAVEPOINT ", op->level)))
            return rc;
        return push_expect(c, i, R_SAVEPOINT, 1);
    case TXM_OP_RELEASE:
        if ((rc = put_savepoint(c, "RELEASE SAVEPOINT ", op->level)))
            return rc;
        return push_expect(c, i, R_RELEASE, 1);
    case TXM_OP_ROLLBACK_TO:
        if ((rc = put_savepoint(c, "ROLLBACK TO SAVEPOINT ", op->level)))
            return rc;
        {
            size_t before = c->nexp;
            if ((rc = push_expect(c, i, R_ROLLBACK_TO, 1)) || (rc = put_release_txlocks(c, i, op->level)))
                return rc;
            if (c->nexp > before + 1)
                c->exp[before].last = 0;
        }
        return 0;
    case TXM_OP_COMMIT:
    case TXM_OP_ROLLBACK: {
        size_t before = c->nexp;
        if ((rc = put_sep(c)) || (rc = puts_(c, op->kind == TXM_OP_COMMIT ? "COMMIT" : "ROLLBACK")) ||
            (rc = push_expect(c, i, op->kind == TXM_OP_COMMIT ? R_COMMIT : R_ROLLBACK, 1)) ||
            (rc = put_release_txlocks(c, i, 0)) ||
            /* tmo_begin: set by a BEGIN earlier in this packet (txm_batch's one flight); if that
             * SET fails the server stops the packet before this restore. */
            (rc = put_timeouts_restore(c, i, c->tmo_set | c->tmo_begin, 0)))
            return rc;
        for (size_t k = before; k + 1 < c->nexp; k++)
            c->exp[k].last = 0; /* the op is done at its last statement */
        return 0;
    }
    case TXM_OP_STATEMENT: {
        size_t mark = c->len;
        if ((rc = put_sep(c)))
            return rc;
        if ((rc = put_statement(c, op, alone))) {
            c->len = mark;
            if (c->buf)
                c->buf[mark] = '\0';
            return rc;
        }
        /* The server closes the connection on a packet above max_allowed_packet: refuse it here,
         * with the connection intact (blobs travel hex-encoded, twice their size). */
        if (c->max_packet && c->len - mark + 64 > c->max_packet) {
            size_t sz = c->len - mark;
            c->len = mark;
            c->buf[mark] = '\0';
            return txm_driver_error(TXM_EINVALID, NULL,
                                    "statement is %zu bytes with its parameters interpolated (blobs count twice: "
                                    "hex); the server's max_allowed_packet is %lu",
                                    sz, c->max_packet);
        }
        *ends = !flight_continues(op);
        return push_expect(c, i, R_STMT, 1);
    }
    case TXM_OP_LOCK:
        if (op->lock_flags & TXM_LOCK_SHARED)
            return txm_driver_error(TXM_ENOTSUPPORTED, NULL,
                                    "mysql: shared advisory locks are not supported (GET_LOCK is exclusive)");
        if (!op->key || !*op->key)
            return txm_driver_error(TXM_EINVALID, NULL, "advisory lock key must not be empty");
        lock_name(op->key, name);
        if ((rc = put_sep(c)) || (rc = puts_(c, "SELECT GET_LOCK(")) || (rc = put_quoted(c, name, strlen(name))))
            return rc;
        if (op->timeout_ms < 0)
            rc = (c->flavour & TXM_MY_MARIADB) ? putf(c, ",%d)", MY_FOREVER_S) : puts_(c, ",-1)");
        else if (c->flavour & TXM_MY_MARIADB) /* MariaDB takes fractional seconds */
            rc = putf(c, ",%d.%03d)", op->timeout_ms / 1000, op->timeout_ms % 1000);
        else /* MySQL: whole seconds, rounded up */
            rc = putf(c, ",%d)", op->timeout_ms / 1000 + (op->timeout_ms % 1000 != 0));
        if (rc)
            return rc;
        *ends = 1;
        return push_expect(c, i, R_LOCK, 1);
    case TXM_OP_UNLOCK:
        if (op->lock_flags & TXM_LOCK_SHARED)
            return txm_driver_error(TXM_ENOTSUPPORTED, NULL,
                                    "mysql: shared advisory locks are not supported (GET_LOCK is exclusive)");
        if (!op->key || !*op->key)
            return txm_driver_error(TXM_EINVALID, NULL, "advisory lock key must not be empty");
        lock_name(op->key, name);
        if ((rc = put_sep(c)) || (rc = puts_(c, "SELECT RELEASE_LOCK(")) ||
            (rc = put_quoted(c, name, strlen(name))) || (rc = put(c, ")", 1)))
            return rc;
        *ends = 1;
        return push_expect(c, i, R_UNLOCK, 1);
    }
    return txm_driver_error(TXM_EINVALID, NULL, "mysql: unknown operation kind %d", (int)op->kind);
}

static void flight_reset(my_conn *c)
{
    c->tmo_begin = 0; /* a BEGIN of an earlier packet has reported (R_TMO_SET) into tmo_set */
    c->len = 0;
    if (c->buf)
        c->buf[0] = '\0';
    c->nexp = 0;
}

/* Locks scheduled for release by statements that did not run stay held: unschedule them. */
static void unschedule(my_conn *c)
{
    for (size_t i = 0; i < c->ntxlocks; i++)
        c->txlocks[i].sched = 0;
}

/* Transaction-scoped advisory locks must not outlive the transaction. COMMIT and ROLLBACK ops
 * release them in the same flight; this catches the other ways a transaction ends (deadlock,
 * lock-wait rollback, implicit commit, a COMMIT that failed) at the cost of one round trip on
 * those rare paths. Errors are ignored here: the run's own result and error record stand. */
static void release_orphaned_txlocks(my_conn *c, txm_run_result *out)
{
    if (c->in_tx || !c->ntxlocks || c->broken || !c->db)
        return;
    flight_reset(c);
    if (put_release_txlocks(c, 0, 0) != 0 || c->len < 2) {
        unschedule(c);
        flight_reset(c);
        return;
    }
    out->round_trips++;
    if (mysql_real_query(c->db, c->buf + 1, (unsigned long)(c->len - 1)) != 0) { /* skip the leading ';' */
        if (txm__mysql_is_connection_lost(mysql_errno(c->db), c->flavour))
            mark_broken(c);
        unschedule(c);
    } else {
        txlocks_clear(c);
    }
    flight_reset(c);
}

/* Puts the session's timeouts back when the transaction that changed them ended without the
 * COMMIT / ROLLBACK flight doing it (deadlock, lock-wait rollback, implicit commit, a failed
 * COMMIT, a failed restore). One round trip on those rare paths; a failure is logged and tried
 * again after the next run. The run's own result and error record stand. */
static int restore_query(my_conn *c, txm_run_result *out, int to_default)
{
    int ok = 0;
    flight_reset(c);
    if (put_timeouts_restore(c, 0, c->tmo_set, to_default) == 0) {
        out->round_trips++;
        ok = mysql_real_query(c->db, c->buf, (unsigned long)c->len) == 0;
    }
    flight_reset(c);
    return ok;
}

static void restore_timeouts(my_conn *c, txm_run_result *out)
{
    txm_err_rec saved;
    if (c->in_tx || !c->tmo_set || c->broken || !c->db)
        return;
    txm__err_copy(&saved, txm_error_last());
    if (restore_query(c, out, 0)) {
        c->tmo_set = 0;
    } else if (txm__mysql_is_connection_lost(mysql_errno(c->db), c->flavour)) {
        restore_failed(c, 1);
    } else {
        /* The saved copies cannot be assigned back (the application assigned the @txm_saved_*
         * variables): fall back to the server's global values, never retry forever. */
        txm_driver_log(&c->base, TXM_LOG_WARN,
                       "mysql: cannot put back the session's innodb_lock_wait_timeout / max_statement_time from "
                       "@txm_saved_* (%u: %s); setting them to the server's defaults instead",
                       mysql_errno(c->db), mysql_error(c->db));
        if (restore_query(c, out, 1) || !txm__mysql_is_connection_lost(mysql_errno(c->db), c->flavour))
            c->tmo_set = 0;
        else
            restore_failed(c, 1);
    }
    txm__err_copy(txm__err_tls(), &saved.pub);
}

static int run_ops(my_conn *c, txm_op *ops, size_t n, txm_run_result *out);

static int my_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out)
{
    my_conn *c = (my_conn *)dc;
    int rc = run_ops(c, ops, n, out);
    release_orphaned_txlocks(c, out);
    restore_timeouts(c, out);
    return rc;
}

static int run_ops(my_conn *c, txm_op *ops, size_t n, txm_run_result *out)
{
    size_t i = 0;

    out->completed = 0;
    c->implicit_commit = 0;
    while (i < n) {
        my_flight f;
        int rc = 0, ends = 0, alone = 0, local_rc = 0;
        size_t j = i;

        if (c->broken || !c->db) {
            /* The server rolled back when the connection died: a ROLLBACK needs no round trip. */
            if (ops[i].kind == TXM_OP_ROLLBACK) {
                c->in_tx = 0;
                i++;
                out->completed = i;
                continue;
            }
            out->completed = i;
            return txm_driver_error(TXM_ECONNECTION, NULL,
                                    "mysql: the connection to %s was lost; roll back and call txm_reconnect",
                                    c->prm.redacted);
        }

        flight_reset(c);
        while (j < n) {
            size_t mark_len = c->len, mark_exp = c->nexp;
            rc = append_op(c, ops, j, &ends, &alone);
            if (rc) { /* drop whatever part of op j was appended */
                local_rc = rc;
                c->len = mark_len;
                if (c->buf)
                    c->buf[mark_len] = '\0';
                c->nexp = mark_exp;
                break;
            }
            if (alone && j > i) { /* send what we have first; this one goes next, by itself */
                c->len = mark_len;
                c->buf[mark_len] = '\0';
                c->nexp = mark_exp;
                break;
            }
            j++;
            if (ends || alone)
                break;
        }
        f.ops = ops;
        f.first = i;
        f.end = j;
        f.out = out;
        if (c->nexp > 0) {
            rc = exec_flight(c, &f);
            unschedule(c);
            if (rc) {
                flight_reset(c);
                return rc;
            }
            if (c->implicit_commit && j < n && ops[j].kind != TXM_OP_ROLLBACK) {
                /* The ops after it would run outside the transaction (a COMMIT would commit
                 * nothing and succeed): stop here; the core reports the diverged state. */
                txm_error_detail d;
                memset(&d, 0, sizeof d);
                d.flags = TXM_ERRF_TX_LOST;
                out->completed = j;
                flight_reset(c);
                return txm_driver_error(TXM_ESTATE, &d,
                                        "%s: not executed: the statement before it ended the transaction on the "
                                        "server (an implicit commit, e.g. DDL): the work done before it was "
                                        "committed, and what follows would run outside any transaction",
                                        op_name(ops[j].kind));
            }
        }
        if (local_rc) {
            /* the op at j failed before anything of it was sent; everything before it ran */
            out->completed = j;
            unschedule(c);
            flight_reset(c);
            return local_rc;
        }
        i = j;
    }
    out->completed = n;
    flight_reset(c);
    return 0;
}

static const char *const my_schemes[] = {"mysql", "mariadb", NULL};

TXM_INTERNAL extern const txm_driver txm__driver_mysql;
const txm_driver txm__driver_mysql = {
    TXM_DRIVER_VERSION,
    "mysql",
    my_schemes,
    TXM_CAP_PIPELINE | TXM_CAP_ADVISORY_LOCKS | TXM_CAP_ISOLATION | TXM_CAP_READ_ONLY_TX | TXM_CAP_CANCEL |
        TXM_CAP_RECONNECT | TXM_CAP_TX_TIMEOUTS,
    TXM_PH_QMARK,
    TXM_DIALECT_BACKSLASH | TXM_DIALECT_BACKTICKS | TXM_DIALECT_HASH_COMMENTS | TXM_DIALECT_IDENT_BACKTICK |
        TXM_DIALECT_ROW_LOCKS | TXM_DIALECT_SHARE_MODE,
    sizeof(my_conn),
    my_open,
    my_close,
    my_run,
    my_tx_status,
    my_cancel,
    my_reconnect,
    NULL, /* resolve_outcome: MySQL has no transaction-id lookup; see docs/driver-mysql.md */
};
