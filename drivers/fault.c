/*
 * The fault-injecting driver (docs/fault-driver.md, include/txm/fault.h): wraps any registered
 * driver, chosen by a "fault+" URL scheme, and injects deadlocks, serialization failures, lock
 * timeouts, lost connections, unknown COMMIT outcomes and allocation failures at a chosen op.
 *
 * One txm_driver per inner driver. The core reads placeholders, dialect, caps and conn_size from
 * the driver struct, and they differ per inner driver, so txm_driver_find("fault+X") asks
 * txm__fault_driver_for(driver of X), which builds the wrapper once (static storage, under a
 * mutex; never freed, never allocated: it cannot fail for lack of memory) and returns the same
 * struct afterwards. A wrapper reports the inner driver's name, so code that branches on
 * txm_driver_name (and the conformance suite) behaves as without the wrapper.
 *
 * Memory layout. The inner driver's connection struct sits at the very start of the wrapper's
 * (the same address): txm_driver_log finds the txm_conn from the driver connection's address,
 * so an inner struct allocated elsewhere would make every log call of the inner driver read
 * foreign memory. The wrapper's own state follows at an aligned offset. After open, dc->driver
 * is the inner driver (the inner code may read it); the wrapper's methods find their state from
 * dc->driver->conn_size.
 *
 * A lost connection is real: the inner connection is closed (the server ends the session and
 * rolls back its transaction, session locks are released), every later run fails with
 * TXM_ECONNECTION, and txm_reconnect opens a new inner connection with the same URL.
 */
#include "internal.h"
#include "txm/fault.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FAULT_PREFIX "fault+"
#define FAULT_MAX_WRAPPERS 32
#define FAULT_MAX_SCHEMES 8
#define FAULT_SCHEME_MAX 40
#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

typedef enum fault_kind {
    F_NONE = 0,
    F_DEADLOCK,
    F_SERIALIZATION,
    F_LOCK_TIMEOUT,
    F_DISCONNECT,
    F_COMMIT_UNKNOWN,
    F_COMMIT_UNKNOWN_ABORTED,
    F_NOMEM
} fault_kind;

static const char *const kind_names[] = {"none",       "deadlock",       "serialization",          "lock_timeout",
                                         "disconnect", "commit_unknown", "commit_unknown_aborted", "nomem"};

/* Where: at_kind 0 = the at_n-th application statement since BEGIN; else every op of that kind. */
typedef struct fault_spec {
    fault_kind kind;
    txm_op_kind at_kind;
    unsigned long at_n;
    unsigned long skip;
    unsigned long times; /* 0 = always */
} fault_spec;

typedef struct fault_count {
    unsigned long stmt;     /* application statements since the last BEGIN */
    unsigned long matched;  /* ops that matched the target */
    unsigned long injected; /* faults injected under the current spec */
} fault_count;

typedef struct fault_conn {
    const txm_driver *inner;
    txm_url *inner_url;
    pthread_mutex_t mu; /* inner connection replaced (loss, reconnect) vs cancel() on another thread */
    bool mu_ok;
    bool live;          /* the inner struct holds a connection (or a failed open): close it */
    bool lost;          /* injected connection loss: nothing runs until txm_reconnect */
    bool in_tx;         /* our model, for inner drivers without tx_status */
    fault_spec spec;
    fault_count cnt;
    unsigned long total;
    bool outcome_pending; /* the last COMMIT ended with an injected TXM_ECOMMIT_UNKNOWN */
    txm_outcome outcome;
} fault_conn;

typedef struct fault_wrapper {
    txm_driver drv;
    const txm_driver *inner;
    const char *schemes[FAULT_MAX_SCHEMES + 1];
    char scheme_buf[FAULT_MAX_SCHEMES][FAULT_SCHEME_MAX];
} fault_wrapper;

static pthread_mutex_t wrap_lock = PTHREAD_MUTEX_INITIALIZER;
static fault_wrapper wrappers[FAULT_MAX_WRAPPERS];
static size_t nwrappers;

static fault_conn *fc_of(txm_driver_conn *dc)
{
    return (fault_conn *)(void *)((char *)dc + ALIGN16(dc->driver->conn_size));
}

/* Compares addresses only (constant): no lock needed. */
static bool is_wrapper(const txm_driver *d)
{
    size_t i;
    for (i = 0; i < FAULT_MAX_WRAPPERS; i++)
        if (d == &wrappers[i].drv)
            return true;
    return false;
}

/* ---- the spec: URL parameters or txm_fault_set's string ------------------------------------ */

static bool is_fault_key(const char *k) { return strncmp(k, "fault", 5) == 0; }

static int parse_count(const char *who, const char *key, const char *v, unsigned long min, unsigned long *out)
{
    char *end;
    unsigned long n;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || n < min)
        return txm__err(TXM_EINVALID, "%s: %s='%s' is not a whole number >= %lu", who, key, v, min);
    *out = n;
    return 0;
}

static int parse_at(const char *who, const char *v, fault_spec *s)
{
    static const struct {
        const char *name;
        txm_op_kind kind;
    } ats[] = {{"begin", TXM_OP_BEGIN},     {"savepoint", TXM_OP_SAVEPOINT},     {"release", TXM_OP_RELEASE},
               {"rollback_to", TXM_OP_ROLLBACK_TO}, {"commit", TXM_OP_COMMIT}, {"rollback", TXM_OP_ROLLBACK},
               /* every SQL statement (txm_exec, txm_query*): outside transactions the statement
                * count never restarts, so a fault on N consecutive statements needs this */
               {"statement", TXM_OP_STATEMENT}};
    size_t i;
    for (i = 0; i < sizeof ats / sizeof ats[0]; i++) {
        if (strcmp(v, ats[i].name) == 0) {
            s->at_kind = ats[i].kind;
            s->at_n = 0;
            return 0;
        }
    }
    s->at_kind = (txm_op_kind)0;
    if (v[0] >= '0' && v[0] <= '9')
        return parse_count(who, "fault_at", v, 1, &s->at_n);
    return txm__err(TXM_EINVALID,
                    "%s: fault_at='%s' is not a statement number (1, 2, ...) or one of begin, savepoint, release, "
                    "rollback_to, commit, rollback, statement",
                    who, v);
}

/* Applies one key=value; *seen_at records whether fault_at was given. */
static int apply_param(const char *who, fault_spec *s, const char *k, const char *v, bool *seen_at)
{
    size_t i;
    if (strcmp(k, "fault") == 0) {
        for (i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
            if (strcmp(v, kind_names[i]) == 0) {
                s->kind = (fault_kind)i;
                return 0;
            }
        }
        return txm__err(TXM_EINVALID,
                        "%s: fault='%s' is unknown (expected deadlock, serialization, lock_timeout, disconnect, "
                        "commit_unknown, commit_unknown_aborted, nomem or none)",
                        who, v);
    }
    if (strcmp(k, "fault_at") == 0) {
        *seen_at = true;
        return parse_at(who, v, s);
    }
    if (strcmp(k, "fault_skip") == 0)
        return parse_count(who, k, v, 0, &s->skip);
    if (strcmp(k, "fault_times") == 0) {
        if (strcmp(v, "always") == 0) {
            s->times = 0;
            return 0;
        }
        return parse_count(who, k, v, 1, &s->times);
    }
    return txm__err(TXM_EINVALID,
                    "%s: unknown fault parameter '%s' (the fault driver knows fault, fault_at, fault_skip, "
                    "fault_times)",
                    who, k);
}

/* Checks the combination once every parameter is applied. */
static int finish_spec(const char *who, fault_spec *s, bool seen_at, bool any)
{
    if (s->kind == F_NONE) {
        if (any && seen_at)
            return txm__err(TXM_EINVALID, "%s: fault_at is given but no fault= says what to inject", who);
        memset(s, 0, sizeof *s);
        return 0;
    }
    if (s->kind == F_COMMIT_UNKNOWN || s->kind == F_COMMIT_UNKNOWN_ABORTED) {
        if (seen_at && s->at_kind != TXM_OP_COMMIT)
            return txm__err(TXM_EINVALID, "%s: fault=%s happens at COMMIT only (fault_at=commit or no fault_at)", who,
                            kind_names[s->kind]);
        s->at_kind = TXM_OP_COMMIT;
        return 0;
    }
    if (!seen_at)
        return txm__err(TXM_EINVALID,
                        "%s: fault=%s needs fault_at (a statement number, or begin, savepoint, release, rollback_to, "
                        "commit, rollback)",
                        who, kind_names[s->kind]);
    return 0;
}

static void spec_init(fault_spec *s)
{
    memset(s, 0, sizeof *s);
    s->times = 1;
}

static int spec_from_url(fault_spec *s, const txm_url *u, size_t *nfault)
{
    static const char who[] = "fault driver URL";
    bool seen_at = false;
    size_t i;
    int rc;
    spec_init(s);
    *nfault = 0;
    for (i = 0; i < u->nparams; i++) {
        if (!is_fault_key(u->params[i].key))
            continue;
        (*nfault)++;
        if ((rc = apply_param(who, s, u->params[i].key, u->params[i].value, &seen_at)))
            return rc;
    }
    return finish_spec(who, s, seen_at, *nfault > 0);
}

/* "k=v&k=v" (no percent-decoding: the values are plain words and numbers). */
static int spec_from_string(fault_spec *s, const char *spec)
{
    static const char who[] = "txm_fault_set";
    char buf[256], *save = NULL, *tok;
    bool seen_at = false, any = false;
    int rc;
    spec_init(s);
    if (strlen(spec) >= sizeof buf)
        return txm__err(TXM_EINVALID, "%s: spec is longer than %zu bytes", who, sizeof buf - 1);
    memcpy(buf, spec, strlen(spec) + 1);
    for (tok = strtok_r(buf, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return txm__err(TXM_EINVALID, "%s: '%s' is not key=value", who, tok);
        *eq = '\0';
        any = true;
        if ((rc = apply_param(who, s, tok, eq + 1, &seen_at)))
            return rc;
    }
    return finish_spec(who, s, seen_at, any);
}

/* ---- the inner URL: the scheme without "fault+", the fault parameters removed --------------- */

static bool starts_with_key(const char *p, const char **end)
{
    static const char *const keys[] = {"fault_times=", "fault_skip=", "fault_at=", "fault="};
    size_t i;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t n = strlen(keys[i]);
        if (strncmp(p, keys[i], n) == 0) {
            *end = p + n + strcspn(p + n, "&");
            return true;
        }
    }
    return false;
}

static int inner_url(const txm_url *u, size_t nfault, txm_url **out)
{
    const char *src = u->full + strlen(FAULT_PREFIX);
    size_t n = strlen(src), o = 0, removed = 0;
    char *buf = txm__malloc(n + 1);
    const char *p = src;
    bool query_open = false;
    int rc;

    if (!buf)
        return txm__err(TXM_ENOMEM, "fault driver: out of memory");
    while (*p) {
        const char *end;
        if ((*p == '?' || *p == '&') && starts_with_key(p + 1, &end)) {
            removed++;
            if (*p == '?')
                query_open = true; /* the next kept '&' starts the query */
            p = end;
            continue;
        }
        if (*p == '&' && query_open) {
            buf[o++] = '?';
            p++;
            query_open = false;
            continue;
        }
        buf[o++] = *p++;
    }
    buf[o] = '\0';
    rc = txm__url_parse(out, buf);
    txm__free(buf);
    if (rc)
        return rc;
    /* A fault parameter spelled in a way the text scan missed (percent-encoded key) would reach
     * the inner driver: refuse rather than guess. */
    if (removed != nfault || (*out)->nparams + nfault != u->nparams) {
        txm__url_free(*out);
        *out = NULL;
        return txm__err(TXM_EINVALID,
                        "fault driver URL '%s': write the fault parameters plainly (fault=..., fault_at=...) so they "
                        "can be removed before the inner driver sees the URL",
                        u->redacted);
    }
    return 0;
}

/* ---- errors that look like the inner driver's ---------------------------------------------- */

typedef struct fault_err_style {
    const char *sqlstate;
    int native;
} fault_err_style;

static fault_err_style err_style(const txm_driver *inner, int code)
{
    fault_err_style st = {"", 0};
    bool pg = strcmp(inner->name, "postgresql") == 0, my = strcmp(inner->name, "mysql") == 0,
         sq = strcmp(inner->name, "sqlite") == 0;
    switch (code) {
    case TXM_EDEADLOCK:
        st = pg ? (fault_err_style){"40P01", 0} : my ? (fault_err_style){"40001", 1213} : sq ? (fault_err_style){"", 5}
                                                                                         : (fault_err_style){"40001", 0};
        break;
    case TXM_ESERIALIZATION:
        st = pg ? (fault_err_style){"40001", 0}
                : my ? (fault_err_style){"40001", 3101} : sq ? (fault_err_style){"", 517} : (fault_err_style){"40001", 0};
        break;
    case TXM_ELOCK_TIMEOUT:
        st = pg ? (fault_err_style){"55P03", 0} : my ? (fault_err_style){"HY000", 1205} : sq ? (fault_err_style){"", 5}
                                                                                         : st;
        break;
    case TXM_ECONNECTION:
        st = pg ? (fault_err_style){"08006", 0} : my ? (fault_err_style){"HY000", 2013} : st;
        break;
    case TXM_ECOMMIT_UNKNOWN:
        st = pg ? (fault_err_style){"08006", 0} : my ? (fault_err_style){"HY000", 2013} : sq ? (fault_err_style){"", 10}
                                                                                         : st;
        break;
    default:
        break;
    }
    return st;
}

static const char *op_name(txm_op_kind k)
{
    switch (k) {
    case TXM_OP_BEGIN:
        return "BEGIN";
    case TXM_OP_SAVEPOINT:
        return "SAVEPOINT";
    case TXM_OP_RELEASE:
        return "RELEASE SAVEPOINT";
    case TXM_OP_ROLLBACK_TO:
        return "ROLLBACK TO SAVEPOINT";
    case TXM_OP_COMMIT:
        return "COMMIT";
    case TXM_OP_ROLLBACK:
        return "ROLLBACK";
    case TXM_OP_LOCK:
        return "advisory lock";
    case TXM_OP_UNLOCK:
        return "advisory unlock";
    default:
        return "statement";
    }
}

static int report(fault_conn *fc, const txm_op *op, int code, unsigned flags, const char *what)
{
    fault_err_style st = err_style(fc->inner, code);
    txm_error_detail d;
    char where[64];
    memset(&d, 0, sizeof d);
    d.sqlstate = st.sqlstate;
    d.native_code = st.native;
    d.flags = flags;
    if (op->kind == TXM_OP_STATEMENT || op->kind == TXM_OP_LOCK || op->kind == TXM_OP_UNLOCK)
        snprintf(where, sizeof where, "%s %lu of the transaction", op_name(op->kind), fc->cnt.stmt);
    else
        snprintf(where, sizeof where, "%s", op_name(op->kind));
    return txm_driver_error(code, &d, "%s: %s (injected by the fault driver: fault=%s at %s)", fc->inner->name, what,
                            kind_names[fc->spec.kind], where);
}

/* ---- counting ------------------------------------------------------------------------------- */

static bool is_app(txm_op_kind k) { return k == TXM_OP_STATEMENT || k == TXM_OP_LOCK || k == TXM_OP_UNLOCK; }

/* Counts op as seen; true when the fault fires on it. */
static bool advance(fault_conn *fc, const txm_op *op)
{
    const fault_spec *s = &fc->spec;
    bool match;
    if (op->kind == TXM_OP_BEGIN)
        fc->cnt.stmt = 0;
    if (is_app(op->kind))
        fc->cnt.stmt++;
    if (s->kind == F_NONE || (s->times && fc->cnt.injected >= s->times))
        return false;
    match = s->at_kind ? op->kind == s->at_kind : is_app(op->kind) && fc->cnt.stmt == s->at_n;
    if (!match)
        return false;
    return ++fc->cnt.matched > s->skip;
}

static void track_tx(fault_conn *fc, const txm_op *ops, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (ops[i].kind == TXM_OP_BEGIN)
            fc->in_tx = true;
        else if (ops[i].kind == TXM_OP_COMMIT || ops[i].kind == TXM_OP_ROLLBACK)
            fc->in_tx = false;
    }
}

static bool inner_in_tx(fault_conn *fc, txm_driver_conn *dc)
{
    if (fc->inner->tx_status) {
        txm_tx_status st = fc->inner->tx_status(dc);
        if (st != TXM_TXS_UNKNOWN)
            return st == TXM_TXS_ACTIVE || st == TXM_TXS_FAILED;
    }
    return fc->in_tx;
}

/* ---- the inner connection ------------------------------------------------------------------- */

/* Zeroes the inner connection struct as the core would for a new one. dc->driver (the inner
 * driver since open) is left alone: cancel() on another thread reads it to find our state. */
static void inner_reset(fault_conn *fc, txm_driver_conn *dc)
{
    memset((char *)dc + sizeof *dc, 0, fc->inner->conn_size - sizeof *dc);
}

static int inner_open(fault_conn *fc, txm_driver_conn *dc)
{
    int rc;
    inner_reset(fc, dc);
    fc->live = true;
    rc = fc->inner->open(dc, fc->inner_url);
    if (rc) {
        txm_err_rec saved;
        txm__err_copy(&saved, txm_error_last());
        fc->inner->close(dc);
        inner_reset(fc, dc);
        fc->live = false;
        txm__err_copy(txm__err_tls(), &saved.pub);
    }
    return rc;
}

/* The connection is gone for real: the server ends the session (and its transaction). */
static void lose(fault_conn *fc, txm_driver_conn *dc)
{
    pthread_mutex_lock(&fc->mu);
    if (fc->live) {
        fc->inner->close(dc);
        inner_reset(fc, dc);
        fc->live = false;
    }
    fc->lost = true;
    fc->in_tx = false;
    pthread_mutex_unlock(&fc->mu);
}

/* Runs one control op on the inner connection, keeping the caller's error record. */
static void inner_control(fault_conn *fc, txm_driver_conn *dc, txm_op_kind kind, txm_run_result *out)
{
    txm_op op;
    txm_run_result r;
    txm_err_rec saved;
    txm__err_copy(&saved, txm_error_last());
    memset(&op, 0, sizeof op);
    memset(&r, 0, sizeof r);
    op.kind = kind;
    op.affected = -1;
    if (fc->inner->run(dc, &op, 1, &r) != 0)
        txm_driver_log(dc, TXM_LOG_WARN, "fault driver: %s after an injected fault failed: %s", op_name(kind),
                       txm_error_last()->message);
    out->round_trips += r.round_trips;
    txm__err_copy(txm__err_tls(), &saved.pub);
}

/* A statement that fails on every engine, so the server's transaction is in the state a failed
 * statement leaves on that engine (aborted on PostgreSQL, intact on MySQL/MariaDB and SQLite). */
static void inner_fail_statement(fault_conn *fc, txm_driver_conn *dc, txm_run_result *out)
{
    static const char sql[] = "SELECT txm_fault_injected_lock_timeout()";
    txm_op op;
    txm_run_result r;
    memset(&op, 0, sizeof op);
    memset(&r, 0, sizeof r);
    op.kind = TXM_OP_STATEMENT;
    op.sql = sql;
    op.sql_len = sizeof sql - 1;
    op.affected = -1;
    (void)fc->inner->run(dc, &op, 1, &r);
    out->round_trips += r.round_trips;
}

/* ---- methods -------------------------------------------------------------------------------- */

static int fault_open(txm_driver_conn *dc, const txm_url *url)
{
    const fault_wrapper *w = (const fault_wrapper *)(const void *)dc->driver;
    fault_conn *fc;
    size_t nfault;
    int rc;

    /* From here on the methods find their state through the inner driver (see the top). */
    dc->driver = w->inner;
    fc = fc_of(dc);
    fc->inner = w->inner;
    if (pthread_mutex_init(&fc->mu, NULL) != 0)
        return txm_driver_error(TXM_ENOMEM, NULL, "fault driver: cannot create a mutex");
    fc->mu_ok = true;
    if ((rc = spec_from_url(&fc->spec, url, &nfault)) || (rc = inner_url(url, nfault, &fc->inner_url)))
        return rc;
    return inner_open(fc, dc);
}

static void fault_close(txm_driver_conn *dc)
{
    fault_conn *fc = fc_of(dc);
    if (fc->live)
        fc->inner->close(dc);
    fc->live = false;
    txm__url_free(fc->inner_url);
    fc->inner_url = NULL;
    if (fc->mu_ok)
        pthread_mutex_destroy(&fc->mu);
    fc->mu_ok = false;
}

/* Injects the fault at ops[f] after ops[0..f) ran (only COMMIT of commit_unknown runs itself). */
static int inject(fault_conn *fc, txm_driver_conn *dc, txm_op *ops, size_t f, txm_run_result *out)
{
    const txm_op *op = &ops[f];
    fc->cnt.injected++;
    fc->total++;
    out->completed = f;
    switch (fc->spec.kind) {
    case F_DEADLOCK:
    case F_SERIALIZATION:
        if (inner_in_tx(fc, dc))
            inner_control(fc, dc, TXM_OP_ROLLBACK, out);
        fc->in_tx = false;
        return report(fc, op, fc->spec.kind == F_DEADLOCK ? TXM_EDEADLOCK : TXM_ESERIALIZATION, TXM_ERRF_TX_LOST,
                      fc->spec.kind == F_DEADLOCK ? "deadlock detected; the transaction was rolled back"
                                                  : "could not serialize access; the transaction was rolled back");
    case F_LOCK_TIMEOUT:
        if (inner_in_tx(fc, dc))
            inner_fail_statement(fc, dc, out);
        return report(fc, op, TXM_ELOCK_TIMEOUT, 0, "lock wait timed out");
    case F_DISCONNECT:
        lose(fc, dc);
        return report(fc, op, TXM_ECONNECTION, TXM_ERRF_TX_LOST,
                      "connection lost before the operation reached the server");
    case F_COMMIT_UNKNOWN:
    case F_COMMIT_UNKNOWN_ABORTED:
        lose(fc, dc);
        fc->outcome_pending = true;
        fc->outcome = fc->spec.kind == F_COMMIT_UNKNOWN ? TXM_OUTCOME_COMMITTED : TXM_OUTCOME_ABORTED;
        return report(fc, op, TXM_ECOMMIT_UNKNOWN, TXM_ERRF_TX_LOST,
                      "connection lost after COMMIT was sent: the outcome is unknown; txm_resolve_outcome can find out");
    case F_NOMEM:
    default:
        return report(fc, op, TXM_ENOMEM, 0, "out of memory before the operation was sent");
    }
}

static int fault_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out)
{
    fault_conn *fc = fc_of(dc);
    fault_count saved = fc->cnt;
    size_t f, i, upto;
    int rc;

    if (fc->lost) {
        out->completed = 0;
        return report(fc, &ops[0], TXM_ECONNECTION, TXM_ERRF_TX_LOST,
                      "the connection was lost earlier; call txm_reconnect");
    }
    for (f = 0; f < n; f++)
        if (advance(fc, &ops[f]))
            break;
    if (f < n && ops[f].kind == TXM_OP_COMMIT) {
        if (fc->spec.kind == F_COMMIT_UNKNOWN)
            upto = f + 1; /* the COMMIT really executes; its answer is what gets lost */
        else
            upto = f;
    } else {
        upto = f;
    }
    for (i = 0; i < upto && i < n; i++)
        if (ops[i].kind == TXM_OP_COMMIT)
            fc->outcome_pending = false;
    if (upto > 0) {
        rc = fc->inner->run(dc, ops, upto, out);
        if (rc) {
            /* Only what the inner driver executed (the failed op included) was seen; no fault
             * was injected. */
            size_t done = out->completed < upto ? out->completed + 1 : upto;
            fc->cnt = saved;
            for (i = 0; i < done; i++)
                (void)advance(fc, &ops[i]);
            track_tx(fc, ops, out->completed);
            return rc;
        }
        track_tx(fc, ops, upto);
    }
    if (f == n) {
        out->completed = n;
        return 0;
    }
    return inject(fc, dc, ops, f, out);
}

static txm_tx_status fault_tx_status(txm_driver_conn *dc)
{
    fault_conn *fc = fc_of(dc);
    if (fc->lost || !fc->live || !fc->inner->tx_status)
        return TXM_TXS_UNKNOWN;
    return fc->inner->tx_status(dc);
}

static int fault_cancel(txm_driver_conn *dc)
{
    fault_conn *fc = fc_of(dc);
    int rc;
    pthread_mutex_lock(&fc->mu);
    if (fc->lost || !fc->live)
        rc = txm_driver_error(TXM_ECONNECTION, NULL, "%s: cannot cancel: the connection was lost (fault driver)",
                              fc->inner->name);
    else
        rc = fc->inner->cancel(dc);
    pthread_mutex_unlock(&fc->mu);
    return rc;
}

static int fault_reconnect(txm_driver_conn *dc)
{
    fault_conn *fc = fc_of(dc);
    int rc;
    if (fc->lost) {
        pthread_mutex_lock(&fc->mu);
        rc = inner_open(fc, dc);
        if (rc == 0)
            fc->lost = false;
        pthread_mutex_unlock(&fc->mu);
    } else if (fc->inner->reconnect) {
        rc = fc->inner->reconnect(dc);
    } else {
        return txm_driver_error(TXM_ENOTSUPPORTED, NULL, "txm_reconnect: the %s driver cannot reconnect",
                                fc->inner->name);
    }
    if (rc == 0)
        fc->in_tx = false;
    return rc;
}

static int fault_resolve_outcome(txm_driver_conn *dc, txm_outcome *out)
{
    fault_conn *fc = fc_of(dc);
    if (fc->outcome_pending) {
        *out = fc->outcome; /* the fault driver decided what happened */
        return 0;
    }
    if (fc->lost || !fc->live)
        return txm_driver_error(TXM_EMISUSE, NULL,
                                "txm_resolve_outcome: the last COMMIT on this connection did not end with an unknown "
                                "outcome");
    return fc->inner->resolve_outcome(dc, out);
}

/* ---- the registry's side -------------------------------------------------------------------- */

static void build(fault_wrapper *w, const txm_driver *inner)
{
    size_t i, k = 0;
    memset(w, 0, sizeof *w);
    w->inner = inner;
    for (i = 0; inner->schemes[i] && k < FAULT_MAX_SCHEMES; i++) {
        int len = snprintf(w->scheme_buf[k], FAULT_SCHEME_MAX, FAULT_PREFIX "%s", inner->schemes[i]);
        if (len > 0 && len < FAULT_SCHEME_MAX)
            w->schemes[k] = w->scheme_buf[k], k++;
    }
    w->schemes[k] = NULL;
    w->drv.version = TXM_DRIVER_VERSION;
    w->drv.name = inner->name; /* transparent: see the top of the file */
    w->drv.schemes = w->schemes;
    w->drv.caps = inner->caps;
    w->drv.placeholders = inner->placeholders;
    w->drv.dialect = inner->dialect;
    w->drv.conn_size = ALIGN16(inner->conn_size) + sizeof(fault_conn);
    w->drv.open = fault_open;
    w->drv.close = fault_close;
    w->drv.run = fault_run;
    w->drv.tx_status = fault_tx_status;
    w->drv.cancel = inner->cancel ? fault_cancel : NULL;
    w->drv.reconnect = fault_reconnect;
    w->drv.resolve_outcome = inner->resolve_outcome ? fault_resolve_outcome : NULL;
}

const txm_driver *txm__fault_driver_for(const txm_driver *inner)
{
    const txm_driver *found = NULL;
    size_t i;
    if (!inner || is_wrapper(inner) || strncasecmp(inner->name, "fault", 5) == 0)
        return NULL; /* no fault+fault+... */
    pthread_mutex_lock(&wrap_lock);
    for (i = 0; i < nwrappers && !found; i++)
        if (wrappers[i].inner == inner)
            found = &wrappers[i].drv;
    if (!found && nwrappers < FAULT_MAX_WRAPPERS) {
        build(&wrappers[nwrappers], inner);
        found = &wrappers[nwrappers++].drv;
    }
    pthread_mutex_unlock(&wrap_lock);
    return found;
}

/* ---- public API ----------------------------------------------------------------------------- */

static fault_conn *fault_of(const txm_conn *c) { return is_wrapper(c->drv) ? fc_of(c->dc) : NULL; }

int txm_fault_set(txm_conn *c, const char *spec)
{
    fault_spec s;
    fault_conn *fc;
    int rc;
    if (!c)
        return txm__err(TXM_EINVALID, "txm_fault_set: connection is NULL");
    fc = fault_of(c);
    if (!fc)
        return txm__err(TXM_EINVALID, "txm_fault_set: the connection was not opened with a fault+ URL (its driver is %s)",
                        c->drv->name);
    if ((rc = spec_from_string(&s, spec ? spec : "")))
        return rc;
    fc->spec = s;
    memset(&fc->cnt, 0, sizeof fc->cnt);
    return 0;
}

unsigned long txm_fault_count(const txm_conn *c)
{
    fault_conn *fc = c ? fault_of(c) : NULL;
    return fc ? fc->total : 0;
}
