/*
 * Deep nesting against a model. txm keeps what scans of its level stack would compute (the
 * outermost failed level, the first level with a SAVEPOINT still to send, each level's savepoint
 * owner) up to date instead of scanning on every operation (docs/decisions.md). These tests walk
 * hundreds of levels at random (begin, join, statements that succeed or fail, txm_batch, commit,
 * rollback of the top level or of a level in the middle with everything above it) and check after
 * every step, against a plain model of docs/semantics.md: the result code, the depth, every
 * control statement sent (BEGIN, SAVEPOINT, RELEASE, ROLLBACK TO, COMMIT, ROLLBACK), refusals,
 * the rows committed, and txm__levels_check (the cached summaries against a scan of the stack).
 * A stale summary shows up as a statement refused or sent wrongly, a SAVEPOINT missing or sent
 * twice, or a wrong owner doomed.
 */
#include "harness.h"

#include "internal.h" /* txm__levels_check */

#include <stdlib.h>

#define MAXD 400

typedef struct mlevel {
    txm_tx *tx;
    bool join, started, failed;
    int64_t nrows, sum; /* rows inserted at this level (and merged from committed inner ones) */
} mlevel;

typedef struct model {
    mlevel lv[MAXD];
    size_t depth;
    bool server_in_tx;
    size_t pending; /* savepoint level whose RELEASE is due, 0 = none */
    int64_t committed_rows, committed_sum, next_id;
    txm_stats want; /* expected counters */
    uint64_t rng;
    unsigned long step;
    size_t max_depth;
} model;

static uint64_t rnd(model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static size_t owner_of(const model *m, size_t i)
{
    while (i > 0 && m->lv[i].join)
        i--;
    return i;
}

static bool any_failed(const model *m, size_t upto) /* levels[0..upto] */
{
    for (size_t i = 0; i <= upto && i < m->depth; i++)
        if (m->lv[i].failed)
            return true;
    return false;
}

static void check(model *m, const char *what)
{
    char buf[256];
    txm_stats s = conf_stats(conf.c);
    cr_assert(txm__levels_check(conf.c, buf, sizeof buf) == 0, "step %lu after %s: %s", m->step, what, buf);
    cr_assert(txm_depth(conf.c) == (int)m->depth, "step %lu after %s: depth %d, model %zu", m->step, what,
              txm_depth(conf.c), m->depth);
#define FIELD(f)                                                                                                    \
    cr_assert(s.f == m->want.f, "step %lu after %s: " #f " %llu, model %llu", m->step, what, (unsigned long long)s.f, \
              (unsigned long long)m->want.f)
    FIELD(begins);
    FIELD(savepoints);
    FIELD(releases);
    FIELD(rollbacks_to);
    FIELD(commits);
    FIELD(rollbacks);
    FIELD(statements);
    FIELD(refused);
#undef FIELD
}

/* What the model expects a statement to send; `bad` fails (duplicate key) after them. */
static int model_statement(model *m, bool bad)
{
    if (m->depth > 0 && any_failed(m, m->depth - 1)) {
        m->want.refused++;
        return TXM_ETX_ABORTED;
    }
    if (m->pending && m->server_in_tx) {
        m->want.releases++;
        m->pending = 0;
    }
    for (size_t i = 0; i < m->depth; i++) {
        mlevel *l = &m->lv[i];
        if ((i == 0 || !l->join) && !l->started) {
            l->started = true;
            if (i == 0) {
                m->want.begins++;
                m->server_in_tx = true;
            } else
                m->want.savepoints++;
        }
    }
    m->want.statements++;
    if (bad) {
        if (m->depth > 0)
            m->lv[owner_of(m, m->depth - 1)].failed = true;
        return TXM_EUNIQUE;
    }
    return 0;
}

static void model_pop_rows_into_parent(model *m)
{
    mlevel *t = &m->lv[m->depth - 1];
    if (m->depth > 1) {
        m->lv[m->depth - 2].nrows += t->nrows;
        m->lv[m->depth - 2].sum += t->sum;
    }
    m->depth--;
}

static void model_rollback(model *m)
{
    size_t idx = m->depth - 1;
    mlevel *t = &m->lv[idx];
    if (idx > 0 && t->join) {
        m->lv[owner_of(m, idx)].failed = true; /* dooms the owner, which will really roll back */
        model_pop_rows_into_parent(m);
        return;
    }
    if (idx > 0 && any_failed(m, idx - 1)) {
        m->depth--;
        return;
    }
    if (idx == 0) {
        if (m->server_in_tx)
            m->want.rollbacks++;
        m->server_in_tx = false;
        m->pending = 0;
    } else {
        if (m->pending > idx)
            m->pending = 0;
        if (t->started && m->server_in_tx) {
            m->want.rollbacks_to++;
            m->want.releases++;
        }
    }
    m->depth--;
}

/* Returns the code txm_commit must return. */
static int model_commit(model *m)
{
    size_t idx = m->depth - 1;
    mlevel *t = &m->lv[idx];
    if (any_failed(m, idx)) {
        model_rollback(m);
        return TXM_ETX_ABORTED;
    }
    if (idx > 0) {
        if (!t->join && t->started)
            m->pending = idx;
        model_pop_rows_into_parent(m);
        return 0;
    }
    m->pending = 0;
    if (m->server_in_tx)
        m->want.commits++;
    m->server_in_tx = false;
    m->committed_rows += t->nrows;
    m->committed_sum += t->sum;
    m->depth--;
    return 0;
}

static void assert_rows(model *m)
{
    cr_assert(conf_count(conf.c, "t_item") == m->committed_rows, "step %lu: %lld rows committed, model %lld", m->step,
              (long long)conf_count(conf.c, "t_item"), (long long)m->committed_rows);
    cr_assert(conf_i64(conf.c, "SELECT COALESCE(SUM(id), 0) FROM t_item") == m->committed_sum, "step %lu: id sum",
              m->step);
    m->want = conf_stats(conf.c); /* the two SELECTs ran at depth 0 */
}

static void op_begin(model *m)
{
    bool join = m->depth > 0 && rnd(m) % 4 == 0;
    mlevel *l = &m->lv[m->depth];
    CONF_OK(txm_begin(&l->tx, conf.c, join ? &(txm_tx_options){.version = TXM_TX_OPTIONS_VERSION, .flags = TXM_TX_JOIN}
                                                : NULL));
    l->join = join;
    l->started = l->failed = false;
    l->nrows = l->sum = 0;
    m->depth++;
    if (m->depth > m->max_depth)
        m->max_depth = m->depth;
    check(m, join ? "begin (join)" : "begin");
}

static void op_statement(model *m, bool bad)
{
    int64_t id = ++m->next_id;
    int want = model_statement(m, bad);
    int rc = bad ? conf_uniq(conf.c, id, "dup") : conf_item(conf.c, id);
    cr_assert(rc == want, "step %lu: %s statement at depth %zu: %s, model %s (%s)", m->step, bad ? "failing" : "good",
              m->depth, txm_err_name(rc), txm_err_name(want), rc ? txm_error_last()->message : "");
    if (rc == 0 && !bad) {
        if (m->depth == 0) {
            m->committed_rows++;
            m->committed_sum += id;
        } else {
            m->lv[m->depth - 1].nrows++;
            m->lv[m->depth - 1].sum += id;
        }
    }
    check(m, bad ? "failing statement" : "statement");
}

/* txm_batch inside the transaction: a level of its own (begin, statement, commit or rollback). */
static void op_batch(model *m, bool bad)
{
    int64_t id = ++m->next_id;
    char name[32];
    txm_value p[2] = {txm_int(id), txm_text(bad ? "dup" : name)};
    txm_batch_stmt st = {bad ? "INSERT INTO t_uniq (id, code) VALUES (?, ?)" : "INSERT INTO t_item (id, name) VALUES (?, ?)",
                         p, 2, NULL, 0, 0};
    int want, rc;
    snprintf(name, sizeof name, "item-%lld", (long long)id);
    if (any_failed(m, m->depth - 1)) {
        m->want.refused++;
        want = TXM_ETX_ABORTED;
    } else {
        mlevel *l = &m->lv[m->depth];
        l->join = l->started = l->failed = false;
        l->nrows = l->sum = 0;
        m->depth++;
        want = model_statement(m, bad);
        if (want == 0) {
            l->nrows = 1;
            l->sum = id;
            model_commit(m);
        } else
            model_rollback(m);
    }
    rc = txm_batch(conf.c, &st, 1, NULL);
    cr_assert(rc == want, "step %lu: %s batch at depth %zu: %s, model %s (%s)", m->step, bad ? "failing" : "good",
              m->depth, txm_err_name(rc), txm_err_name(want), rc ? txm_error_last()->message : "");
    check(m, "batch");
}

static void op_commit(model *m)
{
    txm_tx *tx = m->lv[m->depth - 1].tx;
    int want = model_commit(m);
    int rc = txm_commit(tx);
    cr_assert(rc == want, "step %lu: commit at depth %zu: %s, model %s (%s)", m->step, m->depth + 1, txm_err_name(rc),
              txm_err_name(want), rc ? txm_error_last()->message : "");
    check(m, "commit");
}

static void op_rollback(model *m)
{
    txm_tx *tx = m->lv[m->depth - 1].tx;
    model_rollback(m);
    CONF_OK(txm_rollback(tx));
    check(m, "rollback");
}

static void walk(uint64_t seed, unsigned long steps, size_t maxd)
{
    static model m; /* 400 levels: keep it off the stack */
    memset(&m, 0, sizeof m);
    m.rng = seed;
    CONF_OK(conf_uniq(conf.c, 1000000000, "dup")); /* the key every failing statement collides with */
    m.next_id = 0;
    m.want = conf_stats(conf.c);
    for (m.step = 1; m.step <= steps; m.step++) {
        unsigned r = (unsigned)(rnd(&m) % 1000);
        if (m.depth > 0 && any_failed(&m, m.depth - 1) && r % 2)
            r = 900; /* a doomed stack is mostly unwound (refusals are checked on the other half) */
        if (m.depth == 0 || (r < 450 && m.depth < maxd))
            op_begin(&m);
        else if (r < 650)
            op_statement(&m, false);
        else if (r < 670)
            op_statement(&m, true);
        else if (r < 710)
            op_batch(&m, r >= 700);
        else if (r < 860) {
            op_commit(&m);
            if (m.depth == 0)
                assert_rows(&m);
        } else if (r < 995)
            op_rollback(&m);
        else { /* roll back a level in the middle: everything above it first, then it */
            size_t k = (size_t)(rnd(&m) % m.depth);
            while (m.depth > k)
                op_rollback(&m);
        }
    }
    while (m.depth > 0)
        op_commit(&m);
    assert_rows(&m);
    fprintf(stderr,
            "[%s] depth walk seed %llu: %lu steps, deepest %zu, %lld rows committed, %llu savepoints, %llu refused\n",
            conf.driver, (unsigned long long)seed, steps, m.max_depth, (long long)m.committed_rows,
            (unsigned long long)m.want.savepoints, (unsigned long long)m.want.refused);
}

Test(depth, random_walk_matches_model, .init = conf_init, .fini = conf_fini)
{
    /* Servers: fewer steps (each statement is a round trip), still hundreds of levels deep. */
    unsigned long steps = conf_is_embedded() ? 12000 : 1500;
    walk(0x9e3779b97f4a7c15ull, steps, MAXD);
}

Test(depth, random_walk_shallow_many_transactions, .init = conf_init, .fini = conf_fini)
{
    /* Depth capped low: many outermost transactions, so the summaries are reset and reused often. */
    walk(0x2545f4914f6cdd1dull, conf_is_embedded() ? 4000 : 1000, 6);
}
