/* Exact costs from txm_stats deltas (docs/semantics.md "What is sent, and when (lazy savepoints)"). Control
 * counts are decided by the core and identical on every driver; round trips are exact only with
 * TXM_CAP_PIPELINE, else bounded and printed. */
#include "harness.h"

#define U(x) ((unsigned long long)(x))

Test(stats, empty_nested_level_costs_nothing, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_stats before = conf_stats(conf.c);
    txm_tx *inner = conf_begin(conf.c);
    txm_tx *inner2 = conf_begin(conf.c);
    CONF_OK(txm_commit(inner2));
    CONF_OK(txm_commit(inner));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.round_trips == 0 && d.statements == 0 && d.control == 0,
              "empty nested levels cost round_trips=%llu statements=%llu control=%llu", U(d.round_trips),
              U(d.statements), U(d.control));
    before = conf_stats(conf.c);
    CONF_OK(txm_commit(outer));
    d = conf_delta(conf.c, &before);
    cr_assert(d.control == 1 && d.commits == 1 && d.releases == 0, "expected only COMMIT: control=%llu releases=%llu",
              U(d.control), U(d.releases));
}

Test(stats, outer_tx_with_one_insert, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    txm_stats d = conf_delta(conf.c, &before);
    conf_print_stats("outer tx + 1 insert", &d);
    cr_assert(d.control == 2, "control=%llu, expected 2 (BEGIN, COMMIT)", U(d.control));
    cr_assert(d.begins == 1 && d.commits == 1, "begins=%llu commits=%llu", U(d.begins), U(d.commits));
    cr_assert(d.statements == 1, "statements=%llu", U(d.statements));
    cr_assert(d.savepoints == 0 && d.releases == 0 && d.rollbacks == 0);
}

Test(stats, nested_release_elided_before_commit, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(inner));
    CONF_OK(txm_commit(outer));
    txm_stats d = conf_delta(conf.c, &before);
    conf_print_stats("outer + nested, 1 insert each", &d);
    cr_assert(d.savepoints == 1, "savepoints=%llu, expected 1", U(d.savepoints));
    cr_assert(d.releases == 0, "releases=%llu: the RELEASE before COMMIT must be elided", U(d.releases));
    cr_assert(d.control == 3, "control=%llu, expected 3 (BEGIN, SAVEPOINT, COMMIT)", U(d.control));
    cr_assert(d.statements == 2);
    cr_assert(conf_count(conf.c, "t_item") == 2);
}

Test(stats, release_sent_when_parent_continues, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(inner));
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(txm_commit(outer));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.releases == 1, "releases=%llu, expected 1", U(d.releases));
    cr_assert(d.control == 4, "control=%llu, expected 4 (BEGIN, SAVEPOINT, RELEASE, COMMIT)", U(d.control));
    cr_assert(conf_count(conf.c, "t_item") == 3);
}

Test(stats, rolled_back_nested_level_sends_rollback_to, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_rollback(inner));
    CONF_OK(txm_commit(outer));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.rollbacks_to == 1, "rollbacks_to=%llu, expected 1", U(d.rollbacks_to));
    cr_assert(d.savepoints == 1 && d.rollbacks == 0);
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

Test(stats, empty_nested_rollback_sends_nothing, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(txm_rollback(inner));
    CONF_OK(txm_commit(outer));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.savepoints == 0 && d.rollbacks_to == 0, "savepoints=%llu rollbacks_to=%llu", U(d.savepoints),
              U(d.rollbacks_to));
    cr_assert(d.control == 2, "control=%llu, expected 2", U(d.control));
    cr_assert(conf_count(conf.c, "t_item") == 1);
}

Test(stats, empty_outer_transaction_sends_nothing, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *t = conf_begin(conf.c);
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    t = conf_begin(conf.c);
    CONF_OK(txm_rollback(t));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.round_trips == 0 && d.control == 0 && d.begins == 0 && d.commits == 0 && d.rollbacks == 0,
              "empty transactions cost round_trips=%llu control=%llu", U(d.round_trips), U(d.control));
}

Test(stats, outermost_rollback_counts, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_rollback(t));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.control == 2 && d.begins == 1 && d.rollbacks == 1 && d.commits == 0,
              "control=%llu begins=%llu rollbacks=%llu commits=%llu", U(d.control), U(d.begins), U(d.rollbacks),
              U(d.commits));
}

Test(stats, join_level_sends_no_control, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *j = conf_begin_flags(conf.c, TXM_TX_JOIN);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(j));
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(txm_commit(t));
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.control == 2 && d.savepoints == 0 && d.releases == 0, "control=%llu savepoints=%llu releases=%llu",
              U(d.control), U(d.savepoints), U(d.releases));
}

Test(stats, statements_outside_transaction_send_no_control, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    cr_assert(conf_count(conf.c, "t_item") == 1);
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.statements == 2 && d.control == 0, "statements=%llu control=%llu", U(d.statements), U(d.control));
    cr_assert(d.round_trips >= 2, "two statements need two round trips, got %llu", U(d.round_trips));
}

Test(stats, tx_savepoints_counts_current_transaction, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    for (int i = 0; i < 3; i++) {
        txm_tx *n = conf_begin(conf.c);
        CONF_OK(conf_item(conf.c, 10 + i));
        CONF_OK(txm_commit(n));
    }
    cr_assert(conf_stats(conf.c).tx_savepoints == 3, "tx_savepoints=%llu, expected 3",
              U(conf_stats(conf.c).tx_savepoints));
    CONF_OK(txm_commit(t));
    cr_assert(conf_stats(conf.c).tx_savepoints == 3, "tx_savepoints must describe the last transaction");
    t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 20));
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    cr_assert(conf_stats(conf.c).tx_savepoints == 1, "tx_savepoints=%llu, expected 1 (reset per transaction)",
              U(conf_stats(conf.c).tx_savepoints));
}

Test(stats, reset_zeroes_counters, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    txm_stats_reset(conf.c);
    txm_stats s = conf_stats(conf.c);
    cr_assert(s.round_trips == 0 && s.statements == 0 && s.control == 0 && s.begins == 0 && s.commits == 0 &&
                  s.savepoints == 0 && s.refused == 0 && s.hooks_run == 0,
              "txm_stats_reset left counters: round_trips=%llu statements=%llu", U(s.round_trips),
              U(s.statements));
}

Test(stats, round_trips_outer_tx_with_one_insert, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_commit(t));
    txm_stats d = conf_delta(conf.c, &before);
    fprintf(stderr, "[%s] outer tx + 1 insert: %llu round trips (pipeline cap: %s)\n", conf.driver,
            U(d.round_trips), conf_has_cap(TXM_CAP_PIPELINE) ? "yes" : "no");
    if (conf_has_cap(TXM_CAP_PIPELINE))
        cr_assert(d.round_trips == 2, "with TXM_CAP_PIPELINE: %llu round trips, expected 2 (BEGIN+INSERT, COMMIT)",
                  U(d.round_trips));
    else
        cr_assert(d.round_trips >= 2 && d.round_trips <= 3, "%llu round trips, expected 2..3", U(d.round_trips));
}

Test(stats, round_trips_nested_levels_add_no_flight, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *l1 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *l2 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    txm_tx *l3 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(txm_commit(l3));
    CONF_OK(txm_commit(l2));
    CONF_OK(txm_commit(l1));
    txm_stats d = conf_delta(conf.c, &before);
    conf_print_stats("3 levels, 1 insert each", &d);
    cr_assert(d.savepoints == 2 && d.releases == 0 && d.control == 4, "savepoints=%llu releases=%llu control=%llu",
              U(d.savepoints), U(d.releases), U(d.control));
    if (conf_has_cap(TXM_CAP_PIPELINE))
        cr_assert(d.round_trips == 4, "with TXM_CAP_PIPELINE: %llu round trips, expected 4 (3 statements + COMMIT)",
                  U(d.round_trips));
    else
        cr_assert(d.round_trips >= 4 && d.round_trips <= 7, "%llu round trips, expected 4..7", U(d.round_trips));
}

Test(stats, round_trips_release_travels_with_next_statement, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(n));
    txm_stats before = conf_stats(conf.c);
    CONF_OK(conf_item(conf.c, 3)); /* RELEASE + INSERT */
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.releases == 1 && d.statements == 1);
    if (conf_has_cap(TXM_CAP_PIPELINE))
        cr_assert(d.round_trips == 1, "with TXM_CAP_PIPELINE: %llu round trips, expected 1", U(d.round_trips));
    else
        cr_assert(d.round_trips >= 1 && d.round_trips <= 2, "%llu round trips, expected 1..2", U(d.round_trips));
    CONF_OK(txm_commit(t));
}
