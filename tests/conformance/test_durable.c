/* Durable levels, transaction assertions, options valid only at the outermost level (docs/semantics.md
 * "Levels", "Test baseline"), and the test baseline (txm_test_baseline), modelled on Django's durable=True
 * and TestCase. */
#include "harness.h"

Test(durable, outermost_ok, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *n = conf_begin(conf.c); /* levels under a durable one are ordinary */
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(b, "t_item") == 2);
    txm_close(b);
}

Test(durable, nested_is_misuse_depth_unchanged, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    o.flags = TXM_TX_DURABLE;
    static char dummy;
    txm_tx *d = (txm_tx *)(void *)&dummy;
    CONF_RC(TXM_EMISUSE, txm_begin(&d, conf.c, &o));
    cr_assert(d == NULL, "*out must be NULL on failure");
    cr_assert(txm_depth(conf.c) == 1, "a refused durable level changed the depth to %d", txm_depth(conf.c));
    CONF_OK(conf_item(conf.c, 2)); /* the outer level is not poisoned */
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(conf.c, "t_item") == 2);
}

static int body_count_calls(txm_conn *c, void *payload)
{
    (void)c;
    (*(int *)payload)++;
    return 0;
}

static int body_nested_durable_atomic(txm_conn *c, void *payload)
{
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    o.flags = TXM_TX_DURABLE;
    int *inner_calls = payload;
    return txm_atomic(c, &o, body_count_calls, inner_calls);
}

Test(durable, atomic_durable_inside_atomic_is_misuse, .init = conf_init, .fini = conf_fini)
{
    int inner_calls = 0;
    CONF_RC(TXM_EMISUSE, txm_atomic(conf.c, NULL, body_nested_durable_atomic, &inner_calls));
    cr_assert(inner_calls == 0, "the body of a refused durable block ran");
    cr_assert(txm_depth(conf.c) == 0);
}

Test(durable, require_transaction_names_who, .init = conf_init, .fini = conf_fini)
{
    CONF_RC(TXM_EMISUSE, txm_require_transaction(conf.c, "post_ledger_entry"));
    conf_err e = conf_last_err();
    cr_assert(conf_contains(e.message, "post_ledger_entry"), "message must name the caller: %s", e.message);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(txm_require_transaction(conf.c, "post_ledger_entry"));
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(txm_require_transaction(conf.c, "post_ledger_entry"));
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    CONF_RC(TXM_EMISUSE, txm_require_transaction(conf.c, "post_ledger_entry"));
}

Test(durable, forbid_transaction_names_who, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_forbid_transaction(conf.c, "send_invoice_email"));
    txm_tx *t = conf_begin(conf.c);
    CONF_RC(TXM_EMISUSE, txm_forbid_transaction(conf.c, "send_invoice_email"));
    conf_err e = conf_last_err();
    cr_assert(conf_contains(e.message, "send_invoice_email"), "message must name the caller: %s", e.message);
    cr_assert(txm_depth(conf.c) == 1, "the assertion must not change the transaction");
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    CONF_OK(txm_forbid_transaction(conf.c, "send_invoice_email"));
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

static void assert_nested_option_refused(unsigned flags, txm_isolation iso, const char *what)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    o.flags = flags;
    o.isolation = iso;
    txm_tx *n = NULL;
    int rc = txm_begin(&n, conf.c, &o);
    cr_assert(rc == TXM_EMISUSE, "%s on a nested level: expected TXM_EMISUSE, got %s", what, txm_err_name(rc));
    cr_assert(n == NULL);
    cr_assert(txm_depth(conf.c) == 1);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(conf.c, "t_item") == 2);
}

Test(durable, isolation_on_nested_is_misuse, .init = conf_init, .fini = conf_fini)
{
    assert_nested_option_refused(0, TXM_ISOLATION_SERIALIZABLE, "isolation");
}

Test(durable, read_only_on_nested_is_misuse, .init = conf_init, .fini = conf_fini)
{
    assert_nested_option_refused(TXM_TX_READ_ONLY, TXM_ISOLATION_DEFAULT, "TXM_TX_READ_ONLY");
}

Test(durable, every_isolation_level_at_outermost, .init = conf_init, .fini = conf_fini)
{
    static const txm_isolation levels[] = {TXM_ISOLATION_READ_UNCOMMITTED, TXM_ISOLATION_READ_COMMITTED,
                                           TXM_ISOLATION_REPEATABLE_READ, TXM_ISOLATION_SERIALIZABLE};
    bool cap = conf_has_cap(TXM_CAP_ISOLATION);
    int64_t committed = 0;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        txm_tx_options o = TXM_TX_OPTIONS_INIT;
        o.isolation = levels[i];
        txm_tx *t = NULL;
        int rc = txm_begin(&t, conf.c, &o);
        if (!cap && rc == TXM_ENOTSUPPORTED)
            continue;
        cr_assert(rc == 0, "isolation %d: %s: %s", (int)levels[i], txm_err_name(rc), txm_error_last()->message);
        rc = conf_item(conf.c, 10 + (int64_t)i);
        cr_assert(rc == 0 || (!cap && rc == TXM_ENOTSUPPORTED), "isolation %d: insert %s: %s", (int)levels[i],
                  txm_err_name(rc), txm_error_last()->message);
        if (rc == 0) {
            CONF_OK(txm_commit(t));
            committed++;
        } else {
            CONF_OK(txm_rollback(t));
        }
    }
    if (cap)
        cr_assert(committed == 4, "with TXM_CAP_ISOLATION every level must work");
    cr_assert(conf_count(conf.c, "t_item") == committed);
}

Test(durable, read_only_outermost_allows_reads, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_READ_ONLY);
    cr_assert(conf_count(conf.c, "t_item") == 1);
    CONF_OK(txm_commit(t));
}

/* ---- baseline ---- */
Test(baseline, depth_zero_and_durable_allowed, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    cr_assert(txm_depth(conf.c) == 0, "the baseline must not count in txm_depth (got %d)", txm_depth(conf.c));
    CONF_OK(txm_forbid_transaction(conf.c, "code under test"));
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    cr_assert(txm_depth(conf.c) == 1);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 2, "committed rows are visible inside the baseline");
    CONF_OK(txm_test_end(conf.c));
}

Test(baseline, hooks_captured_and_run_in_order, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_commit(conf.c, "first", NULL));
    CONF_OK(txm_commit(t));
    t = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "second", NULL));
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "third", NULL));
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    cr_assert_str_eq(conf_log, "", "hooks committing into the baseline must be captured, not run");
    cr_assert(txm_test_hook_count(conf.c) == 3, "txm_test_hook_count=%zu", txm_test_hook_count(conf.c));
    CONF_OK(txm_test_run_hooks(conf.c));
    cr_assert_str_eq(conf_log, "first,second,third,");
    cr_assert(txm_test_hook_count(conf.c) == 0);
    CONF_OK(txm_test_end(conf.c));
    conf_assert_freed_once();
}

Test(baseline, end_rolls_back_everything, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_item(conf.c, 100)); /* committed before the baseline: survives */
    CONF_OK(txm_test_baseline(conf.c));
    CONF_OK(conf_item(conf.c, 1)); /* "autocommit" statement inside the baseline */
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 3);
    CONF_OK(txm_test_end(conf.c));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 1, "txm_test_end must undo everything since the baseline");
    cr_assert(conf_count_id(conf.c, "t_item", 100) == 1);
}

Test(baseline, captured_hooks_freed_at_end, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    txm_tx *t = conf_begin(conf.c);
    conf_hook *h = NULL;
    CONF_OK(conf_on_commit(conf.c, "captured", &h));
    CONF_OK(txm_commit(t));
    cr_assert(txm_test_hook_count(conf.c) == 1);
    CONF_OK(txm_test_end(conf.c));
    cr_assert(h->runs == 0, "txm_test_end ran a captured hook");
    conf_assert_freed_once();
}

Test(baseline, rolled_back_level_inside_baseline, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_commit(conf.c, "discarded", NULL));
    CONF_OK(txm_rollback(t));
    cr_assert(txm_test_hook_count(conf.c) == 0, "hooks of a rolled-back level were captured");
    t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 1);
    cr_assert(conf_count_id(conf.c, "t_item", 2) == 1);
    CONF_OK(txm_test_end(conf.c));
    cr_assert(conf_count(conf.c, "t_item") == 0);
    conf_assert_freed_once();
}

Test(baseline, failed_statement_inside_baseline_does_not_poison_it, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(t));
    /* the code under test recovers as it would on a fresh connection */
    t = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 3, "b"));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_uniq") == 1);
    CONF_OK(txm_test_end(conf.c));
    cr_assert(conf_count(conf.c, "t_uniq") == 0);
}

Test(baseline, statement_error_at_depth_zero_does_not_break_baseline, .init = conf_init, .fini = conf_fini)
{
    /* Outside any level the code under test is "in autocommit": an error there must not poison
     * the hidden baseline transaction (on PostgreSQL that needs a savepoint around the statement). */
    CONF_OK(txm_test_baseline(conf.c));
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    CONF_OK(conf_uniq(conf.c, 3, "b"));
    cr_assert(conf_count(conf.c, "t_uniq") == 2);
    CONF_OK(txm_test_end(conf.c));
    cr_assert(conf_count(conf.c, "t_uniq") == 0);
}

Test(durable, isolation_levels_are_honoured, .init = conf_init_shared, .fini = conf_fini)
{
    if (!conf_has_cap(TXM_CAP_ISOLATION))
        CONF_SKIP("driver lacks TXM_CAP_ISOLATION");
    txm_conn *b = conf_open_other();
    /* REPEATABLE READ: a snapshot; a row committed meanwhile stays invisible */
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    o.isolation = TXM_ISOLATION_REPEATABLE_READ;
    txm_tx *t = NULL;
    CONF_OK(txm_begin(&t, conf.c, &o));
    cr_assert(conf_count(conf.c, "t_item") == 0);
    CONF_OK(conf_item(b, 1));
    cr_assert(conf_count(conf.c, "t_item") == 0, "REPEATABLE READ saw a row committed after its snapshot");
    CONF_OK(txm_commit(t));
    /* READ COMMITTED: each statement sees what is committed */
    o.isolation = TXM_ISOLATION_READ_COMMITTED;
    CONF_OK(txm_begin(&t, conf.c, &o));
    cr_assert(conf_count(conf.c, "t_item") == 1);
    CONF_OK(conf_item(b, 2));
    cr_assert(conf_count(conf.c, "t_item") == 2, "READ COMMITTED did not see a committed row");
    CONF_OK(txm_commit(t));
    txm_close(b);
}

Test(baseline, misuse_is_reported, .init = conf_init, .fini = conf_fini)
{
    CONF_RC(TXM_EMISUSE, txm_test_end(conf.c)); /* no baseline */
    txm_tx *t = conf_begin(conf.c);
    CONF_RC(TXM_EMISUSE, txm_test_baseline(conf.c)); /* a transaction is open */
    CONF_OK(txm_rollback(t));
    CONF_OK(txm_test_baseline(conf.c));
    CONF_RC(TXM_EMISUSE, txm_test_baseline(conf.c)); /* already in a baseline */
    CONF_OK(txm_test_end(conf.c));
    cr_assert(txm_depth(conf.c) == 0);
}

Test(baseline, failing_captured_hook_reported_by_run_hooks, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    txm_tx *t = conf_begin(conf.c);
    conf_hook *x = NULL;
    CONF_OK(conf_on_commit(conf.c, "a", NULL));
    CONF_OK(conf_on_commit(conf.c, "x", &x));
    x->fail = TXM_ERROR;
    CONF_OK(conf_on_commit(conf.c, "b", NULL));
    CONF_OK(txm_commit(t));
    CONF_RC(TXM_EHOOK, txm_test_run_hooks(conf.c));
    cr_assert_str_eq(conf_log, "a,x,b,");
    cr_assert(txm_test_hook_count(conf.c) == 0);
    CONF_OK(txm_test_end(conf.c));
    conf_assert_freed_once();
}

Test(baseline, close_frees_captured_hooks_and_rolls_back, .init = conf_init_shared, .fini = conf_fini)
{
    CONF_OK(txm_test_baseline(conf.c));
    txm_tx *t = conf_begin_flags(conf.c, TXM_TX_DURABLE);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *h = NULL;
    CONF_OK(conf_on_commit(conf.c, "captured", &h));
    CONF_OK(txm_commit(t));
    txm_close(conf.c);
    conf.c = NULL;
    cr_assert(h->runs == 0 && h->frees == 1, "captured hook at close: runs %d, frees %d", h->runs, h->frees);
    txm_conn *b = conf_open_other();
    cr_assert(conf_count(b, "t_item") == 0, "closing a connection in a baseline committed its work");
    txm_close(b);
}

/* Durable batch options inside a transaction: txm_batch would be a savepoint whose work the
 * caller may still roll back, so it is refused like a nested durable level (found while writing
 * docs/cookbook.md, "Durable and retried together": it used to run as a savepoint silently). */
Test(durable, batch_durable_inside_transaction_is_misuse, .init = conf_init, .fini = conf_fini)
{
    txm_tx_options d = TXM_TX_OPTIONS_INIT;
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    txm_batch_options by_tx = TXM_BATCH_OPTIONS_INIT, by_policy = TXM_BATCH_OPTIONS_INIT;
    txm_batch_stmt s = {"INSERT INTO t_item (id) VALUES (3)", NULL, 0, NULL, 0, 0};
    d.flags = TXM_TX_DURABLE;
    by_tx.tx = &d;
    p.tx = &d; /* the policy's tx is the fallback for opts->tx */
    by_policy.retry = &p;
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_stats before, after;
    txm_stats_get(conf.c, &before);
    CONF_RC(TXM_EMISUSE, txm_batch(conf.c, &s, 1, &by_tx));
    conf_err e = conf_last_err();
    cr_assert(strstr(e.message, "txm_batch") && strstr(e.message, "durable"), "message: %s", e.message);
    cr_assert(s.status == TXM_ECANCELED, "status %d: the statement must not have run", s.status);
    CONF_RC(TXM_EMISUSE, txm_batch(conf.c, &s, 1, &by_policy));
    txm_stats_get(conf.c, &after);
    cr_assert(after.round_trips == before.round_trips, "a refused batch sent something");
    cr_assert(txm_depth(conf.c) == 1);
    CONF_OK(conf_item(conf.c, 2)); /* the caller's transaction is not poisoned */
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(conf.c, "t_item") == 2);
    /* At depth 0 the same options are a durable batch of its own. */
    CONF_OK(txm_batch(conf.c, &s, 1, &by_tx));
    cr_assert(conf_count(conf.c, "t_item") == 3);
}
