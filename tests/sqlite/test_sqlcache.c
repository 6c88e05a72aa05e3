/*
 * The core's per-connection cache of statement analyses (core/sqlcache.c): transaction-control
 * check and placeholder count/rewrite are cached per statement TEXT. Each test changes a text in a
 * way that a cache keyed on anything less than the whole text (the buffer's address, the length,
 * a hash or a sampled prefix/suffix) or with a broken eviction would answer wrongly: a wrong
 * placeholder count, a transaction-control statement let through, a wrong result, or (ASan) a
 * freed rewrite in use.
 *
 * Runs on SQLite :memory: (suite sqlite) and, with TXM_SQLCACHE_ENGINE=postgresql, on the server of
 * TXM_TEST_PG_URL (suite postgresql), where placeholders are rewritten to $n and the cache holds
 * the rewritten text.
 */
#include "internal.h" /* c->sql_cache: hit counters, TXM_SQL_CACHE_CAP / TXM_SQL_CACHE_TEXT_MAX */

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK(expr)                                                                                          \
    do {                                                                                                  \
        int rc_ = (expr);                                                                                 \
        cr_assert(eq(int, rc_, 0), "%s failed: %s: %s", #expr, txm_err_name(rc_), txm_error_last()->message); \
    } while (0)

static txm_conn *c;
static const char *cast = ""; /* PostgreSQL needs parameter types in SELECT ? + 1 */

static void setup(void)
{
    const char *engine = getenv("TXM_SQLCACHE_ENGINE");
    const char *url = "sqlite::memory:";
    if (engine && strcmp(engine, "postgresql") == 0) {
        url = getenv("TXM_TEST_PG_URL");
        if (!url || !*url)
            cr_skip_test("TXM_TEST_PG_URL is not set");
        cast = "::int8";
    }
    OK(txm_open(&c, url, NULL));
}

static void teardown(void)
{
    txm_close(c);
    c = NULL;
}

TestSuite(sqlcache, .init = setup, .fini = teardown);

/* SELECT of one expression, as an integer. */
static int64_t select_i64(const char *sql, const txm_value *params, size_t n)
{
    int64_t v = -1;
    OK(txm_query_i64(c, &v, sql, params, n));
    return v;
}

Test(sqlcache, same_buffer_new_text_same_length)
{
    char buf[128];
    txm_value p[2] = {txm_int(40), txm_int(2)};
    unsigned long hits;
    /* Same length, same buffer, one more placeholder. */
    snprintf(buf, sizeof buf, "SELECT ?%s + 2", cast);
    cr_assert(eq(i64, select_i64(buf, p, 1), 42));
    hits = c->sql_cache.hits;
    cr_assert(eq(i64, select_i64(buf, p, 1), 42));
    cr_assert(eq(ulong, c->sql_cache.hits, hits + 1), "the second run of a text is a cache hit");
    snprintf(buf, sizeof buf, "SELECT ?%s + ?", cast);
    cr_assert(eq(i64, select_i64(buf, p, 2), 42), "the new text has 2 placeholders");
    /* And back: one placeholder again, in the other position. */
    snprintf(buf, sizeof buf, "SELECT 2 + ?%s", cast);
    cr_assert(eq(i64, select_i64(buf, p, 1), 42));
    cr_assert(eq(int, txm_exec(c, buf, p, 2, NULL), TXM_EINVALID), "2 values for 1 placeholder");
}

Test(sqlcache, text_becomes_transaction_control)
{
    char buf[32];
    txm_tx *tx;
    int64_t n = -1;
    OK(txm_exec(c, "CREATE TEMPORARY TABLE sqlcache_t(a int)", NULL, 0, NULL));
    OK(txm_begin(&tx, c, NULL));
    OK(txm_exec(c, "INSERT INTO sqlcache_t VALUES (1)", NULL, 0, NULL));
    strcpy(buf, "SELECT 1");
    OK(txm_exec(c, buf, NULL, 0, NULL));
    OK(txm_exec(c, buf, NULL, 0, NULL)); /* cached now */
    strcpy(buf, "ROLLBACK"); /* same buffer, same length */
    cr_assert(eq(int, txm_exec(c, buf, NULL, 0, NULL), TXM_EMISUSE), "ROLLBACK must be refused: %s",
              txm_error_last()->message);
    strcpy(buf, "COMMIT  ");
    cr_assert(eq(int, txm_exec(c, buf, NULL, 0, NULL), TXM_EMISUSE));
    OK(txm_commit(tx));
    OK(txm_query_i64(c, &n, "SELECT count(*) FROM sqlcache_t", NULL, 0));
    cr_assert(eq(i64, n, 1), "the transaction was neither rolled back nor committed behind txm's back");
}

/* Two long texts of the same length that differ in one byte far from both ends: "SELECT ?", blanks,
 * " + 1" or " + ?", blanks. */
static char *long_text(size_t len, bool second_placeholder)
{
    size_t pad = (len - 20) / 2;
    char *s = malloc(len + 64), *p = s;
    cr_assert(s != NULL);
    p += sprintf(p, "SELECT ?%s", cast);
    memset(p, ' ', pad);
    p += pad;
    p += sprintf(p, second_placeholder ? " + ?%s" : " + 1%s", cast);
    memset(p, ' ', pad);
    p[pad] = '\0';
    return s;
}

static void long_texts(size_t len)
{
    char *a = long_text(len, false), *b = long_text(len, true);
    txm_value p[2] = {txm_int(1000), txm_int(7)};
    cr_assert(eq(sz, strlen(a), strlen(b)));
    cr_assert(eq(i64, select_i64(a, p, 1), 1001));
    cr_assert(eq(i64, select_i64(a, p, 1), 1001));
    cr_assert(eq(i64, select_i64(b, p, 2), 1007));
    cr_assert(eq(i64, select_i64(a, p, 1), 1001));
    /* The same buffer rewritten in place with the other text. */
    memcpy(a, b, strlen(b));
    cr_assert(eq(i64, select_i64(a, p, 2), 1007));
    free(a);
    free(b);
}

Test(sqlcache, long_texts_differing_in_the_middle)
{
    unsigned long hits = c->sql_cache.hits;
    long_texts(TXM_SQL_CACHE_TEXT_MAX - 100); /* just under the limit */
    cr_assert(c->sql_cache.hits > hits, "texts under TXM_SQL_CACHE_TEXT_MAX are cached");
}

Test(sqlcache, texts_over_the_limit_are_not_cached)
{
    unsigned long hits = c->sql_cache.hits;
    long_texts(TXM_SQL_CACHE_TEXT_MAX + 100);
    cr_assert(eq(ulong, c->sql_cache.hits, hits));
}

/* More distinct texts than the cache holds, twice around, in a buffer reused for each: every
 * statement answers with its own number. */
Test(sqlcache, eviction)
{
    char buf[96];
    size_t round, k, n = TXM_SQL_CACHE_CAP + 17;
    txm_value p = txm_int(1000);
    for (round = 0; round < 3; round++) {
        for (k = 0; k < n; k++) {
            size_t j = round == 1 ? n - 1 - k : k; /* also in reverse: LRU victims differ */
            snprintf(buf, sizeof buf, "SELECT ?%s + %zu", cast, j);
            cr_assert(eq(i64, select_i64(buf, &p, 1), 1000 + (int64_t)j));
        }
    }
    cr_assert(c->sql_cache.misses > n, "the cache is bounded: evicted texts were analysed again");
}

/* A batch holds every statement's text until it has run: more distinct texts than the cache holds
 * cannot evict the ones still waiting (with $n rewrites, ASan sees a use after free otherwise). */
Test(sqlcache, batch_larger_than_the_cache)
{
    enum { N = TXM_SQL_CACHE_CAP * 2 + 3 };
    static char sql[N][64];
    static txm_value p[N];
    static txm_rows *rows[N];
    static txm_batch_stmt st[N];
    size_t k;
    for (k = 0; k < N; k++) {
        snprintf(sql[k], sizeof sql[k], "SELECT ?%s + %zu", cast, k);
        p[k] = txm_int(100000);
        st[k].sql = sql[k];
        st[k].params = &p[k];
        st[k].nparams = 1;
        st[k].rows_out = &rows[k];
    }
    OK(txm_batch(c, st, N, NULL));
    for (k = 0; k < N; k++) {
        cr_assert(txm_rows_next(rows[k]));
        cr_assert(eq(i64, txm_rows_get_i64(rows[k], 0), 100000 + (int64_t)k));
        txm_rows_free(rows[k]);
    }
}

/* The hot path of a transaction that repeats a statement allocates nothing in txm once the
 * statement is cached (the driver's own allocations are the driver's business: counted here are
 * txm's, through txm__malloc). On PostgreSQL every txm_exec used to allocate its $n rewrite. */
Test(sqlcache, repeated_statement_allocates_nothing_in_the_core)
{
    char sql[64];
    size_t k;
    unsigned long before;
    txm_value p = txm_int(1);
    snprintf(sql, sizeof sql, "SELECT ?%s + 1", cast);
    for (k = 0; k < 3; k++) { /* warm-up: cache entries, level objects, op buffers */
        txm_tx *tx;
        OK(txm_begin(&tx, c, NULL));
        OK(txm_exec(c, sql, &p, 1, NULL));
        OK(txm_commit(tx));
    }
    before = txm__alloc_count();
    for (k = 0; k < 50; k++) {
        txm_tx *tx;
        OK(txm_begin(&tx, c, NULL));
        OK(txm_exec(c, sql, &p, 1, NULL));
        OK(txm_commit(tx));
    }
    cr_assert(eq(ulong, txm__alloc_count() - before, 0), "allocations in 50 transactions");
}
