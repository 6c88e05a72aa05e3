/* On-commit / on-rollback hooks (docs/semantics.md "Hooks"). Adapted from Django
 * tests/transaction_hooks/tests.py (order, discarded with savepoints, robust hooks, hooks in hooks),
 * Sequel's after_commit / after_rollback specs and Laravel's callbacks-after-outermost-commit tests. Every
 * hook appends its name and ',' to conf_log, so the order can be asserted. */
#include "harness.h"

Test(hooks, run_in_registration_order_after_outermost_commit, .init = conf_init, .fini = conf_fini)
{
    txm_stats before = conf_stats(conf.c);
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_commit(conf.c, "a", NULL));
    txm_tx *l2 = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "b", NULL));
    txm_tx *l3 = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(conf_on_commit(conf.c, "c", NULL));
    CONF_OK(txm_commit(l3));
    CONF_OK(txm_commit(l2));
    cr_assert_str_eq(conf_log, "", "hooks ran before the outermost commit: %s", conf_log);
    CONF_OK(conf_on_commit(conf.c, "d", NULL));
    CONF_OK(txm_commit(outer));
    cr_assert_str_eq(conf_log, "a,b,c,d,");
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.hooks_run == 4 && d.hooks_failed == 0, "hooks_run=%llu hooks_failed=%llu",
              (unsigned long long)d.hooks_run, (unsigned long long)d.hooks_failed);
    conf_assert_freed_once();
}

Test(hooks, not_run_at_inner_commit, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *h = NULL;
    CONF_OK(conf_on_commit(conf.c, "inner", &h));
    CONF_OK(txm_commit(inner));
    cr_assert(h->runs == 0 && h->frees == 0, "inner commit ran (%d) or freed (%d) the hook", h->runs, h->frees);
    CONF_OK(txm_commit(outer));
    cr_assert(h->runs == 1);
    conf_assert_freed_once();
}

Test(hooks, discarded_when_savepoint_rolls_back, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_commit(conf.c, "outer", NULL));
    txm_tx *a = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(conf_on_commit(conf.c, "a", NULL));
    txm_tx *b = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 3));
    CONF_OK(conf_on_commit(conf.c, "b-released-into-a", NULL));
    CONF_OK(txm_commit(b));
    CONF_OK(txm_rollback(a));
    CONF_OK(conf_on_commit(conf.c, "after", NULL));
    CONF_OK(txm_commit(outer));
    cr_assert_str_eq(conf_log, "outer,after,", "hooks of the rolled-back level (and its child) ran: %s", conf_log);
    conf_assert_freed_once();
}

Test(hooks, discarded_when_outermost_rolls_back, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_commit(conf.c, "outer", NULL));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "inner", NULL));
    CONF_OK(txm_commit(inner));
    CONF_OK(txm_rollback(outer));
    cr_assert_str_eq(conf_log, "");
    conf_assert_freed_once();
    /* the next transaction does not inherit them */
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "next", NULL));
    CONF_OK(txm_commit(t));
    cr_assert_str_eq(conf_log, "next,");
}

Test(hooks, on_rollback_runs_at_level_rollback_including_released_children, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *ro = NULL, *ra = NULL, *rb = NULL;
    CONF_OK(conf_on_rollback(conf.c, "ro", &ro));
    txm_tx *a = conf_begin(conf.c);
    CONF_OK(conf_on_rollback(conf.c, "ra", &ra));
    txm_tx *b = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(conf_on_rollback(conf.c, "rb", &rb));
    CONF_OK(txm_commit(b));
    cr_assert(rb->runs == 0, "an on-rollback hook ran at a commit");
    CONF_OK(txm_rollback(a));
    cr_assert(ra->runs == 1, "on-rollback hook of the rolled-back level did not run at its rollback");
    cr_assert(rb->runs == 1, "on-rollback hook of a child released into the level did not run");
    cr_assert(ro->runs == 0, "the parent's on-rollback hook ran although the parent is still open");
    cr_assert(strlen(conf_log) == strlen("ra,rb,"), "log: %s", conf_log);
    CONF_OK(txm_commit(outer));
    cr_assert(ro->runs == 0, "on-rollback hook ran at commit");
    cr_assert(ra->runs == 1 && rb->runs == 1, "hooks ran twice");
    conf_assert_freed_once();
}

Test(hooks, on_rollback_runs_at_outermost_rollback, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *r = NULL, *c = NULL;
    CONF_OK(conf_on_rollback(conf.c, "r", &r));
    CONF_OK(conf_on_commit(conf.c, "c", &c));
    CONF_OK(txm_rollback(outer));
    cr_assert(r->runs == 1 && c->runs == 0, "r ran %d times, c ran %d times", r->runs, c->runs);
    conf_assert_freed_once();
}

Test(hooks, on_rollback_not_run_on_commit, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_rollback(conf.c, "r-outer", NULL));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_on_rollback(conf.c, "r-inner", NULL));
    CONF_OK(txm_commit(inner));
    CONF_OK(txm_commit(outer));
    cr_assert_str_eq(conf_log, "", "on-rollback hooks ran at commit: %s", conf_log);
    conf_assert_freed_once();
}

Test(hooks, robust_failing_hook_still_commits, .init = conf_init_shared, .fini = conf_fini)
{
    txm_conn *b = conf_open_other();
    txm_stats before = conf_stats(conf.c);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *x = NULL, *y = NULL;
    CONF_OK(conf_on_commit(conf.c, "a", NULL));
    CONF_OK(conf_on_commit(conf.c, "x", &x));
    x->fail = TXM_ERROR;
    CONF_OK(conf_on_commit(conf.c, "b", NULL));
    CONF_OK(conf_on_commit(conf.c, "y", &y));
    y->fail = TXM_EDATA;
    CONF_RC(TXM_EHOOK, txm_commit(t));
    conf_err e = conf_last_err();
    cr_assert_str_eq(conf_log, "a,x,b,y,", "a failing hook must not stop the others");
    cr_assert(conf_contains(e.message, "2"), "the message must count the failed hooks: %s", e.message);
    cr_assert(conf_contains(e.message, "hook x failed on purpose"), "the message must quote the first failure: %s",
              e.message);
    cr_assert(e.has_cause, "TXM_EHOOK must carry the first hook's error as cause");
    cr_assert(e.cause_code == TXM_ERROR, "cause %s, expected the hook's TXM_ERROR", txm_err_name(e.cause_code));
    cr_assert(conf_contains(e.cause_message, "hook x failed on purpose"), "cause message: %s", e.cause_message);
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count(b, "t_item") == 1, "TXM_EHOOK means the data is committed");
    txm_stats d = conf_delta(conf.c, &before);
    cr_assert(d.hooks_failed == 2, "hooks_failed=%llu", (unsigned long long)d.hooks_failed);
    conf_assert_freed_once();
    txm_close(b);
}

Test(hooks, failed_hooks_are_not_run_again, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    conf_hook *x = NULL;
    CONF_OK(conf_on_commit(conf.c, "x", &x));
    x->fail = TXM_ERROR;
    CONF_RC(TXM_EHOOK, txm_commit(t));
    t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_on_commit(conf.c, "n", NULL));
    CONF_OK(txm_commit(t));
    cr_assert_str_eq(conf_log, "x,n,");
    conf_assert_freed_once();
}

static int reenter(txm_conn *c, conf_hook *h)
{
    (void)h;
    txm_tx *t = NULL;
    int rc = txm_begin(&t, c, NULL);
    if (rc)
        return rc;
    rc = conf_item(c, 99);
    if (rc == 0)
        rc = conf_on_commit(c, "h2", NULL);
    if (rc) {
        txm_rollback(t);
        return rc;
    }
    return txm_commit(t);
}

Test(hooks, reentrant_hook_opens_transaction, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *h1 = NULL;
    CONF_OK(conf_on_commit(conf.c, "h1", &h1));
    h1->action = reenter;
    CONF_OK(txm_commit(t));
    cr_assert_str_eq(conf_log, "h1,h2,");
    cr_assert(h1->depth_seen == 0, "hooks run with the connection idle (depth %d)", h1->depth_seen);
    cr_assert(txm_depth(conf.c) == 0);
    cr_assert(conf_count_id(conf.c, "t_item", 99) == 1, "the hook's transaction was not committed");
    conf_assert_freed_once();
}

static int count_items(txm_conn *c, conf_hook *h)
{
    int64_t *out = h->arg;
    return txm_query_i64(c, out, "SELECT COUNT(*) FROM t_item", NULL, 0);
}

Test(hooks, hook_sees_committed_data, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_item(conf.c, 2));
    conf_hook *h = NULL;
    int64_t seen = -1;
    CONF_OK(conf_on_commit(conf.c, "count", &h));
    h->action = count_items;
    h->arg = &seen;
    CONF_OK(txm_commit(t));
    cr_assert(seen == 2, "the hook saw %lld rows", (long long)seen);
    cr_assert(h->depth_seen == 0);
}

Test(hooks, empty_transaction_runs_hooks, .init = conf_init, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "e", NULL));
    cr_assert_str_eq(conf_log, "");
    CONF_OK(txm_commit(t));
    cr_assert_str_eq(conf_log, "e,");
    conf_assert_freed_once();
}

Test(hooks, runs_immediately_outside_transaction, .init = conf_init, .fini = conf_fini)
{
    conf_hook *h = NULL;
    CONF_OK(conf_on_commit(conf.c, "now", &h));
    cr_assert_str_eq(conf_log, "now,");
    cr_assert(h->depth_seen == 0);
    conf_assert_freed_once();
}

Test(hooks, failing_hook_outside_transaction_returns_ehook, .init = conf_init, .fini = conf_fini)
{
    conf_hook *h = conf_hook_new("bad");
    h->fail = TXM_EDATA;
    CONF_RC(TXM_EHOOK, txm_on_commit(conf.c, conf_hook_fn, h, conf_hook_free));
    conf_err e = conf_last_err();
    cr_assert(h->runs == 1);
    cr_assert(e.has_cause && e.cause_code == TXM_EDATA, "cause %s", e.has_cause ? txm_err_name(e.cause_code) : "none");
    conf_assert_freed_once();
}

Test(hooks, on_rollback_outside_transaction_never_runs, .init = conf_init, .fini = conf_fini)
{
    conf_hook *h = NULL;
    CONF_OK(conf_on_rollback(conf.c, "never", &h));
    cr_assert(h->runs == 0, "an on-rollback hook outside a transaction ran");
    cr_assert(h->frees == 1, "its payload must be freed at once (frees=%d)", h->frees);
    /* not kept for a later transaction either */
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(txm_rollback(t));
    cr_assert(h->runs == 0);
    conf_assert_freed_once();
}

Test(hooks, registration_errors_do_not_take_payload, .init = conf_init, .fini = conf_fini)
{
    conf_hook *h = conf_hook_new("unused");
    CONF_RC(TXM_EINVALID, txm_on_commit(conf.c, NULL, h, conf_hook_free));
    CONF_RC(TXM_EINVALID, txm_on_rollback(conf.c, NULL, h, conf_hook_free));
    CONF_RC(TXM_EINVALID, txm_on_commit(NULL, conf_hook_fn, h, conf_hook_free));
    cr_assert(h->runs == 0 && h->frees == 0, "a refused registration ran (%d) or freed (%d) the payload", h->runs,
              h->frees);
}

Test(hooks, close_with_open_transaction_runs_rollback_hooks_and_frees, .init = conf_init_shared, .fini = conf_fini)
{
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    conf_hook *c1 = NULL, *r1 = NULL, *r2 = NULL;
    CONF_OK(conf_on_commit(conf.c, "c1", &c1));
    CONF_OK(conf_on_rollback(conf.c, "r1", &r1));
    (void)conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(conf_on_rollback(conf.c, "r2", &r2));
    (void)t;
    txm_close(conf.c);
    conf.c = NULL;
    cr_assert(c1->runs == 0, "on-commit hook ran at close");
    cr_assert(r1->runs == 1 && r2->runs == 1, "on-rollback hooks must run at close (r1 %d, r2 %d)", r1->runs,
              r2->runs);
    conf_assert_freed_once();
    txm_conn *b = conf_open_other();
    cr_assert(conf_count(b, "t_item") == 0, "close committed an open transaction");
    txm_close(b);
}

Test(hooks, failed_level_discards_its_hooks_and_runs_rollback_hooks, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_uniq(conf.c, 1, "a"));
    CONF_OK(conf_on_commit(conf.c, "o", NULL));
    txm_tx *inner = conf_begin(conf.c);
    CONF_OK(conf_on_commit(conf.c, "i", NULL));
    CONF_OK(conf_on_rollback(conf.c, "ri", NULL));
    CONF_RC(TXM_EUNIQUE, conf_uniq(conf.c, 2, "a"));
    CONF_RC(TXM_ETX_ABORTED, txm_commit(inner));
    cr_assert_str_eq(conf_log, "ri,", "commit of a failed level must roll it back: %s", conf_log);
    CONF_OK(txm_commit(outer));
    cr_assert_str_eq(conf_log, "ri,o,");
    conf_assert_freed_once();
}

Test(hooks, join_level_hooks_follow_the_parent, .init = conf_init, .fini = conf_fini)
{
    txm_tx *outer = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    txm_tx *j = conf_begin_flags(conf.c, TXM_TX_JOIN);
    CONF_OK(conf_on_commit(conf.c, "j", NULL));
    CONF_OK(txm_commit(j));
    cr_assert_str_eq(conf_log, "");
    CONF_OK(txm_commit(outer));
    cr_assert_str_eq(conf_log, "j,");
    conf_assert_freed_once();
}

Test(hooks, failed_commit_runs_only_rollback_hooks, .init = conf_init_deferred, .fini = conf_fini)
{
    if (!conf_is("postgresql") && !conf_is("sqlite"))
        CONF_SKIP("%s has no DEFERRABLE constraints: a COMMIT cannot fail on demand", conf.driver);
    txm_tx *t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 1));
    /* Deferred FK: the insert succeeds, COMMIT fails. */
    CONF_OK(txm_exec(conf.c, "INSERT INTO t_dchild (id, parent_id) VALUES (1, 999)", NULL, 0, NULL));
    conf_hook *c = NULL, *r = NULL;
    CONF_OK(conf_on_commit(conf.c, "c", &c));
    CONF_OK(conf_on_rollback(conf.c, "r", &r));
    int rc = txm_commit(t);
    cr_assert(rc == TXM_EFOREIGN_KEY, "COMMIT with a violated deferred FK: expected TXM_EFOREIGN_KEY, got %s (%s)",
              txm_err_name(rc), txm_error_last()->message);
    cr_assert(c->runs == 0, "on-commit hook of a failed commit ran");
    cr_assert(r->runs == 1, "on-rollback hook of a failed commit did not run");
    cr_assert(txm_depth(conf.c) == 0);
    conf_assert_freed_once();
    /* rolled back, and the connection is idle and usable */
    cr_assert(conf_count(conf.c, "t_dchild") == 0);
    cr_assert(conf_count(conf.c, "t_item") == 0, "a failed COMMIT left rows behind");
    t = conf_begin(conf.c);
    CONF_OK(conf_item(conf.c, 2));
    CONF_OK(txm_commit(t));
    txm_conn *b = conf_open_other();
    cr_assert(conf_count(b, "t_item") == 1);
    txm_close(b);
}
