/* Poisoning (docs/semantics.md "Poisoning (aborted transactions)"): a statement error marks the innermost
 * savepoint-owning level failed on every driver, as PostgreSQL does natively ("current transaction is
 * aborted"); later statements are refused without a round trip, carrying the original error as cause. */
#include "harness.h"

Test(poison, statement_after_error_refused_with_cause, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    txm_tx *inner = conf_begin(conf.c);
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    conf_err orig = conf_last_err();
    conf_assert_unique_names(orig.constraint_name, orig.table_name, orig.column_name);

    txm_stats before = conf_stats(conf.c);
    CONF_RC(TXM_ETX_ABORTED, conf_uniq(conf.c, 3, "c"));
    txm_stats d = conf_delta(conf.c, &before);
    conf_err e = conf_last_err();
    cr_assert(e.has_cause, "TXM_ETX_ABORTED must carry the original error as cause");
    cr_assert(e.cause_code == TXM_EUNIQUE, "cause is %s, expected TXM_EUNIQUE", txm_err_name(e.cause_code));
    conf_assert_unique_names(e.cause_constraint, e.cause_table, e.cause_column);
    cr_assert(e.message[0] != '\0');
    cr_assert(d.refused == 1, "stats.refused grew by %llu, expected 1", (unsigned long long)d.refused);
    cr_assert(d.round_trips == 0, "a refused statement made %llu round trips", (unsigned long long)d.round_trips);
    cr_assert(d.statements == 0 && d.control == 0, "a refused statement sent something");

    CONF_OK(txm_rollback(inner));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(conf.c, "t_uniq") == 1);
}

Test(poison, every_refusal_carries_the_cause, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_RC(TXM_ESYNTAX, txm_exec(conf.c, "INSERT INTO t_item (id, nme) VALUESS (2)", NULL, 0, NULL));
    txm_stats before = conf_stats(conf.c);
    for (int i = 0; i < 3; i++) {
        CONF_RC(TXM_ETX_ABORTED, conf_item(conf.c, 10 + i));
        conf_err e = conf_last_err();
        cr_assert(e.has_cause && e.cause_code == TXM_ESYNTAX, "refusal %d: cause %s, expected TXM_ESYNTAX", i,
                  e.has_cause ? txm_err_name(e.cause_code) : "none");
    }
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.refused == 3 && d.round_trips == 0, "refused=%llu round_trips=%llu",
              (unsigned long long)d.refused, (unsigned long long)d.round_trips);
    CONF_OK(txm_rollback(t));
}

Test(poison, query_refused_in_failed_level, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    static char dummy;
    txm_rows *rows = (txm_rows *)(void *)&dummy;
    CONF_RC(TXM_ETX_ABORTED, txm_query(&rows, conf.c, "SELECT id FROM t_uniq", NULL, 0));
    cr_assert(rows == NULL, "*out must be NULL on failure");
    int64_t v = 7;
    CONF_RC(TXM_ETX_ABORTED, txm_query_i64(conf.c, &v, "SELECT COUNT(*) FROM t_uniq", NULL, 0));
    CONF_OK(txm_rollback(t));
}

Test(poison, commit_of_failed_outermost_rolls_back, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(t));
    conf_err e = conf_last_err();
    cr_assert(e.has_cause && e.cause_code == TXM_EUNIQUE, "commit refusal: cause %s",
              e.has_cause ? txm_err_name(e.cause_code) : "none");
    cr_assert(txm_depth(conf.c) == 0, "a failed commit must end the level");
    cr_assert(conf_count(b, "t_item") == 0, "rows of a failed transaction were committed");
    cr_assert(conf_count(b, "t_uniq") == 0);
    /* The connection is usable again. */
    CONF_OK(conf_item(conf.c, 2));
    cr_assert(conf_count(b, "t_item") == 1);
    txm_close(b);
}

Test(poison, commit_of_failed_nested_level_rolls_it_back, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(inner));
    cr_assert(txm_depth(conf.c) == 1);
    cr_assert(conf_count_id(conf.c, "t_item", 2) == 0, "the failed level's row survived its commit");
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_item") == 2, "expected items 1 and 3");
    cr_assert(conf_count_id(b, "t_item", 2) == 0);
    cr_assert(conf_count(b, "t_uniq") == 1);
    txm_close(b);
}

Test(poison, parent_continues_after_failed_child_rolled_back, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    txm_tx *inner = conf_begin(conf.c);
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    CONF_OK(txm_rollback(inner));
    CONF_OK(conf_uniq(conf.c, 3, "b"));
    cr_assert(conf_count(conf.c, "t_uniq") == 2);
    CONF_OK(txm_commit(outer));
    cr_assert(conf_count(b, "t_uniq") == 2);
    txm_close(b);
}

Test(poison, failed_level_poisons_levels_opened_under_it, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    txm_tx *inner = NULL;
    int rc = txm_begin(&inner, conf.c, NULL);
    cr_assert(rc == 0 || rc == TXM_ETX_ABORTED, "txm_begin under a failed level: %s", txm_err_name(rc));
    if (rc == 0) {
        CONF_RC(TXM_ETX_ABORTED, conf_item(conf.c, 1));
        int rc2 = txm_commit(inner);
        cr_assert(rc2 == TXM_ETX_ABORTED, "commit of a level under a failed level: %s", txm_err_name(rc2));
    }
    CONF_RC(TXM_ETX_ABORTED, txm_commit(outer));
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0);
}

Test(poison, rollback_of_failed_transaction_recovers, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_RC(TXM_ESYNTAX, txm_exec(conf.c, "SELEC 1", NULL, 0, NULL));
    CONF_OK(txm_rollback(t));
    cr_assert(txm_depth(conf.c) == 0);
    t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

Test(poison, error_outside_transaction_poisons_nothing, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    cr_assert(txm_depth(conf.c) == 0);
    txm_stats before = conf_stats(conf.c);
    CONF_OK(conf_uniq(conf.c, 3, "b"));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.refused == 0);
    cr_assert(conf_count(conf.c, "t_uniq") == 2);
    /* and a transaction opened afterwards is clean */
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 4, "c"));
    CONF_OK(txm_commit(t));
    cr_assert(conf_count(conf.c, "t_uniq") == 3);
}

Test(poison, lock_timeout_in_nested_level_recovered_by_parent, .init = conf_init_shared, .fini = conf_fini,
     .timeout = 60)
{
    if (conf_is_embedded())
        CONF_SKIP("%s: an embedded engine takes its write lock at BEGIN (SQLite: BEGIN IMMEDIATE), so a nested "
                  "level cannot wait for a row lock", conf.driver);
    txm_conn *blocker = conf_open_other();
    txm_conn *a = conf_open_short_wait();
    txm_tx *held = conf_begin(blocker);
    CONF_OK(txm_exec(blocker, "UPDATE t_counter SET n = n + 1 WHERE id = 1", NULL, 0, NULL));
    txm_tx *outer = conf_begin(a);
    CONF_OK(conf_item(a, 1));
    txm_tx *inner = conf_begin(a);
    CONF_OK(conf_item(a, 2));
    CONF_RC(TXM_ELOCK_TIMEOUT, txm_exec(a, "UPDATE t_counter SET n = n + 10 WHERE id = 1", NULL, 0, NULL));
    cr_assert(!(txm_error_last()->flags & TXM_ERRF_TX_LOST), "a lock timeout does not lose the transaction here");
    CONF_RC(TXM_ETX_ABORTED, conf_item(a, 3));
    CONF_OK(txm_rollback(inner));
    CONF_OK(conf_item(a, 4));
    CONF_OK(txm_commit(outer));
    CONF_OK(txm_rollback(held));
    cr_assert(conf_count(conf.c, "t_item") == 2, "expected items 1 and 4");
    cr_assert(conf_count_id(conf.c, "t_item", 4) == 1 && conf_count_id(conf.c, "t_item", 2) == 0);
    cr_assert(conf_counter(conf.c, 1) == 100);
    txm_close(a);
    txm_close(blocker);
}
