/* Internal interfaces of the txm core. Not installed; tests include it to reach internals. */
#ifndef TXM_INTERNAL_H
#define TXM_INTERNAL_H

#include "txm.h"
#include "txm/driver.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TXM_INTERNAL __attribute__((visibility("hidden")))

/* ---- alloc.c: every allocation goes through here so failure injection reaches every site ---- */
TXM_INTERNAL void *txm__malloc(size_t n);
TXM_INTERNAL void *txm__calloc(size_t count, size_t size);
TXM_INTERNAL void *txm__realloc(void *p, size_t n);
TXM_INTERNAL void txm__free(void *p);
TXM_INTERNAL char *txm__strdup(const char *s);
TXM_INTERNAL char *txm__strndup(const char *s, size_t n);
/* Failure injection (tests): the n-th allocation from now (1 = next) fails, and every one after it
 * while `sticky`. n = 0 disables. Thread-local. */
TXM_INTERNAL void txm__alloc_fail_after(unsigned long n, bool sticky);
TXM_INTERNAL unsigned long txm__alloc_count(void); /* allocations attempted by this thread */
TXM_INTERNAL unsigned long txm__alloc_failures(void); /* allocations this thread's injection failed */
TXM_INTERNAL long txm__alloc_live(void);           /* blocks not yet freed, all threads (leak checks) */

/* ---- error.c ---- */
#define TXM_ERR_MSG_MAX 512
#define TXM_ERR_NAME_MAX 256 /* 64-character identifiers in 4-byte UTF-8 */

/* A self-contained error (its strings live inside it). Copy with txm__err_copy only. */
typedef struct txm_err_rec {
    txm_error pub;
    char message[TXM_ERR_MSG_MAX];
    char sqlstate[6];
    char constraint_name[TXM_ERR_NAME_MAX];
    char table_name[TXM_ERR_NAME_MAX];
    char column_name[TXM_ERR_NAME_MAX];
    char schema_name[TXM_ERR_NAME_MAX];
    char detail[TXM_ERR_MSG_MAX];
} txm_err_rec;

TXM_INTERNAL void txm__err_init(txm_err_rec *r);                       /* code OK, all strings "" */
TXM_INTERNAL void txm__err_copy(txm_err_rec *dst, const txm_error *src); /* cause not copied */
/* The thread's record (also its cause record). */
TXM_INTERNAL txm_err_rec *txm__err_tls(void);
TXM_INTERNAL txm_err_rec *txm__err_tls_cause(void);
/* Sets the thread's last error: code, message, no details, no cause. Returns code. */
TXM_INTERNAL int txm__err(int code, const char *fmt, ...) TXM_PRINTF(2, 3);
TXM_INTERNAL int txm__verr(int code, const char *fmt, va_list ap);
/* Sets the thread's last error to `code` with message, and cause = a copy of `cause`. */
TXM_INTERNAL int txm__err_with_cause(int code, const txm_error *cause, const char *fmt, ...) TXM_PRINTF(3, 4);
/* Incremented whenever the thread's last error is set (detects whether a hook reported one). */
TXM_INTERNAL unsigned long txm__err_seq(void);
/* The scrub scope: the URL whose secrets every error record set on this thread is scrubbed of
 * (txm__verr, txm_driver_error). The core sets it around every driver call and URL parse and
 * restores the previous one after: txm__scrub_scope(url) returns the previous scope. */
TXM_INTERNAL extern _Thread_local const txm_url *txm__tls_scope;
/* Inline: it brackets every driver call. */
static inline const txm_url *txm__scrub_scope(const txm_url *url)
{
    const txm_url *prev = txm__tls_scope;
    txm__tls_scope = url;
    return prev;
}
/* Safe bounded copy; always NUL-terminates; "" for NULL src. */
TXM_INTERNAL void txm__strlcpy(char *dst, const char *src, size_t size);

/* ---- num.c: numbers in SQL/wire form ('.' decimal point) whatever the application's locale ---- */
TXM_INTERNAL int txm__dtoa(char *buf, size_t size, double d); /* "%.17g"; returns snprintf's value */
TXM_INTERNAL double txm__strtod(const char *s, char **end);

/* ---- url.c ---- */
/* Parses `s` into a heap txm_url (free with txm__url_free). TXM_EINVALID with a message that
 * never contains the password. Forms: scheme://[user[:pass]@]host[:port][/path][?k=v&...] and
 * scheme:opaque[?k=v&...]; a bracketed IPv6 host is accepted. */
TXM_INTERNAL int txm__url_parse(txm_url **out, const char *s);
TXM_INTERNAL void txm__url_free(txm_url *u);
/* txm__url_parse for txm_open: also reads txm's own URL parameter txm_autocommit_retries=N
 * (*autocommit_retries = N, or -1 when absent; TXM_EINVALID when malformed, given twice or
 * percent-encoded) and returns the URL WITHOUT it, so that no driver (libpq rejects unknown
 * parameters) ever sees it. */
TXM_INTERNAL int txm__url_parse_core(txm_url **out, const char *s, int *autocommit_retries);
/* The scheme of `s` (letters, digits, + - .) copied into buf, or TXM_EINVALID. */
TXM_INTERNAL int txm__url_scheme(const char *s, char *buf, size_t size);
/* THE secret scrubber (the only one in txm; see url.c). Copies src into dst (always
 * NUL-terminated, at most size - 1 bytes) with every occurrence of every spelling of every secret
 * of `url` replaced by "***", longest first. When the copy had to be cut, or `cut` says src itself
 * may have been cut at its end, a trailing prefix of a secret is masked too. url NULL or without
 * secrets: a plain bounded copy. Returns strlen(dst). Allocates nothing (callable anywhere). */
TXM_INTERNAL size_t txm__scrub(const txm_url *url, char *dst, size_t size, const char *src, bool cut);
/* Number of recorded spellings (tests). */
TXM_INTERNAL size_t txm__url_secret_count(const txm_url *url);

/* ---- sql.c ---- */
/* Scans `sql` for `?` placeholders outside literals/identifiers/comments (per `dialect`) and, for
 * TXM_PH_DOLLAR, rewrites them to $1..$n. *out is a heap string, or NULL when no rewrite is needed
 * (QMARK, or DOLLAR without placeholders): then use sql as is. *count receives the number of placeholders.
 * TXM_EINVALID for an unterminated literal/comment (message names the offset). */
TXM_INTERNAL int txm__sql_placeholders(const char *sql, txm_placeholder_style style, unsigned dialect,
                                       char **out, size_t *count);
/* If the first keyword of `sql` (after comments/whitespace/parentheses) is a transaction control
 * keyword (BEGIN, START, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE, ABORT, XA, PREPARE), returns
 * it (static, upper-case), else NULL. START and PREPARE count only when followed by TRANSACTION. */
TXM_INTERNAL const char *txm__sql_tx_control(const char *sql, unsigned dialect);

/* ---- sqlcache.c: per-connection cache of statement analyses (tx-control check, placeholders) ---- */
#define TXM_SQL_CACHE_CAP 64          /* entries per connection (LRU) */
#define TXM_SQL_CACHE_TEXT_MAX 16384  /* longer texts are analysed at every call, never cached */
typedef struct txm_sql_entry txm_sql_entry;
typedef struct txm_sql_cache {
    txm_sql_entry *e;      /* TXM_SQL_CACHE_CAP slots, allocated at the first insert */
    size_t len;            /* slots in use */
    size_t last;           /* slot of the last hit or insert: looked at first */
    uint64_t tick;
    unsigned long hits, misses; /* tests */
} txm_sql_cache;
/* What a statement's analysis yields: the text to send (placeholders in the driver's style) and
 * its placeholder count. */
typedef struct txm_sql_analysis {
    const char *sql;
    size_t sql_len;
    size_t count;
} txm_sql_analysis;
/* Keeps out->sql alive until txm__sql_unref: a pinned cache entry or a heap rewrite. */
typedef struct txm_sql_ref {
    txm_sql_entry *pin;
    char *heap;
} txm_sql_ref;
struct txm_conn;
/* Refuses transaction control (TXM_EMISUSE naming `who`) and counts/rewrites placeholders
 * (txm__sql_placeholders' errors), from the cache when the same text (every byte) was analysed
 * before on this connection. On success release *ref with txm__sql_unref after the run. */
TXM_INTERNAL int txm__sql_analyze(struct txm_conn *c, const char *who, const char *sql, txm_sql_analysis *out,
                                  txm_sql_ref *ref);
TXM_INTERNAL void txm__sql_unref(txm_sql_ref *ref);
TXM_INTERNAL void txm__sql_cache_free(txm_sql_cache *cache);

/* ---- registry.c ---- */
TXM_INTERNAL void txm__registry_init_builtin(void); /* idempotent, thread-safe */
/* drivers/fault.c: the fault-injecting wrapper of `inner` (built once, lives until exit), or NULL
 * (inner NULL or itself a wrapper). Thread-safe. */
TXM_INTERNAL const txm_driver *txm__fault_driver_for(const txm_driver *inner);

/* drivers/pg.c: the constraint-column lookup query (docs/errors.md). Tests set another query
 * (one that fails, or that ends its own session) before a connection opens; NULL = the real one. */
extern TXM_INTERNAL const char *txm__pg_col_sql_for_tests;

/* ---- rows.c ---- */
struct txm_sink;
TXM_INTERNAL txm_sink *txm__sink_new(void);
TXM_INTERNAL void txm__sink_free(txm_sink *s);
/* Turns a filled sink into rows (the sink is consumed). */
TXM_INTERNAL txm_rows *txm__sink_to_rows(txm_sink *s);
/* An empty result whose own sink (txm__rows_sink) a driver fills directly: txm_batch allocates
 * its results before the run, so that nothing can fail after a COMMIT. */
TXM_INTERNAL txm_rows *txm__rows_new(void);
TXM_INTERNAL txm_sink *txm__rows_sink(txm_rows *r);

/* ---- retry.c ---- */
/* The capped exponential bound min(cap, base * 2^(attempt-1)), without overflow: the delay of
 * TXM_RETRY_JITTER_NONE and the upper end of full jitter's range. */
TXM_INTERNAL uint64_t txm__backoff_bound_us(unsigned attempt, unsigned base_us, unsigned cap_us);
/* Full-jitter backoff: rand in [0, min(cap, base * 2^(attempt-1))] using *state (xorshift64*). */
TXM_INTERNAL uint64_t txm__backoff_us(unsigned attempt, unsigned base_us, unsigned cap_us, uint64_t *state);
/* The sleep before the retry that follows failed attempt `attempt` under p (a current-version,
 * validated policy): the bound itself for TXM_RETRY_JITTER_NONE, full jitter otherwise. */
TXM_INTERNAL uint64_t txm__retry_delay_us(const txm_retry_policy *p, unsigned attempt, uint64_t *state);
TXM_INTERNAL uint64_t txm__rand_next(uint64_t *state);
TXM_INTERNAL uint64_t txm__now_us(void);
TXM_INTERNAL void txm__sleep_us(uint64_t us);

/* ---- hooks.c ---- */
typedef struct txm_hook {
    struct txm_hook *next;
    txm_hook_cb fn;
    void *payload;
    void (*free_payload)(void *);
} txm_hook;
typedef struct txm_hook_list {
    txm_hook *head;
    txm_hook **tail;
    size_t count;
} txm_hook_list;
/* Inline: every level initialises two lists and moves or discards them, almost always empty. */
static inline void txm__hooks_init(txm_hook_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
    l->count = 0;
}
TXM_INTERNAL int txm__hooks_push(txm_hook_list *l, txm_hook_cb fn, void *payload, void (*free_payload)(void *));
TXM_INTERNAL void txm__hooks_move(txm_hook_list *dst, txm_hook_list *src);
TXM_INTERNAL void txm__hooks_free_all(txm_hook_list *l);
/* Moves; src becomes empty. */
static inline void txm__hooks_append(txm_hook_list *dst, txm_hook_list *src)
{
    if (src->head)
        txm__hooks_move(dst, src);
}
/* Frees the hooks and their payloads; the list becomes empty. */
static inline void txm__hooks_discard(txm_hook_list *l)
{
    if (l->head)
        txm__hooks_free_all(l);
}
TXM_INTERNAL txm_hook *txm__hooks_pop(txm_hook_list *l);                       /* first hook, unlinked; NULL if empty */
TXM_INTERNAL void txm__hooks_prepend(txm_hook_list *dst, txm_hook_list *src); /* moves src in front of dst */

/* ---- conn.c / tx.c ---- */
/* A column a driver learned after reporting the error it belongs to (txm_driver_late_column). */
#define TXM_LATE_MAX 4
typedef struct txm_late_column {
    char schema[TXM_ERR_NAME_MAX];
    char table[TXM_ERR_NAME_MAX];
    char constraint[TXM_ERR_NAME_MAX];
    char column[TXM_ERR_NAME_MAX];
} txm_late_column;

struct txm_tx {
    txm_conn *conn;
    unsigned depth;        /* 1 = outermost (baseline counts) */
    unsigned sp_level;     /* savepoint number when nested and not joined */
    unsigned flags;        /* TXM_TX_* */
    txm_tx_options opts;
    bool active;
    bool owns_sp;          /* outermost (BEGIN) or nested non-join (SAVEPOINT) */
    bool started;          /* BEGIN/SAVEPOINT has been executed on the server */
    bool failed;
    bool baseline;         /* the test baseline level */
    unsigned long gen;     /* incremented at every txm_begin that reuses this object */
    size_t owner;          /* index of the nearest savepoint owner at or below this level (itself
                            * unless joined): fixed while the level is open, as are the levels below */
    txm_err_rec fail_err;  /* why it failed */
    txm_hook_list on_commit;
    txm_hook_list on_rollback;
};

struct txm_conn {
    const txm_driver *drv;
    txm_driver_conn *dc;
    txm_url *url;
    txm_open_options opts;
    txm_tx **levels;       /* levels[0] is outermost; pooled, freed at close */
    size_t depth;          /* open levels including the baseline */
    size_t levels_cap;
    bool has_baseline;
    bool server_in_tx;     /* BEGIN executed and not ended, per txm's model */
    bool broken;           /* connection lost: only rollback/close/reconnect */
    /* Savepoint number whose RELEASE waits for the next statement (0 = none). At most one can be
     * pending: releasing level k also releases every deeper savepoint, so a newer pending RELEASE
     * always supersedes an older one. */
    unsigned pending_release;
    /* What scans of the level stack would compute, kept up to date so that every operation costs
     * O(1) whatever the depth (tx.c; txm__levels_check compares them with the scans):
     *   failed_at     depth (index + 1) of the outermost failed level, 0 when none is;
     *   unsent        levels[0..unsent) need nothing sent: every savepoint owner among them has
     *                 started (owners start in stack order, so the unstarted ones are above). */
    size_t failed_at;
    size_t unsent;
    txm_hook_list captured; /* baseline: on-commit hooks captured for txm_test_run_hooks */
    txm_stats stats;
    txm_op *ops;           /* reusable batch buffer */
    size_t ops_cap;
    /* Re-entry: hooks, bodies and callbacks may call txm on the connection that runs them. */
    unsigned busy;          /* txm calls on this connection in progress (they nest) */
    bool closing;           /* txm_close was called: every call fails; freed when busy drops to 0 */
    bool hooks_running;     /* a hook runner is active: hooks ready to run meanwhile are queued */
    size_t hook_base;       /* depth when the active runner started; its hooks cannot end those levels */
    txm_hook_list hook_queue; /* hooks queued by the running hook; they run right after it */
    txm_err_rec hook_err;   /* the active runner's first failure (kept off the stack) */
    /* Columns reported by txm_driver_late_column during the current outermost call: written into
     * the thread's error record and its cause at every txm__leave, dropped when busy drops to 0
     * (the core's save/restore copies of the record would undo an earlier write). */
    txm_late_column late[TXM_LATE_MAX];
    size_t nlate;
    txm_sql_cache sql_cache; /* analyses of the statement texts run on this connection */
};

/* Every public call that takes a connection brackets its work with these (conn.c). enter fails
 * with TXM_EMISUSE naming `who` once txm_close was requested; leave returns rc and, when the
 * outermost call on a connection whose close was requested from inside it ends, closes it
 * (keeping the thread's error record). */
TXM_INTERNAL int txm__enter_closing(const char *who);
TXM_INTERNAL int txm__leave_slow(txm_conn *c, int rc);
/* Inline: they bracket every call; the rare cases (closing, late columns) are out of line. */
static inline int txm__enter(txm_conn *c, const char *who)
{
    if (c->closing)
        return txm__enter_closing(who);
    c->busy++;
    return 0;
}
static inline int txm__leave(txm_conn *c, int rc)
{
    --c->busy;
    if (c->nlate || (c->busy == 0 && c->closing))
        return txm__leave_slow(c, rc);
    return rc;
}
/* Runs fn(c) and restores the thread's error record and its cause afterwards. Not inlined: the two
 * 2.4 KB records it needs stay off the stack of its callers (txm_atomic bodies nest deeply). */
TXM_INTERNAL __attribute__((noinline)) void txm__keeping_error(txm_conn *c, void (*fn)(txm_conn *c));
/* Tests: recomputes by scanning the stack what tx.c keeps cached (failed_at, unsent, each
 * level's owner) and compares. 0 when they agree, else -1 with a message in buf. */
TXM_INTERNAL int txm__levels_check(const txm_conn *c, char *buf, size_t size);
/* Rolls back every open level, the baseline included (txm_close). */
TXM_INTERNAL void txm__tx_close_all(txm_conn *c);
/* Runs application ops app[0..napp) (statements, locks) in ONE driver run, with the control ops
 * that are pending in front of them (a RELEASE due, the BEGIN/SAVEPOINTs of levels not started)
 * and, with `commit` when the only level is the outermost one and has not started, its COMMIT
 * after them. The ops are copied back (affected counts). On failure *failed (may be NULL) is the
 * index of the failing app op, napp for a failing op after them (COMMIT), SIZE_MAX for one
 * before them; the levels are poisoned as for any failing statement. */
TXM_INTERNAL int txm__run_app_ops(txm_conn *c, txm_op *app, size_t napp, bool commit, size_t *failed);
/* txm_batch's transaction part: opens a level (opts at the user's outermost level, else NULL),
 * runs app[0..napp) in it (with its BEGIN and COMMIT in the same run when it is the outermost
 * level, else with its SAVEPOINT) and ends it: committed (a nested level's RELEASE left pending)
 * or rolled back. *failed as for txm__run_app_ops. */
TXM_INTERNAL int txm__run_level(txm_conn *c, const txm_tx_options *opts, txm_op *app, size_t napp, size_t *failed);
/* Validates a statement and builds its op (core/conn.c); *ref keeps op->sql alive: release it
 * with txm__sql_unref after the run (also after a failure). */
TXM_INTERNAL int txm__prepare_stmt(txm_conn *c, const char *who, const char *sql, const txm_value *params, size_t n,
                                   txm_op *op, txm_sql_ref *ref);
/* The retry loop of txm_retry (core/retry.c): runs attempt(c, payload) until it succeeds, fails
 * with a category outside p->retry_on, or the attempts or the deadline run out, sleeping the
 * policy's backoff (full jitter unless p->jitter says otherwise) between attempts. `who` names the caller in messages. Refuses to run inside
 * a transaction. */
typedef int (*txm__attempt_fn)(txm_conn *c, void *payload);
TXM_INTERNAL int txm__retry_loop(txm_conn *c, const txm_retry_policy *p, const char *who, txm__attempt_fn attempt,
                                 void *payload);
/* Sets the SQLSTATE of the thread's error record, a TXM_ETX_ABORTED that txm made itself, to the
 * engine's own state for it (25P02 with TXM_DIALECT_SQLSTATE_25P02), "" otherwise. */
TXM_INTERNAL void txm__aborted_sqlstate(const txm_conn *c, txm_err_rec *r);
/* TXM_EMISUSE (naming `who`) if opts ask for what only an outermost level can honour (durable,
 * isolation, read-only, deferrable, timeouts); TXM_EINVALID for an unknown version. */
TXM_INTERNAL int txm__check_nested_tx_options(const txm_conn *c, const char *who, const txm_tx_options *opts);
/* Runs attempt(c, payload), one statement outside any transaction, and re-runs it while it fails
 * with TXM_EDEADLOCK or TXM_ESERIALIZATION, at most c->opts.autocommit_retries more times, with
 * the default policy's backoff; counts the re-runs in c->stats.autocommit_retries and logs them
 * (core/retry.c). The caller checks that no transaction (or baseline) is open. */
TXM_INTERNAL int txm__autocommit_retry(txm_conn *c, const char *who, txm__attempt_fn attempt, void *payload);
/* Logs through the connection's callback. */
TXM_INTERNAL void txm__log(txm_conn *c, txm_log_level level, const char *fmt, ...) TXM_PRINTF(3, 4);

#endif /* TXM_INTERNAL_H */
