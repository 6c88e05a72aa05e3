/*
 * The misuse catalogue (issue 7; docs/misuse.md is the same table in prose): every public function
 * of txm.h and txm/driver.h called with NULL or invalid arguments, in the wrong order, on a level
 * that ended, from inside a hook, with bad options or a bad driver. Each row names the function,
 * the misuse, the code it must return and words its message must contain (the function's name and
 * what was wrong). On a fresh in-memory SQLite connection per row; Criterion runs each row in its
 * own process, so a crash fails that row only.
 */
#include "internal.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <stdio.h>
#include <string.h>

#include "txm_check.h"

static txm_conn *C;         /* the row's connection (NULL once a row closed it) */
static char got_msg[600];   /* the message the row's misuse produced */

/* Every row function ends with RET: it keeps the message of the call under test. */
#define RET(expr)                                                                                  \
    do {                                                                                           \
        int ret_rc_ = (expr);                                                                      \
        snprintf(got_msg, sizeof got_msg, "%s", ret_rc_ ? txm_error_last()->message : "");         \
        return ret_rc_;                                                                            \
    } while (0)

static txm_tx *begin(void)
{
    txm_tx *t = NULL;
    OK(txm_begin(&t, C, NULL));
    return t;
}

static int ins(int64_t id)
{
    txm_value v = txm_int(id);
    return txm_exec(C, "INSERT INTO t (id) VALUES (?)", &v, 1, NULL);
}

/* ---- hooks that misbehave; each records what its misuse returned ---------------------------- */

static int hook_rc = 12345;
static char hook_msg[600];
static txm_tx *hook_target;

static void hook_record(int rc)
{
    hook_rc = rc;
    snprintf(hook_msg, sizeof hook_msg, "%s", rc ? txm_error_last()->message : "");
}

static int h_commit_target(txm_conn *c, void *p) { (void)c; (void)p; hook_record(txm_commit(hook_target)); return 0; }
static int h_rollback_target(txm_conn *c, void *p) { (void)c; (void)p; hook_record(txm_rollback(hook_target)); return 0; }
static int h_test_end(txm_conn *c, void *p) { (void)p; hook_record(txm_test_end(c)); return 0; }
static int h_test_baseline(txm_conn *c, void *p) { (void)p; hook_record(txm_test_baseline(c)); return 0; }
static int h_reconnect(txm_conn *c, void *p) { (void)p; hook_record(txm_reconnect(c)); return 0; }
static int body_ok(txm_conn *c, void *p) { (void)c; (void)p; return 0; }
static int h_retry(txm_conn *c, void *p) { (void)p; hook_record(txm_retry(c, NULL, body_ok, NULL)); return 0; }
static int h_begin_commit(txm_conn *c, void *p)
{
    txm_tx *t = NULL;
    int rc;
    (void)p;
    rc = txm_begin(&t, c, NULL);
    if (rc == 0)
        rc = txm_commit(t);
    hook_record(rc);
    return 0;
}
static int h_close_then_exec(txm_conn *c, void *p)
{
    (void)p;
    txm_close(c);
    hook_record(txm_exec(c, "SELECT 1", NULL, 0, NULL));
    return 0;
}
static int h_leave_open(txm_conn *c, void *p)
{
    txm_tx *t = NULL;
    (void)p;
    return txm_begin(&t, c, NULL);
}

/* Runs hook fn as the on-commit hook of an outermost commit; returns what its misuse returned. */
static int in_commit_hook(txm_hook_cb fn)
{
    txm_tx *t = begin();
    hook_target = t;
    OK(txm_on_commit(C, fn, NULL, NULL));
    OK(txm_commit(t));
    snprintf(got_msg, sizeof got_msg, "%s", hook_msg);
    return hook_rc;
}

/* Runs hook fn as the on-rollback hook of a nested level, the outer level staying open. */
static int in_nested_rollback_hook(txm_hook_cb fn)
{
    txm_tx *outer = begin(), *inner;
    OK(ins(1));
    inner = begin();
    hook_target = outer;
    OK(txm_on_rollback(C, fn, NULL, NULL));
    OK(txm_rollback(inner));
    snprintf(got_msg, sizeof got_msg, "%s", hook_msg);
    OK(txm_rollback(outer));
    return hook_rc;
}

/* ---- the rows --------------------------------------------------------------------------------- */

#define ROW(name) static int name(void)

/* connections */
ROW(open_out_null) { RET(txm_open(NULL, "sqlite::memory:", NULL)); }
ROW(open_url_null) { txm_conn *c; RET(txm_open(&c, NULL, NULL)); }
ROW(open_bad_version) { txm_conn *c; txm_open_options o = TXM_OPEN_OPTIONS_INIT; o.version = 99; RET(txm_open(&c, "sqlite::memory:", &o)); }
ROW(open_no_driver) { txm_conn *c; RET(txm_open(&c, "nosuch://x", NULL)); }
ROW(open_no_scheme) { txm_conn *c; RET(txm_open(&c, "no scheme here", NULL)); }
ROW(open_opts_init_null) { RET(txm_open_options_init(NULL, TXM_OPEN_OPTIONS_VERSION)); }
ROW(open_opts_init_version) { txm_open_options o; RET(txm_open_options_init(&o, 0)); }
ROW(close_null) { txm_close(NULL); RET(0); }
ROW(name_caps_null) { cr_assert_str_eq(txm_driver_name(NULL), ""); cr_assert(txm_capabilities(NULL) == 0); RET(0); }
/* statements */
ROW(exec_conn_null) { RET(txm_exec(NULL, "SELECT 1", NULL, 0, NULL)); }
ROW(exec_sql_null) { RET(txm_exec(C, NULL, NULL, 0, NULL)); }
ROW(exec_params_null) { RET(txm_exec(C, "SELECT ?", NULL, 1, NULL)); }
ROW(exec_bad_type) { txm_value v; v.type = (txm_type)42; v.u.i = 0; RET(txm_exec(C, "SELECT ?", &v, 1, NULL)); }
ROW(exec_text_null_ptr) { txm_value v = txm_textn(NULL, 5); RET(txm_exec(C, "SELECT ?", &v, 1, NULL)); }
ROW(exec_count_mismatch) { txm_value v = txm_int(1); RET(txm_exec(C, "SELECT ?, ?", &v, 1, NULL)); }
ROW(exec_control_sql) { RET(txm_exec(C, "  /* x */ COMMIT", NULL, 0, NULL)); }
ROW(query_out_null) { RET(txm_query(NULL, C, "SELECT 1", NULL, 0)); }
ROW(query_i64_out_null) { RET(txm_query_i64(C, NULL, "SELECT 1", NULL, 0)); }
ROW(query_i64_no_row) { int64_t v; RET(txm_query_i64(C, &v, "SELECT 1 WHERE 0", NULL, 0)); }
ROW(query_i64_null_value) { int64_t v; RET(txm_query_i64(C, &v, "SELECT NULL", NULL, 0)); }
ROW(query_i64_or_null_out_null) { int n; RET(txm_query_i64_or_null(C, NULL, &n, "SELECT 1", NULL, 0)); }
ROW(query_i64_or_null_is_null_null) { int64_t v = 5; int rc = txm_query_i64_or_null(C, &v, NULL, "SELECT 1", NULL, 0); cr_assert(v == 0); RET(rc); }
ROW(query_i64_or_null_conn_null) { int64_t v; int n = 3; int rc = txm_query_i64_or_null(NULL, &v, &n, "SELECT 1", NULL, 0); cr_assert(n == 0); RET(rc); }
ROW(query_i64_or_null_no_row) { int64_t v; int n; RET(txm_query_i64_or_null(C, &v, &n, "SELECT 1 WHERE 0", NULL, 0)); }
ROW(rows_null)
{
    size_t len = 7;
    cr_assert(txm_rows_next(NULL) == 0 && txm_rows_count(NULL) == 0 && txm_rows_columns(NULL) == 0);
    cr_assert(txm_rows_column_name(NULL, 0) == NULL && txm_rows_column_index(NULL, "x") == -1);
    cr_assert(txm_rows_type(NULL, 0) == TXM_T_NULL && txm_rows_is_null(NULL, 0) == 1);
    cr_assert(txm_rows_get_i64(NULL, 0) == 0 && txm_rows_get_double(NULL, 0) == 0.0);
    cr_assert(txm_rows_get_text(NULL, 0, &len) == NULL && len == 0);
    txm_rows_free(NULL);
    RET(0);
}
ROW(rows_out_of_range)
{
    txm_rows *r = NULL;
    OK(txm_query(&r, C, "SELECT 1", NULL, 0));
    cr_assert(txm_rows_is_null(r, 0), "no current row before txm_rows_next");
    cr_assert(txm_rows_next(r) == 1);
    cr_assert(txm_rows_is_null(r, 5) && txm_rows_column_name(r, 5) == NULL && txm_rows_column_index(r, NULL) == -1);
    txm_rows_free(r);
    RET(0);
}
/* transactions */
ROW(tx_opts_init_null) { RET(txm_tx_options_init(NULL, TXM_TX_OPTIONS_VERSION)); }
ROW(tx_opts_init_version) { txm_tx_options o; RET(txm_tx_options_init(&o, 7)); }
ROW(begin_out_null) { RET(txm_begin(NULL, C, NULL)); }
ROW(begin_conn_null) { txm_tx *t; RET(txm_begin(&t, NULL, NULL)); }
ROW(begin_bad_version) { txm_tx *t; txm_tx_options o = TXM_TX_OPTIONS_INIT; o.version = 0; RET(txm_begin(&t, C, &o)); }
ROW(begin_unknown_flags) { txm_tx *t; txm_tx_options o = TXM_TX_OPTIONS_INIT; o.flags = 0x100; RET(txm_begin(&t, C, &o)); }
ROW(begin_bad_isolation) { txm_tx *t; txm_tx_options o = TXM_TX_OPTIONS_INIT; o.isolation = (txm_isolation)9; RET(txm_begin(&t, C, &o)); }
ROW(begin_durable_nested) { txm_tx *t; txm_tx_options o = TXM_TX_OPTIONS_INIT; o.flags = TXM_TX_DURABLE; begin(); RET(txm_begin(&t, C, &o)); }
ROW(begin_join_outermost) { txm_tx *t; txm_tx_options o = TXM_TX_OPTIONS_INIT; o.flags = TXM_TX_JOIN; RET(txm_begin(&t, C, &o)); }
ROW(begin_isolation_nested) { txm_tx *t; txm_tx_options o = TXM_TX_OPTIONS_INIT; o.isolation = TXM_ISOLATION_SERIALIZABLE; begin(); RET(txm_begin(&t, C, &o)); }
ROW(commit_null) { RET(txm_commit(NULL)); }
ROW(rollback_null) { RET(txm_rollback(NULL)); }
ROW(commit_outer_inner_open) { txm_tx *o = begin(); begin(); RET(txm_commit(o)); }
ROW(rollback_outer_inner_open) { txm_tx *o = begin(); begin(); RET(txm_rollback(o)); }
ROW(commit_twice) { txm_tx *t = begin(); OK(txm_commit(t)); RET(txm_commit(t)); }
ROW(rollback_after_commit) { txm_tx *t = begin(); OK(txm_commit(t)); RET(txm_rollback(t)); }
ROW(commit_after_rollback) { txm_tx *t = begin(); OK(txm_rollback(t)); RET(txm_commit(t)); }
ROW(commit_inner_after_outer_ended)
{
    txm_tx *o = begin(), *i = begin();
    OK(txm_rollback(i));
    OK(txm_commit(o));
    RET(txm_commit(i));
}
ROW(require_outside) { RET(txm_require_transaction(C, "charge_card")); }
ROW(forbid_inside) { begin(); RET(txm_forbid_transaction(C, "send_email")); }
ROW(require_null) { RET(txm_require_transaction(NULL, "x")); }
static int body_commits_own(txm_conn *c, void *p) { (void)p; (void)c; return txm_commit(hook_target); }
static int body_leaves_open(txm_conn *c, void *p) { txm_tx *t; (void)p; return txm_begin(&t, c, NULL); }
static int body_grab(txm_conn *c, void *p)
{
    (void)p;
    hook_target = c->levels[c->depth - 1];
    return body_commits_own(c, p);
}
ROW(atomic_conn_null) { RET(txm_atomic(NULL, NULL, body_ok, NULL)); }
ROW(atomic_body_null) { RET(txm_atomic(C, NULL, NULL, NULL)); }
ROW(atomic_body_ends_level) { int rc = txm_atomic(C, NULL, body_grab, NULL); cr_assert(txm_depth(C) == 0); RET(rc); }
ROW(atomic_body_leaves_open) { int rc = txm_atomic(C, NULL, body_leaves_open, NULL); cr_assert(txm_depth(C) == 0); RET(rc); }
ROW(on_commit_fn_null) { RET(txm_on_commit(C, NULL, NULL, NULL)); }
ROW(on_commit_conn_null) { RET(txm_on_commit(NULL, h_begin_commit, NULL, NULL)); }
ROW(on_rollback_fn_null) { RET(txm_on_rollback(C, NULL, NULL, NULL)); }
/* retry */
ROW(retry_policy_init_null) { RET(txm_retry_policy_init(NULL, TXM_RETRY_POLICY_VERSION)); }
ROW(retry_policy_init_version) { txm_retry_policy p; RET(txm_retry_policy_init(&p, 99)); }
ROW(retry_body_null) { RET(txm_retry(C, NULL, NULL, NULL)); }
ROW(retry_bad_version) { txm_retry_policy p = TXM_RETRY_POLICY_INIT; p.version = 5; RET(txm_retry(C, &p, body_ok, NULL)); }
ROW(retry_bad_jitter) { txm_retry_policy p = TXM_RETRY_POLICY_INIT; p.jitter = 7; RET(txm_retry(C, &p, body_ok, NULL)); }
ROW(retry_zero_attempts) { txm_retry_policy p = TXM_RETRY_POLICY_INIT; p.max_attempts = 0; RET(txm_retry(C, &p, body_ok, NULL)); }
ROW(retry_bad_tx_options) { txm_tx_options o = TXM_TX_OPTIONS_INIT; txm_retry_policy p = TXM_RETRY_POLICY_INIT; o.flags = 0x80; p.tx = &o; RET(txm_retry(C, &p, body_ok, NULL)); }
ROW(retry_inside_tx) { begin(); RET(txm_retry(C, NULL, body_ok, NULL)); }
/* batches and dialect facts */
static txm_batch_stmt bstmt(const char *sql)
{
    txm_batch_stmt b;
    memset(&b, 0, sizeof b);
    b.sql = sql;
    return b;
}
ROW(batch_conn_null) { txm_batch_stmt b = bstmt("SELECT 1"); RET(txm_batch(NULL, &b, 1, NULL)); }
ROW(batch_stmts_null) { RET(txm_batch(C, NULL, 2, NULL)); }
ROW(batch_bad_version) { txm_batch_stmt b = bstmt("SELECT 1"); txm_batch_options o = TXM_BATCH_OPTIONS_INIT; o.version = 3; RET(txm_batch(C, &b, 1, &o)); }
ROW(batch_sql_null) { txm_batch_stmt b[2] = {bstmt("SELECT 1"), bstmt(NULL)}; RET(txm_batch(C, b, 2, NULL)); }
ROW(batch_control_sql) { txm_batch_stmt b = bstmt("ROLLBACK"); RET(txm_batch(C, &b, 1, NULL)); }
ROW(batch_retry_bad_version) { txm_batch_stmt b = bstmt("SELECT 1"); txm_retry_policy p = TXM_RETRY_POLICY_INIT; txm_batch_options o = TXM_BATCH_OPTIONS_INIT; p.version = 5; o.retry = &p; RET(txm_batch(C, &b, 1, &o)); }
ROW(batch_poisoned)
{
    txm_batch_stmt b = bstmt("SELECT 1");
    begin();
    OK(ins(1));
    if (ins(1) == 0)
        return -999;
    RET(txm_batch(C, &b, 1, NULL));
}
ROW(batch_options_init_null) { RET(txm_batch_options_init(NULL, TXM_BATCH_OPTIONS_VERSION)); }
ROW(batch_options_init_version) { txm_batch_options o; RET(txm_batch_options_init(&o, 4)); }
static int h_batch(txm_conn *c, void *p)
{
    txm_batch_stmt b = bstmt("INSERT INTO t (id) VALUES (7)");
    (void)p;
    hook_record(txm_batch(c, &b, 1, NULL));
    return 0;
}
ROW(hook_batch_depth0) { RET(in_commit_hook(h_batch)); }
ROW(hook_batch_inside_tx) { RET(in_nested_rollback_hook(h_batch)); }
ROW(quote_name_null) { char buf[8]; RET(txm_quote_ident(C, buf, sizeof buf, NULL)); }
ROW(quote_name_empty) { char buf[8]; RET(txm_quote_ident(C, buf, sizeof buf, "")); }
ROW(quote_name_long) { char buf[200], n[65]; memset(n, 'x', 64); n[64] = 0; RET(txm_quote_ident(C, buf, sizeof buf, n)); }
ROW(quote_name_control) { char buf[16]; RET(txm_quote_ident(C, buf, sizeof buf, "a\nb")); }
ROW(quote_name_utf8) { char buf[16]; RET(txm_quote_ident(C, buf, sizeof buf, "a\xc3")); }
ROW(quote_buf_small) { char buf[4]; RET(txm_quote_ident(C, buf, sizeof buf, "ab")); }
ROW(quote_buf_null) { RET(txm_quote_ident(C, NULL, 8, "ab")); }
ROW(row_lock_null)
{
    cr_assert_str_eq(txm_sql_row_lock(NULL, TXM_ROW_LOCK_UPDATE), "");
    cr_assert_str_eq(txm_sql_row_lock(C, 0x80u), ""); /* SQLite: no row locks, whatever the mode */
    RET(0);
}
/* locks, recovery, stats */
ROW(lock_key_null) { RET(txm_lock(C, NULL, 0, 0)); }
ROW(lock_bad_flags) { RET(txm_lock(C, "k", 0x40, 0)); }
ROW(lock_unsupported) { RET(txm_lock(C, "k", TXM_LOCK_EXCLUSIVE, 0)); }
ROW(unlock_conn_null) { RET(txm_unlock(NULL, "k", 0)); }
ROW(cancel_null) { RET(txm_cancel(NULL)); }
ROW(reconnect_null) { RET(txm_reconnect(NULL)); }
ROW(reconnect_levels_open) { begin(); RET(txm_reconnect(C)); }
ROW(resolve_out_null) { RET(txm_resolve_outcome(C, NULL)); }
ROW(resolve_unsupported) { txm_outcome o; RET(txm_resolve_outcome(C, &o)); }
ROW(stats_null)
{
    txm_stats s;
    memset(&s, 0xff, sizeof s);
    txm_stats_get(NULL, &s);
    cr_assert(s.round_trips == 0 && s.hooks_run == 0);
    txm_stats_get(C, NULL);
    txm_stats_reset(NULL);
    RET(0);
}
/* test baseline */
ROW(baseline_twice) { OK(txm_test_baseline(C)); RET(txm_test_baseline(C)); }
ROW(baseline_inside_tx) { begin(); RET(txm_test_baseline(C)); }
ROW(test_end_without_baseline) { RET(txm_test_end(C)); }
ROW(test_run_hooks_null) { RET(txm_test_run_hooks(NULL)); }
ROW(test_hook_count_null) { cr_assert(txm_test_hook_count(NULL) == 0); RET(0); }
/* from inside a hook */
ROW(hook_commits_own_level) { RET(in_commit_hook(h_commit_target)); }
ROW(hook_rolls_back_own_level)
{
    txm_tx *t = begin();
    hook_target = t;
    OK(txm_on_rollback(C, h_rollback_target, NULL, NULL));
    OK(txm_rollback(t));
    snprintf(got_msg, sizeof got_msg, "%s", hook_msg);
    return hook_rc;
}
ROW(hook_ends_enclosing_level) { RET(in_nested_rollback_hook(h_commit_target)); }
ROW(hook_begin_commit) { RET(in_commit_hook(h_begin_commit)); }
ROW(hook_retry_depth0) { RET(in_commit_hook(h_retry)); }
ROW(hook_retry_inside_tx) { RET(in_nested_rollback_hook(h_retry)); }
ROW(hook_test_end) { OK(txm_test_baseline(C)); RET(in_nested_rollback_hook(h_test_end)); }
ROW(hook_test_baseline) { RET(in_commit_hook(h_test_baseline)); }
ROW(hook_reconnect_inside_tx) { RET(in_nested_rollback_hook(h_reconnect)); }
ROW(hook_close_then_call)
{
    int rc = in_commit_hook(h_close_then_exec);
    C = NULL; /* closed when txm_commit returned */
    return rc;
}
ROW(hook_leaves_level_open)
{
    txm_tx *t = begin();
    OK(txm_on_commit(C, h_leave_open, NULL, NULL));
    int rc = txm_commit(t);
    cr_assert(txm_depth(C) == 0);
    cr_assert(txm_error_last()->cause != NULL);
    snprintf(got_msg, sizeof got_msg, "%s", txm_error_last()->message);
    return rc;
}
/* errors */
ROW(error_names_out_of_table)
{
    cr_assert_str_eq(txm_err_name(12345), "TXM_E?");
    cr_assert_str_eq(txm_strerror(-999), "unknown error code");
    cr_assert(txm_err_is_transient(NULL) == 0 && txm_err_is_constraint(77) == 0);
    RET(0);
}
ROW(error_set_fmt_null) { int rc = txm_error_set(TXM_EDATA, NULL); cr_assert_str_eq(txm_error_last()->message, txm_strerror(TXM_EDATA)); RET(rc == TXM_EDATA ? 0 : -1); }
/* driver ABI */
static int d_open(txm_driver_conn *dc, const txm_url *u) { (void)dc; (void)u; return 0; }
static void d_close(txm_driver_conn *dc) { (void)dc; }
static int d_run(txm_driver_conn *dc, txm_op *ops, size_t n, txm_run_result *out) { (void)dc; (void)ops; (void)n; (void)out; return 0; }
static const char *const d_schemes[] = {"misuse-test", NULL};
static const char *const no_schemes[] = {NULL};
static txm_driver good_driver(void)
{
    txm_driver d;
    memset(&d, 0, sizeof d);
    d.version = TXM_DRIVER_VERSION;
    d.name = "misuse";
    d.schemes = d_schemes;
    d.conn_size = sizeof(txm_driver_conn);
    d.open = d_open;
    d.close = d_close;
    d.run = d_run;
    return d;
}
static txm_driver drv; /* registered drivers must outlive the process's connections */
ROW(register_null) { RET(txm_driver_register(NULL)); }
ROW(register_version0) { drv = good_driver(); drv.version = 0; RET(txm_driver_register(&drv)); }
ROW(register_version_new) { drv = good_driver(); drv.version = TXM_DRIVER_VERSION + 1; RET(txm_driver_register(&drv)); }
ROW(register_no_name) { drv = good_driver(); drv.name = NULL; RET(txm_driver_register(&drv)); }
ROW(register_no_schemes) { drv = good_driver(); drv.schemes = no_schemes; RET(txm_driver_register(&drv)); }
ROW(register_no_run) { drv = good_driver(); drv.run = NULL; RET(txm_driver_register(&drv)); }
ROW(register_small_conn) { drv = good_driver(); drv.conn_size = 1; RET(txm_driver_register(&drv)); }
ROW(register_bad_placeholders) { drv = good_driver(); drv.placeholders = (txm_placeholder_style)7; RET(txm_driver_register(&drv)); }
ROW(find_null) { cr_assert(txm_driver_find(NULL) == NULL && txm_driver_find("no-such") == NULL); RET(0); }
ROW(sink_columns_null) { RET(txm_sink_columns(NULL, 1, NULL)); }
ROW(sink_row_null) { txm_value v = txm_int(1); RET(txm_sink_row(NULL, &v)); }
ROW(sink_row_before_columns) { txm_value v = txm_int(1); txm_sink *s = txm__sink_new(); int rc = txm_sink_row(s, &v); snprintf(got_msg, sizeof got_msg, "%s", txm_error_last()->message); txm__sink_free(s); return rc; }
ROW(sink_row_cells_null)
{
    const char *names[] = {"a"};
    txm_sink *s = txm__sink_new();
    OK(txm_sink_columns(s, 1, names));
    int rc = txm_sink_row(s, NULL);
    snprintf(got_msg, sizeof got_msg, "%s", txm_error_last()->message);
    txm__sink_free(s);
    return rc;
}
ROW(sink_columns_twice) { txm_sink *s = txm__sink_new(); OK(txm_sink_columns(s, 0, NULL)); int rc = txm_sink_columns(s, 0, NULL); snprintf(got_msg, sizeof got_msg, "%s", txm_error_last()->message); txm__sink_free(s); return rc; }
ROW(driver_log_null) { txm_driver_log(NULL, TXM_LOG_ERROR, "x"); RET(0); }
ROW(savepoint_name_null) { cr_assert_str_eq(txm_savepoint_name(NULL, 24, 3), ""); char b[4]; cr_assert_str_eq(txm_savepoint_name(b, sizeof b, 3), "txm"); RET(0); }
ROW(late_column_null) { txm_driver_late_column(NULL, "s", "t", "c", "col"); txm_driver_late_column(C->dc, NULL, "t", "c", "col"); txm_driver_late_column(C->dc, "s", "t", "", "col"); txm_driver_late_column(C->dc, "s", "t", "c", NULL); cr_assert(C->nlate == 0); RET(0); }
ROW(url_param_get_null) { cr_assert(txm_url_param_get(NULL, "k") == NULL); RET(0); }
ROW(driver_error_null) { int rc = txm_driver_error(TXM_ESYNTAX, NULL, NULL); cr_assert_str_eq(txm_error_last()->message, txm_strerror(TXM_ESYNTAX)); RET(rc == TXM_ESYNTAX ? 0 : -1); }

/* function | misuse | row | expected code | words the message must contain (NULL: none) */
typedef struct misuse {
    const char *fn;
    const char *misuse;
    int (*row)(void);
    int want;
    const char *w1;
    const char *w2;
} misuse;

static misuse catalogue[] = {
    {"txm_open", "out is NULL", open_out_null, TXM_EINVALID, "txm_open", "out is NULL"},
    {"txm_open", "url is NULL", open_url_null, TXM_EINVALID, "txm_open", "url is NULL"},
    {"txm_open", "options with an unknown version", open_bad_version, TXM_EINVALID, "txm_open", "unknown version 99"},
    {"txm_open", "scheme without a driver", open_no_driver, TXM_ENOTFOUND, "txm_open", "no driver for URL scheme 'nosuch'"},
    {"txm_open", "URL without a scheme", open_no_scheme, TXM_EINVALID, "scheme", NULL},
    {"txm_open_options_init", "options are NULL", open_opts_init_null, TXM_EINVALID, "txm_open_options_init", "NULL"},
    {"txm_open_options_init", "unknown version", open_opts_init_version, TXM_EINVALID, "txm_open_options_init", "unknown version 0"},
    {"txm_close", "NULL connection", close_null, 0, NULL, NULL},
    {"txm_driver_name, txm_capabilities", "NULL connection", name_caps_null, 0, NULL, NULL},
    {"txm_exec", "connection is NULL", exec_conn_null, TXM_EINVALID, "txm_exec", "connection is NULL"},
    {"txm_exec", "sql is NULL", exec_sql_null, TXM_EINVALID, "txm_exec", "sql is NULL"},
    {"txm_exec", "n > 0 but params is NULL", exec_params_null, TXM_EINVALID, "txm_exec", "params is NULL"},
    {"txm_exec", "parameter of an unknown type", exec_bad_type, TXM_EINVALID, "txm_exec", "unknown type 42"},
    {"txm_exec", "text parameter with a length and a NULL pointer", exec_text_null_ptr, TXM_EINVALID, "txm_exec", "NULL pointer"},
    {"txm_exec", "placeholder count differs from n", exec_count_mismatch, TXM_EINVALID, "txm_exec", "2 placeholders but 1 parameter"},
    {"txm_exec", "transaction control SQL (COMMIT)", exec_control_sql, TXM_EMISUSE, "txm_exec", "'COMMIT' refused"},
    {"txm_query", "out is NULL", query_out_null, TXM_EINVALID, "txm_query", "out is NULL"},
    {"txm_query_i64", "out is NULL", query_i64_out_null, TXM_EINVALID, "txm_query_i64", "out is NULL"},
    {"txm_query_i64", "the query returns no row", query_i64_no_row, TXM_ENOTFOUND, "txm_query_i64", "no row"},
    {"txm_query_i64", "the value is NULL", query_i64_null_value, TXM_ENOTFOUND, "txm_query_i64", "value is NULL"},
    {"txm_query_i64_or_null", "out is NULL", query_i64_or_null_out_null, TXM_EINVALID, "txm_query_i64_or_null", "out is NULL"},
    {"txm_query_i64_or_null", "is_null is NULL", query_i64_or_null_is_null_null, TXM_EINVALID, "txm_query_i64_or_null", "is_null is NULL"},
    {"txm_query_i64_or_null", "connection is NULL", query_i64_or_null_conn_null, TXM_EINVALID, "txm_query_i64_or_null", "connection is NULL"},
    {"txm_query_i64_or_null", "the query returns no row", query_i64_or_null_no_row, TXM_ENOTFOUND, "txm_query_i64_or_null", "no row"},
    {"txm_rows_*", "NULL result", rows_null, 0, NULL, NULL},
    {"txm_rows_*", "no current row, column out of range, NULL name", rows_out_of_range, 0, NULL, NULL},
    {"txm_tx_options_init", "options are NULL", tx_opts_init_null, TXM_EINVALID, "txm_tx_options_init", "NULL"},
    {"txm_tx_options_init", "unknown version", tx_opts_init_version, TXM_EINVALID, "txm_tx_options_init", "unknown version 7"},
    {"txm_begin", "out is NULL", begin_out_null, TXM_EINVALID, "txm_begin", "out is NULL"},
    {"txm_begin", "connection is NULL", begin_conn_null, TXM_EINVALID, "txm_begin", "connection is NULL"},
    {"txm_begin", "options with an unknown version", begin_bad_version, TXM_EINVALID, "txm_begin", "unknown version 0"},
    {"txm_begin", "unknown flags", begin_unknown_flags, TXM_EINVALID, "txm_begin", "unknown flags 0x100"},
    {"txm_begin", "unknown isolation level", begin_bad_isolation, TXM_EINVALID, "txm_begin", "unknown isolation level 9"},
    {"txm_begin", "TXM_TX_DURABLE inside a transaction", begin_durable_nested, TXM_EMISUSE, "txm_begin", "durable"},
    {"txm_begin", "TXM_TX_JOIN at the outermost level", begin_join_outermost, TXM_EMISUSE, "txm_begin", "TXM_TX_JOIN"},
    {"txm_begin", "isolation level on a nested level", begin_isolation_nested, TXM_EMISUSE, "txm_begin", "outermost"},
    {"txm_commit", "handle is NULL", commit_null, TXM_EINVALID, "txm_commit", "handle is NULL"},
    {"txm_rollback", "handle is NULL", rollback_null, TXM_EINVALID, "txm_rollback", "handle is NULL"},
    {"txm_commit", "an outer level while an inner one is open", commit_outer_inner_open, TXM_EMISUSE, "txm_commit", "still open"},
    {"txm_rollback", "an outer level while an inner one is open", rollback_outer_inner_open, TXM_EMISUSE, "txm_rollback", "still open"},
    {"txm_commit", "a level that was committed (twice)", commit_twice, TXM_EMISUSE, "txm_commit", "already ended"},
    {"txm_rollback", "a level that was committed", rollback_after_commit, TXM_EMISUSE, "txm_rollback", "already ended"},
    {"txm_commit", "a level that was rolled back", commit_after_rollback, TXM_EMISUSE, "txm_commit", "already ended"},
    {"txm_commit", "a nested handle after its parent ended", commit_inner_after_outer_ended, TXM_EMISUSE, "txm_commit", "already ended"},
    {"txm_require_transaction", "outside a transaction", require_outside, TXM_EMISUSE, "charge_card", "none is open"},
    {"txm_forbid_transaction", "inside a transaction", forbid_inside, TXM_EMISUSE, "send_email", "must not run inside"},
    {"txm_require_transaction", "connection is NULL", require_null, TXM_EINVALID, "txm_require_transaction", "NULL"},
    {"txm_atomic", "connection is NULL", atomic_conn_null, TXM_EINVALID, "txm_atomic", "connection is NULL"},
    {"txm_atomic", "body is NULL", atomic_body_null, TXM_EINVALID, "txm_atomic", "body is NULL"},
    {"txm_atomic", "the body commits its own level", atomic_body_ends_level, TXM_EMISUSE, "txm_atomic", "ended the level"},
    {"txm_atomic", "the body leaves an inner level open", atomic_body_leaves_open, TXM_EMISUSE, "txm_atomic", "left 1 inner level"},
    {"txm_on_commit", "hook function is NULL", on_commit_fn_null, TXM_EINVALID, "txm_on_commit", "hook function is NULL"},
    {"txm_on_commit", "connection is NULL", on_commit_conn_null, TXM_EINVALID, "txm_on_commit", "connection is NULL"},
    {"txm_on_rollback", "hook function is NULL", on_rollback_fn_null, TXM_EINVALID, "txm_on_rollback", "hook function is NULL"},
    {"txm_retry_policy_init", "policy is NULL", retry_policy_init_null, TXM_EINVALID, "txm_retry_policy_init", "NULL"},
    {"txm_retry_policy_init", "unknown version", retry_policy_init_version, TXM_EINVALID, "txm_retry_policy_init", "unknown version 99"},
    {"txm_retry", "body is NULL", retry_body_null, TXM_EINVALID, "txm_retry", "body is NULL"},
    {"txm_retry", "policy with an unknown version", retry_bad_version, TXM_EINVALID, "txm_retry", "unknown version 5"},
    {"txm_retry", "policy with an unknown jitter", retry_bad_jitter, TXM_EINVALID, "txm_retry", "jitter 7 is unknown"},
    {"txm_retry", "max_attempts is 0", retry_zero_attempts, TXM_EINVALID, "txm_retry", "max_attempts"},
    {"txm_retry", "policy's tx options have unknown flags", retry_bad_tx_options, TXM_EINVALID, "txm_begin", "unknown flags 0x80"},
    {"txm_retry", "inside a transaction", retry_inside_tx, TXM_EMISUSE, "txm_retry", "already open"},
    {"txm_batch", "connection is NULL", batch_conn_null, TXM_EINVALID, "txm_batch", "connection is NULL"},
    {"txm_batch", "stmts is NULL with n > 0", batch_stmts_null, TXM_EINVALID, "txm_batch", "stmts is NULL"},
    {"txm_batch", "options with an unknown version", batch_bad_version, TXM_EINVALID, "txm_batch", "unknown version 3"},
    {"txm_batch", "a statement's sql is NULL", batch_sql_null, TXM_EINVALID, "txm_batch: statement 2 of 2", "sql is NULL"},
    {"txm_batch", "transaction control SQL (ROLLBACK)", batch_control_sql, TXM_EMISUSE, "txm_batch: statement 1 of 1", "'ROLLBACK' refused"},
    {"txm_batch", "retry policy with an unknown version", batch_retry_bad_version, TXM_EINVALID, "txm_batch", "unknown version 5"},
    {"txm_batch", "inside a level poisoned by a failed statement", batch_poisoned, TXM_ETX_ABORTED, "txm_batch", "aborted"},
    {"txm_batch_options_init", "options are NULL", batch_options_init_null, TXM_EINVALID, "txm_batch_options_init", "NULL"},
    {"txm_batch_options_init", "unknown version", batch_options_init_version, TXM_EINVALID, "txm_batch_options_init", "unknown version 4"},
    {"txm_quote_ident", "name is NULL", quote_name_null, TXM_EINVALID, "txm_quote_ident", "NULL"},
    {"txm_quote_ident", "empty name", quote_name_empty, TXM_EINVALID, "txm_quote_ident", "empty"},
    {"txm_quote_ident", "name of 64 bytes", quote_name_long, TXM_EINVALID, "txm_quote_ident", "64 bytes"},
    {"txm_quote_ident", "control character in the name", quote_name_control, TXM_EINVALID, "txm_quote_ident", "control character"},
    {"txm_quote_ident", "name is not valid UTF-8", quote_name_utf8, TXM_EINVALID, "txm_quote_ident", "UTF-8"},
    {"txm_quote_ident", "buffer too small", quote_buf_small, TXM_EINVALID, "txm_quote_ident", "too small"},
    {"txm_quote_ident", "buffer is NULL", quote_buf_null, TXM_EINVALID, "txm_quote_ident", "buf is NULL"},
    {"txm_sql_row_lock", "NULL connection, unknown mode", row_lock_null, 0, NULL, NULL},
    {"txm_lock", "key is NULL", lock_key_null, TXM_EINVALID, "txm_lock", "key is NULL"},
    {"txm_lock", "unknown flags", lock_bad_flags, TXM_EINVALID, "txm_lock", "unknown flags 0x40"},
    {"txm_lock", "driver without advisory locks (SQLite)", lock_unsupported, TXM_ENOTSUPPORTED, "txm_lock", "no advisory locks"},
    {"txm_unlock", "connection is NULL", unlock_conn_null, TXM_EINVALID, "txm_unlock", "connection is NULL"},
    {"txm_cancel", "connection is NULL", cancel_null, TXM_EINVALID, "txm_cancel", "connection is NULL"},
    {"txm_reconnect", "connection is NULL", reconnect_null, TXM_EINVALID, "txm_reconnect", "connection is NULL"},
    {"txm_reconnect", "with levels open", reconnect_levels_open, TXM_EMISUSE, "txm_reconnect", "still open"},
    {"txm_resolve_outcome", "out is NULL", resolve_out_null, TXM_EINVALID, "txm_resolve_outcome", "out is NULL"},
    {"txm_resolve_outcome", "driver cannot resolve (SQLite)", resolve_unsupported, TXM_ENOTSUPPORTED, "txm_resolve_outcome", "cannot resolve"},
    {"txm_stats_get, txm_stats_reset", "NULL connection or NULL out", stats_null, 0, NULL, NULL},
    {"txm_test_baseline", "twice", baseline_twice, TXM_EMISUSE, "txm_test_baseline", "already open"},
    {"txm_test_baseline", "inside a transaction", baseline_inside_tx, TXM_EMISUSE, "txm_test_baseline", "already open"},
    {"txm_test_end", "without a baseline", test_end_without_baseline, TXM_EMISUSE, "txm_test_end", "no test baseline"},
    {"txm_test_run_hooks", "connection is NULL", test_run_hooks_null, TXM_EINVALID, "txm_test_run_hooks", "NULL"},
    {"txm_test_hook_count", "connection is NULL", test_hook_count_null, 0, NULL, NULL},
    {"txm_commit (in a hook)", "the level whose on-commit hook is running", hook_commits_own_level, TXM_EMISUSE, "txm_commit", "already ended"},
    {"txm_rollback (in a hook)", "the level whose on-rollback hook is running", hook_rolls_back_own_level, TXM_EMISUSE, "txm_rollback", "already ended"},
    {"txm_commit (in a hook)", "a level that was open before the hook ran", hook_ends_enclosing_level, TXM_EMISUSE, "txm_commit", "a hook cannot end level 1"},
    {"txm_begin + txm_commit (in a hook)", "a hook opens and commits a transaction (allowed)", hook_begin_commit, 0, NULL, NULL},
    {"txm_retry (in a hook)", "at depth 0 (allowed; its hooks are queued)", hook_retry_depth0, 0, NULL, NULL},
    {"txm_retry (in a hook)", "in an on-rollback hook while a level is open", hook_retry_inside_tx, TXM_EMISUSE, "txm_retry", "already open"},
    {"txm_batch (in a hook)", "at depth 0 (allowed: its own transaction)", hook_batch_depth0, 0, NULL, NULL},
    {"txm_batch (in a hook)", "in an on-rollback hook while a level is open (allowed: a nested level)", hook_batch_inside_tx, 0, NULL, NULL},
    {"txm_test_end (in a hook)", "from a hook", hook_test_end, TXM_EMISUSE, "txm_test_end", "from a hook"},
    {"txm_test_baseline (in a hook)", "from a hook", hook_test_baseline, TXM_EMISUSE, "txm_test_baseline", "from a hook"},
    {"txm_reconnect (in a hook)", "while a level is open", hook_reconnect_inside_tx, TXM_EMISUSE, "txm_reconnect", "still open"},
    {"txm_close (in a hook), then any call", "the hook closes its connection, then calls txm_exec", hook_close_then_call, TXM_EMISUSE, "txm_exec", "connection is closing"},
    {"txm_commit", "its on-commit hook leaves a level open", hook_leaves_level_open, TXM_EHOOK, "committed, but 1 of 1", "left 1 transaction level open"},
    {"txm_err_name, txm_strerror, txm_err_is_*", "codes outside the table, NULL error", error_names_out_of_table, 0, NULL, NULL},
    {"txm_error_set", "fmt is NULL", error_set_fmt_null, 0, NULL, NULL},
    {"txm_driver_register", "driver is NULL", register_null, TXM_EINVALID, "txm_driver_register", "driver is NULL"},
    {"txm_driver_register", "ABI version 0", register_version0, TXM_EINVALID, "txm_driver_register", "ABI version 0"},
    {"txm_driver_register", "ABI version newer than the core", register_version_new, TXM_EINVALID, "txm_driver_register", "ABI version 2"},
    {"txm_driver_register", "no name", register_no_name, TXM_EINVALID, "txm_driver_register", "needs a name"},
    {"txm_driver_register", "no scheme", register_no_schemes, TXM_EINVALID, "txm_driver_register", "at least one scheme"},
    {"txm_driver_register", "a required method is NULL (run)", register_no_run, TXM_EINVALID, "txm_driver_register", "lacks a required method"},
    {"txm_driver_register", "conn_size smaller than txm_driver_conn", register_small_conn, TXM_EINVALID, "txm_driver_register", "conn_size 1"},
    {"txm_driver_register", "unknown placeholder style", register_bad_placeholders, TXM_EINVALID, "txm_driver_register", "placeholder style"},
    {"txm_driver_find", "scheme is NULL or unknown", find_null, 0, NULL, NULL},
    {"txm_sink_columns", "sink is NULL", sink_columns_null, TXM_EINVALID, "txm_sink_columns", "sink is NULL"},
    {"txm_sink_columns", "called twice", sink_columns_twice, TXM_EMISUSE, "txm_sink_columns", "already set"},
    {"txm_sink_row", "sink is NULL", sink_row_null, TXM_EINVALID, "txm_sink_row", "sink is NULL"},
    {"txm_sink_row", "before txm_sink_columns", sink_row_before_columns, TXM_EMISUSE, "txm_sink_row", "txm_sink_columns was not called"},
    {"txm_sink_row", "cells is NULL", sink_row_cells_null, TXM_EINVALID, "txm_sink_row", "cells is NULL"},
    {"txm_driver_log", "connection is NULL", driver_log_null, 0, NULL, NULL},
    {"txm_savepoint_name", "buf is NULL; buffer too small", savepoint_name_null, 0, NULL, NULL},
    {"txm_url_param_get", "url is NULL", url_param_get_null, 0, NULL, NULL},
    {"txm_driver_late_column", "connection or a name is NULL or empty", late_column_null, 0, NULL, NULL},
    {"txm_driver_error", "detail and fmt are NULL", driver_error_null, 0, NULL, NULL},
};

#define NROWS (sizeof catalogue / sizeof catalogue[0])

/* Criterion passes parameters by value to a worker process that may be another exec of this
 * binary (other addresses): pass row numbers, not the rows' pointers. */
ParameterizedTestParameters(misuse, catalogue)
{
    static size_t rows[NROWS];
    size_t i;
    for (i = 0; i < NROWS; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, NROWS);
}

ParameterizedTest(size_t *row, misuse, catalogue)
{
    const misuse *m = &catalogue[*row];
    int rc;
    C = check_open("sqlite::memory:", NULL);
    x(C, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
    got_msg[0] = '\0';
    rc = m->row();
    cr_assert(rc == m->want, "%s, %s: expected %s, got %s (%s)", m->fn, m->misuse, txm_err_name(m->want),
              txm_err_name(rc), got_msg);
    if (m->w1)
        cr_assert(strstr(got_msg, m->w1) != NULL, "%s, %s: the message must contain '%s': %s", m->fn, m->misuse,
                  m->w1, got_msg);
    if (m->w2)
        cr_assert(strstr(got_msg, m->w2) != NULL, "%s, %s: the message must contain '%s': %s", m->fn, m->misuse,
                  m->w2, got_msg);
    txm_close(C);
}
