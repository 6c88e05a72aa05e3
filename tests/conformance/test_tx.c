/* Nesting: commit/rollback at 1-3 levels, join levels, ending levels out of order, txm_atomic.
 * Adapted from psycopg tests/test_transaction.py (nested scopes, out-of-order exit), Django
 * tests/transactions/tests.py (atomic, savepoint=False) and Laravel's transaction manager tests. */
#include "harness.h"

Test(tx, commit_outermost_visible_to_other_connection, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_item(conf.c, 2));
    cr_assert(conf_count(conf.c, "t_item") == 2, "the transaction must see its own rows");
    cr_assert(conf_count(b, "t_item") == 0, "uncommitted rows visible to another connection");
    CONF_OK(txm_commit(t));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(b, "t_item") == 2, "committed rows not visible to another connection");
    txm_close(b);
}

Test(tx, rollback_outermost_discards, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_rollback(t));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0, "rolled-back row still visible on its connection");
    cr_assert(conf_count(b, "t_item") == 0, "rolled-back row visible to another connection");
    txm_close(b);
}

Test(tx, nested_two_levels_commit, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(inner));
    cr_assert(conf_count(b, "t_item") == 0, "inner commit must not commit to the server");
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_item") == 2);
    txm_close(b);
}

Test(tx, nested_three_levels_commit, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *l1 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *l2 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    txm_tx *l3 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 3));
    cr_assert(txm_depth(conf.c) == 3);
    CONF_OK(txm_commit(l3));
    CONF_OK(txm_commit(l2));
    cr_assert(conf_count(b, "t_item") == 0);
    CONF_OK(txm_commit(l1));
    cr_assert(conf_count(b, "t_item") == 3);
    txm_close(b);
}

Test(tx, inner_rollback_outer_commits_own_rows, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_rollback(inner));
    cr_assert(conf_count_id(conf.c, "t_item", 2) == 0, "row of the rolled-back level still visible");
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count_id(b, "t_item", 1) == 1);
    cr_assert(conf_count_id(b, "t_item", 2) == 0);
    cr_assert(conf_count_id(b, "t_item", 3) == 1);
    txm_close(b);
}

Test(tx, outer_rollback_discards_committed_inner, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(inner));
    CONF_OK(txm_rollback(outer));
    cr_assert(conf_count(conf.c, "t_item") == 0);
    cr_assert(conf_count(b, "t_item") == 0);
    txm_close(b);
}

Test(tx, middle_rollback_discards_its_committed_child, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *l1 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *l2 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    txm_tx *l3 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(txm_commit(l3));
    CONF_OK(txm_rollback(l2));
    cr_assert(txm_depth(conf.c) == 1);
    CONF_OK(txm_commit(l1));
    cr_assert(conf_count(b, "t_item") == 1);
    cr_assert(conf_count_id(b, "t_item", 1) == 1);
    txm_close(b);
}

Test(tx, inner_failure_handled_by_outer, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 2, "b"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 3, "a"));
    CONF_OK(txm_rollback(inner));
    CONF_OK(conf_uniq(conf.c, 4, "c"));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_uniq") == 2, "expected rows 1 and 4 only");
    cr_assert(conf_count_id(b, "t_uniq", 1) == 1);
    cr_assert(conf_count_id(b, "t_uniq", 2) == 0);
    cr_assert(conf_count_id(b, "t_uniq", 4) == 1);
    txm_close(b);
}

Test(tx, depth_tracks_levels, .init = conf_init, .fini = conf_fini)
{
    cr_assert(txm_depth(conf.c) == 0);
    txm_tx *l1 = conf_begin(conf.c);
    cr_assert(txm_depth(conf.c) == 1);
    txm_tx *l2 = conf_begin(conf.c);
    cr_assert(txm_depth(conf.c) == 2);
    txm_tx *l3 = conf_begin(conf.c);
    cr_assert(txm_depth(conf.c) == 3);
    CONF_OK(txm_rollback(l3));
    cr_assert(txm_depth(conf.c) == 2);
    CONF_OK(txm_commit(l2));
    cr_assert(txm_depth(conf.c) == 1);
    CONF_OK(txm_commit(l1));
    cr_assert(txm_depth(conf.c) == 0);
}

Test(tx, read_your_writes_at_every_level, .init = conf_init, .fini = conf_fini)
{
    txm_tx *l1 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *l2 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    cr_assert(conf_count(conf.c, "t_item") == 2);
    txm_tx *l3 = conf_begin(conf.c);
    CONF_OK(txm_exec(conf.c, "DELETE FROM t_item WHERE id = 1", NULL, 0, NULL));
    cr_assert(conf_count(conf.c, "t_item") == 1);
    CONF_OK(txm_rollback(l3));
    cr_assert(conf_count(conf.c, "t_item") == 2, "rollback of level 3 must restore row 1");
    CONF_OK(txm_commit(l2));
    CONF_OK(txm_commit(l1));
    cr_assert(conf_count(conf.c, "t_item") == 2);
}

Test(tx, savepoint_level_reusable_after_rollback, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    for (int i = 0; i < 4; i++) {
        txm_tx *inner = conf_begin(conf.c);
        CONF_OK(conf_item(conf.c, 10 + i));
        if (i % 2 == 0)
            CONF_OK(txm_rollback(inner));
        else
            CONF_OK(txm_commit(inner));
    }
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_item") == 3, "expected rows 1, 11, 13");
    cr_assert(conf_count_id(b, "t_item", 10) == 0);
    cr_assert(conf_count_id(b, "t_item", 11) == 1);
    cr_assert(conf_count_id(b, "t_item", 12) == 0);
    cr_assert(conf_count_id(b, "t_item", 13) == 1);
    txm_close(b);
}

Test(tx, first_statement_in_inner_level_starts_transaction, .init = conf_init_shared, .fini = conf_fini)
{
    /* The outer level sent nothing; the inner level's statement must send BEGIN and SAVEPOINT
     * first, so that rolling the inner level back keeps the (empty) outer transaction intact. */
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_rollback(inner));
    CONF_OK(conf_item(conf.c, 2));
    cr_assert(conf_count(b, "t_item") == 0, "row 2 must still be uncommitted: the outer level is open");
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_item") == 1);
    cr_assert(conf_count_id(b, "t_item", 2) == 1);
    txm_close(b);
}

Test(tx, out_of_order_commit_is_misuse, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_RC(TXM_EMISUSE, txm_commit(outer));
    cr_assert(txm_depth(conf.c) == 2, "a refused out-of-order commit must change nothing");
    cr_assert(conf_count(b, "t_item") == 0, "a refused out-of-order commit committed data");
    CONF_OK(conf_item(conf.c, 3)); /* the inner level is still usable, not poisoned */
    CONF_OK(txm_commit(inner));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_item") == 3);
    txm_close(b);
}

Test(tx, out_of_order_rollback_is_misuse, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *middle = conf_begin(conf.c);
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_RC(TXM_EMISUSE, txm_rollback(outer));
    CONF_RC(TXM_EMISUSE, txm_rollback(middle));
    cr_assert(txm_depth(conf.c) == 3, "a refused out-of-order rollback must change nothing");
    cr_assert(conf_count(conf.c, "t_item") == 2, "a refused out-of-order rollback undid rows");
    CONF_OK(txm_commit(inner));
    CONF_OK(txm_commit(middle));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_item") == 2);
    txm_close(b);
}

Test(tx, double_commit_is_misuse, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(inner));
    CONF_RC(TXM_EMISUSE, txm_commit(inner));
    cr_assert(txm_depth(conf.c) == 1, "a second commit of a nested handle ended another level");
    CONF_OK(txm_commit(outer));
    CONF_RC(TXM_EMISUSE, txm_commit(outer));
    cr_assert(conf_count(conf.c, "t_item") == 2);
}

Test(tx, rollback_after_commit_is_misuse, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(outer));
    CONF_RC(TXM_EMISUSE, txm_rollback(outer));
    cr_assert(conf_count(conf.c, "t_item") == 1, "rollback of an ended handle undid a commit");
}

Test(tx, join_commit_merges_into_parent, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_stats before = conf_stats(conf.c);
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *j = conf_begin_flags(conf.c, TXM_TX_JOIN);
    cr_assert(txm_depth(conf.c) == 2, "a join level is a level for txm_depth");
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(j));
    CONF_OK(txm_commit(outer));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.savepoints == 0, "a join level must not send SAVEPOINT (sent %llu)", (unsigned long long)d.savepoints);
    cr_assert(conf_count(b, "t_item") == 2);
    txm_close(b);
}

Test(tx, join_failure_dooms_nearest_savepoint_owner, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    txm_tx *owner = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 2, "b"));
    txm_tx *j = conf_begin_flags(conf.c, TXM_TX_JOIN);
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 3, "a"));
    CONF_RC(TXM_ETX_ABORTED, conf_uniq(conf.c, 4, "d"));
    CONF_OK(txm_rollback(j));
    /* The owner (a savepoint level) is doomed: its statements and its commit are refused. */
    CONF_RC(TXM_ETX_ABORTED, conf_uniq(conf.c, 5, "e"));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(owner));
    cr_assert(txm_depth(conf.c) == 1);
    /* The outermost level was not doomed: it continues and commits its own rows. */
    CONF_OK(conf_uniq(conf.c, 6, "f"));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_uniq") == 2, "expected rows 1 and 6 only");
    cr_assert(conf_count_id(b, "t_uniq", 2) == 0, "row of the doomed level was committed");
    cr_assert(conf_count_id(b, "t_uniq", 6) == 1);
    txm_close(b);
}

Test(tx, join_rollback_dooms_parent, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *j = conf_begin_flags(conf.c, TXM_TX_JOIN);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_rollback(j));
    CONF_RC(TXM_ETX_ABORTED, conf_item(conf.c, 3));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(outer));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(b, "t_item") == 0, "a doomed transaction committed rows");
    txm_close(b);
}

Test(tx, join_at_outermost_is_misuse, .init = conf_init, .fini = conf_fini)
{
    txm_tx_options o = TXM_TX_OPTIONS_INIT;
    o.flags = TXM_TX_JOIN;
    txm_tx *t = (txm_tx *)&o; /* must be reset to NULL on failure */
    CONF_RC(TXM_EMISUSE, txm_begin(&t, conf.c, &o));
    cr_assert(t == NULL, "*out must be NULL on failure");
    cr_assert(txm_depth(conf.c) == 0);
    CONF_OK(conf_item(conf.c, 1)); /* still in autocommit */
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

/* ---- txm_atomic ---- */
static int body_insert_1(txm_conn *c, void *payload)
{
    (void)payload;
    return conf_item(c, 1);
}

static int body_insert_then_fail(txm_conn *c, void *payload)
{
    int *calls = payload;
    (*calls)++;
    int rc = conf_item(c, 1);
    if (rc)
        return rc;
    return 42;
}

static int body_leaves_level_open(txm_conn *c, void *payload)
{
    txm_tx **leaked = payload;
    int rc = conf_item(c, 1);
    if (rc)
        return rc;
    rc = txm_begin(leaked, c, NULL);
    if (rc)
        return rc;
    return conf_item(c, 2);
}

static int body_duplicate(txm_conn *c, void *payload)
{
    (void)payload;
    int rc = conf_uniq(c, 1, "a");
    if (rc)
        return rc;
    return conf_uniq(c, 2, "a");
}

static int body_outer_with_failing_inner(txm_conn *c, void *payload)
{
    int *inner_rc = payload;
    int rc = conf_item(c, 1);
    if (rc)
        return rc;
    *inner_rc = txm_atomic(c, NULL, body_duplicate, NULL);
    return conf_item(c, 2);
}

Test(atomic, commits_when_body_returns_zero, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    CONF_OK(txm_atomic(conf.c, NULL, body_insert_1, NULL));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(b, "t_item") == 1);
    txm_close(b);
}

Test(atomic, rolls_back_and_returns_body_code, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    int calls = 0;
    int rc = txm_atomic(conf.c, NULL, body_insert_then_fail, &calls);
    cr_assert(rc == 42, "txm_atomic must return the body's result (42), got %d", rc);
    cr_assert(calls == 1);
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0);
    cr_assert(conf_count(b, "t_item") == 0);
    txm_close(b);
}

Test(atomic, body_leaving_level_open_is_misuse_and_rolls_back, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *leaked = NULL;
    CONF_RC(TXM_EMISUSE, txm_atomic(conf.c, NULL, body_leaves_level_open, &leaked));
    cr_assert(leaked != NULL, "the body did open a level");
    cr_assert(txm_depth(conf.c) == 0, "every level must be closed, depth %d", txm_depth(conf.c));
    cr_assert(conf_count(conf.c, "t_item") == 0, "rows of the misused atomic block were kept");
    cr_assert(conf_count(b, "t_item") == 0);
    txm_close(b);
}

Test(atomic, statement_error_in_body_is_returned, .init = conf_init, .fini = conf_fini)
{
    CONF_RC(TXM_EUNIQUE, txm_atomic(conf.c, NULL, body_duplicate, NULL));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_uniq") == 0, "the first insert of a failed block was kept");
}

Test(atomic, nested_atomic_failure_handled_by_outer, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    int inner_rc = 0;
    CONF_OK(txm_atomic(conf.c, NULL, body_outer_with_failing_inner, &inner_rc));
    cr_assert(inner_rc == TXM_EUNIQUE, "inner block: expected TXM_EUNIQUE, got %s", txm_err_name(inner_rc));
    cr_assert(conf_count(b, "t_item") == 2, "the outer block's rows must be committed");
    cr_assert(conf_count(b, "t_uniq") == 0, "the failed inner block's row was committed");
    txm_close(b);
}

Test(tx, deep_nesting_hundred_levels, .init = conf_init_shared, .fini = conf_fini)
{
    enum { D = 100 };
    txm_tx *lv[D + 1];
    for (int i = 1; i <= D; i++) {
        lv[i] = conf_begin(conf.c);
        CONF_OK(conf_item(conf.c, i));
    }
    cr_assert(txm_depth(conf.c) == D);
    for (int i = D; i > 50; i--)
        CONF_OK(txm_commit(lv[i]));
    CONF_OK(txm_rollback(lv[50])); /* undoes 50..100 */
    for (int i = 49; i > 25; i--) {
        CONF_OK(txm_commit(lv[i]));
        CONF_OK(conf_item(conf.c, 1000 + i)); /* a statement in the parent after each release */
    }
    for (int i = 25; i >= 1; i--)
        CONF_OK(txm_commit(lv[i]));
    cr_assert(txm_depth(conf.c) == 0);
    txm_conn *b = conf_open_other();
    cr_assert(conf_count(b, "t_item") == 49 + 24, "rows: %lld, expected 73", (long long)conf_count(b, "t_item"));
    cr_assert(conf_count_id(b, "t_item", 50) == 0 && conf_count_id(b, "t_item", 100) == 0);
    cr_assert(conf_count_id(b, "t_item", 1) == 1 && conf_count_id(b, "t_item", 49) == 1);
    txm_close(b);
}
