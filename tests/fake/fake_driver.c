/*
 * A SCRIPTED FAKE DRIVER, used only for core state-machine tests that no real engine can trigger
 * deterministically (COMMIT losing the connection, an engine reporting an implicit commit,
 * allocation failures at every site). Driver behaviour is tested against real engines in
 * tests/conformance; nothing here stands in for a driver test.
 *
 * Every op the core sends is appended to fake_log as a word (BEGIN, SP1, REL1, RBTO1, COMMIT,
 * ROLLBACK, STMT:<sql>, LOCK, UNLOCK); runs are separated by " | ". The script (fake_fail_*)
 * makes the n-th op from now fail with a given code and flags.
 */
#include "fake_driver.h"

#include <stdio.h>
#include <string.h>

char fake_log[8192];
txm_tx_options fake_last_begin;
static int fail_at = -1; /* ops from now until the failing one (0 = next) */
static int fail_code;
static unsigned fail_flags;
static int status_override = -1; /* applied once after the next run */

typedef struct fake_conn {
    txm_driver_conn base;
    bool in_tx;
    int forced_status;
} fake_conn;

void fake_reset(void)
{
    fake_log[0] = '\0';
    fail_at = -1;
    status_override = -1;
}

void fake_fail_op(int ops_from_now, int code, unsigned flags)
{
    fail_at = ops_from_now;
    fail_code = code;
    fail_flags = flags;
}

void fake_status_after_next_run(txm_tx_status st) { status_override = (int)st; }

static void logw(const char *w)
{
    size_t n = strlen(fake_log);
    snprintf(fake_log + n, sizeof fake_log - n, "%s", w);
}

static int fake_open(txm_driver_conn *dc, const txm_url *url)
{
    fake_conn *f = (fake_conn *)dc;
    f->forced_status = -1;
    if (strcmp(url->path, "refuse") == 0)
        return txm_driver_error(TXM_ECONNECTION, NULL, "fake: refused to connect to %s", url->redacted);
    return 0;
}

static void fake_close(txm_driver_conn *dc) { (void)dc; }

static int fake_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out)
{
    fake_conn *f = (fake_conn *)dc;
    size_t i;
    char w[256];
    if (fake_log[0])
        logw(" | ");
    out->round_trips = 1;
    for (i = 0; i < n; i++) {
        txm_op *op = &ops[i];
        switch (op->kind) {
        case TXM_OP_BEGIN:
            snprintf(w, sizeof w, "BEGIN");
            fake_last_begin = *op->tx; /* the core promises the current version, never NULL */
            break;
        case TXM_OP_SAVEPOINT: snprintf(w, sizeof w, "SP%u", op->level); break;
        case TXM_OP_RELEASE: snprintf(w, sizeof w, "REL%u", op->level); break;
        case TXM_OP_ROLLBACK_TO: snprintf(w, sizeof w, "RBTO%u", op->level); break;
        case TXM_OP_COMMIT: snprintf(w, sizeof w, "COMMIT"); break;
        case TXM_OP_ROLLBACK: snprintf(w, sizeof w, "ROLLBACK"); break;
        case TXM_OP_STATEMENT: snprintf(w, sizeof w, "STMT:%.*s", (int)op->sql_len, op->sql); break;
        case TXM_OP_LOCK: snprintf(w, sizeof w, "LOCK:%s", op->key); break;
        case TXM_OP_UNLOCK: snprintf(w, sizeof w, "UNLOCK:%s", op->key); break;
        }
        if (i)
            logw(",");
        logw(w);
        if (fail_at == 0) {
            fail_at = -1;
            out->completed = i;
            if (fail_flags & TXM_ERRF_TX_LOST)
                f->in_tx = false;
            if (op->kind == TXM_OP_COMMIT && (fail_code == TXM_ECOMMIT_UNKNOWN || fail_code == TXM_ECONNECTION))
                f->in_tx = false;
            {
                txm_error_detail d = {"XX000", 42, "fake_constraint", "fake_table", "fake_col", "", "", fail_flags};
                int rc = txm_driver_error(fail_code, &d, "fake: scripted failure of %s", w);
                if (status_override >= 0) {
                    f->forced_status = status_override;
                    status_override = -1;
                }
                return rc;
            }
        }
        if (fail_at > 0)
            fail_at--;
        if (op->kind == TXM_OP_BEGIN)
            f->in_tx = true;
        if (op->kind == TXM_OP_COMMIT || op->kind == TXM_OP_ROLLBACK)
            f->in_tx = false;
        if (op->kind == TXM_OP_STATEMENT) {
            op->affected = 1;
            if (op->sink) {
                const char *names[] = {"v"};
                txm_value v = txm_int(7);
                if (txm_sink_columns(op->sink, 1, names) || txm_sink_row(op->sink, &v))
                    return TXM_ENOMEM;
            }
        }
    }
    out->completed = n;
    if (status_override >= 0) {
        f->forced_status = status_override;
        if (status_override == TXM_TXS_IDLE)
            f->in_tx = false;
        status_override = -1;
    }
    return 0;
}

static txm_tx_status fake_status(txm_driver_conn *dc)
{
    fake_conn *f = (fake_conn *)dc;
    if (f->forced_status >= 0) {
        txm_tx_status st = (txm_tx_status)f->forced_status;
        f->forced_status = -1;
        return st;
    }
    return f->in_tx ? TXM_TXS_ACTIVE : TXM_TXS_IDLE;
}

static const char *const fake_schemes[] = {"fake", NULL};

const txm_driver fake_driver = {
    .version = TXM_DRIVER_VERSION,
    .name = "fake",
    .schemes = fake_schemes,
    .caps = TXM_CAP_PIPELINE | TXM_CAP_ADVISORY_LOCKS,
    .placeholders = TXM_PH_QMARK,
    .dialect = 0,
    .conn_size = sizeof(fake_conn),
    .open = fake_open,
    .close = fake_close,
    .run = fake_run,
    .tx_status = fake_status,
};
