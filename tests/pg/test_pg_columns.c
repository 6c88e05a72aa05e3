/*
 * column_name of PostgreSQL constraint violations (docs/errors.md, "Error fields per engine"):
 * filled from the catalog for single-column UNIQUE, FOREIGN KEY and CHECK constraints, at once in
 * autocommit (one extra round trip on a cache miss, none on a hit) and, inside a transaction, in
 * the flight that ends it; never for multi-column constraints; names bound as parameters; a
 * failing or session-killing lookup leaves the original error and the outcome intact. Also the
 * SQLSTATE 25P02 of TXM_ETX_ABORTED records. Tables are named pgc_*.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "txm.h"
#include "txm_check.h"

#define NEED_PG() NEED_URL("TXM_TEST_PG_URL", "scripts/pg-server.sh")

static const char *pg_url(void) { return getenv("TXM_TEST_PG_URL"); }

static uint64_t rt(txm_conn *c)
{
    txm_stats s;
    txm_stats_get(c, &s);
    return s.round_trips;
}

/* A copy of the fields that matter (the thread's record is overwritten by the next failure). */
typedef struct rec {
    int code;
    char sqlstate[8], constraint[256], table[256], column[256], schema[256], message[600];
    unsigned flags;
    int cause_code;
    char cause_sqlstate[8], cause_constraint[256], cause_column[256], cause_message[600];
} rec;

static rec last(void)
{
    const txm_error *e = txm_error_last();
    rec r;
    memset(&r, 0, sizeof r);
    r.code = e->code;
    snprintf(r.sqlstate, sizeof r.sqlstate, "%s", e->sqlstate);
    snprintf(r.constraint, sizeof r.constraint, "%s", e->constraint_name);
    snprintf(r.table, sizeof r.table, "%s", e->table_name);
    snprintf(r.column, sizeof r.column, "%s", e->column_name);
    snprintf(r.schema, sizeof r.schema, "%s", e->schema_name);
    snprintf(r.message, sizeof r.message, "%s", e->message);
    r.flags = e->flags;
    if (e->cause) {
        r.cause_code = e->cause->code;
        snprintf(r.cause_sqlstate, sizeof r.cause_sqlstate, "%s", e->cause->sqlstate);
        snprintf(r.cause_constraint, sizeof r.cause_constraint, "%s", e->cause->constraint_name);
        snprintf(r.cause_column, sizeof r.cause_column, "%s", e->cause->column_name);
        snprintf(r.cause_message, sizeof r.cause_message, "%s", e->cause->message);
    }
    fprintf(stderr, "[pg-columns] %s sqlstate=%s constraint=%s table=%s column=%s | %s%s%s%s\n",
            txm_err_name(r.code), r.sqlstate, r.constraint, r.table, r.column, r.message,
            e->cause ? " | cause column=" : "", e->cause ? r.cause_column : "", e->cause ? "" : "");
    return r;
}

static void schema(txm_conn *c)
{
    x(c, "DROP TABLE IF EXISTS pgc_child, pgc_parent, pgc_multi, pgc_victim");
    x(c, "CREATE TABLE pgc_parent (id INTEGER PRIMARY KEY)");
    x(c, "CREATE TABLE pgc_child (id INTEGER PRIMARY KEY, code TEXT, parent_id INTEGER, qty INTEGER,"
         " CONSTRAINT pgc_uq_code UNIQUE (code),"
         " CONSTRAINT pgc_fk_parent FOREIGN KEY (parent_id) REFERENCES pgc_parent (id),"
         " CONSTRAINT pgc_ck_qty CHECK (qty >= 0))");
    x(c, "CREATE TABLE pgc_multi (a INTEGER, b INTEGER, c INTEGER,"
         " CONSTRAINT pgc_uq_ab UNIQUE (a, b), CONSTRAINT pgc_ck_ab CHECK (a < b))");
    x(c, "CREATE UNIQUE INDEX pgc_ix_c ON pgc_multi (c)");
    x(c, "INSERT INTO pgc_parent VALUES (1)");
    x(c, "INSERT INTO pgc_child VALUES (1, 'a', 1, 0)");
    x(c, "INSERT INTO pgc_multi VALUES (1, 2, 3)");
}

static txm_conn *fresh(void)
{
    txm_conn *c = check_open(pg_url(), NULL);
    schema(c);
    txm_close(c);
    return check_open(pg_url(), NULL); /* an empty cache */
}

/* Runs sql at depth 0; it must fail with `code`. Returns the record and the round trips it took. */
static rec fail0(txm_conn *c, const char *sql, int code, uint64_t *trips)
{
    uint64_t before = rt(c);
    RC(code, txm_exec(c, sql, NULL, 0, NULL));
    *trips = rt(c) - before;
    return last();
}

static void expect(const rec *r, int code, const char *sqlstate, const char *constraint, const char *table,
                   const char *column)
{
    cr_assert_eq(r->code, code, "%s", txm_err_name(r->code));
    cr_assert_str_eq(r->sqlstate, sqlstate);
    cr_assert_str_eq(r->constraint, constraint);
    cr_assert_str_eq(r->table, table);
    cr_assert_str_eq(r->schema, "public");
    cr_assert_str_eq(r->column, column, "column_name of %s: '%s', expected '%s'", constraint, r->column, column);
    cr_assert(strstr(r->message, constraint) != NULL, "the message still names the constraint: %s", r->message);
}

Test(pg_columns, autocommit_single_column_filled_at_once_and_the_cache_hit_costs_nothing)
{
    txm_conn *c;
    uint64_t miss, hit;
    rec r;
    NEED_PG();
    c = fresh();

    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'a', 1, 0)", TXM_EUNIQUE, &miss);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
    r = fail0(c, "INSERT INTO pgc_child VALUES (3, 'a', 1, 0)", TXM_EUNIQUE, &hit);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
    fprintf(stderr, "[pg-columns] unique violation at depth 0: %llu round trips on a cache miss, %llu on a hit\n",
            (unsigned long long)miss, (unsigned long long)hit);
    cr_assert_eq(hit, 1, "a cache hit costs no round trip beyond the statement's (%llu)", (unsigned long long)hit);
    cr_assert_eq(miss, 2, "a cache miss costs one lookup (%llu)", (unsigned long long)miss);

    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'b', 999, 0)", TXM_EFOREIGN_KEY, &miss);
    expect(&r, TXM_EFOREIGN_KEY, "23503", "pgc_fk_parent", "pgc_child", "parent_id");
    /* The other direction: the table (and so the column) is the referencing one. */
    r = fail0(c, "DELETE FROM pgc_parent WHERE id = 1", TXM_EFOREIGN_KEY, &hit);
    expect(&r, TXM_EFOREIGN_KEY, "23503", "pgc_fk_parent", "pgc_child", "parent_id");
    cr_assert_eq(hit, 1);
    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'b', 1, -1)", TXM_ECHECK, &miss);
    expect(&r, TXM_ECHECK, "23514", "pgc_ck_qty", "pgc_child", "qty");
    /* NOT NULL: PostgreSQL names the column itself; no lookup. */
    r = fail0(c, "INSERT INTO pgc_parent VALUES (NULL)", TXM_ENOT_NULL, &miss);
    cr_assert_str_eq(r.column, "id");
    cr_assert_eq(miss, 1);
    txm_close(c);
}

Test(pg_columns, multi_column_constraints_have_no_column)
{
    txm_conn *c;
    uint64_t trips;
    rec r;
    txm_tx *t;
    NEED_PG();
    c = fresh();
    r = fail0(c, "INSERT INTO pgc_multi VALUES (1, 2, 9)", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_ab", "pgc_multi", "");
    r = fail0(c, "INSERT INTO pgc_multi VALUES (5, 4, 8)", TXM_ECHECK, &trips);
    expect(&r, TXM_ECHECK, "23514", "pgc_ck_ab", "pgc_multi", "");
    /* The "no single column" answer is cached too. */
    r = fail0(c, "INSERT INTO pgc_multi VALUES (1, 2, 10)", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_ab", "pgc_multi", "");
    cr_assert_eq(trips, 1);
    /* A unique index that is not a constraint: the index's one column. */
    r = fail0(c, "INSERT INTO pgc_multi VALUES (7, 8, 3)", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_ix_c", "pgc_multi", "c");
    /* Inside a transaction, once the transaction ended: still nothing. */
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_multi VALUES (1, 2, 11)", NULL, 0, NULL));
    RC(TXM_ETX_ABORTED, txm_commit(t));
    r = last();
    cr_assert_eq(r.cause_code, TXM_EUNIQUE);
    cr_assert_str_eq(r.cause_column, "");
    txm_close(c);
}

Test(pg_columns, in_transaction_cache_miss_is_filled_when_the_transaction_ends)
{
    txm_conn *c;
    txm_tx *t, *n;
    uint64_t before;
    rec r;
    NEED_PG();
    c = fresh();

    /* Cache miss: the failing statement's record has no column (the transaction is aborted, no
     * query can run in it); the commit that rolls it back carries the lookup in its flight. */
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgc_child VALUES (10, 'x', 1, 0)");
    before = rt(c);
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_child VALUES (11, 'a', 1, 0)", NULL, 0, NULL));
    r = last();
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "");
    cr_assert_eq(rt(c) - before, 1);
    before = rt(c);
    RC(TXM_ETX_ABORTED, txm_commit(t));
    cr_assert_eq(rt(c) - before, 1, "the lookup travels with the ROLLBACK: %llu round trips",
                 (unsigned long long)(rt(c) - before));
    r = last();
    cr_assert_str_eq(r.sqlstate, "25P02");
    cr_assert_eq(r.cause_code, TXM_EUNIQUE);
    cr_assert_str_eq(r.cause_sqlstate, "23505");
    cr_assert_str_eq(r.cause_constraint, "pgc_uq_code");
    cr_assert_str_eq(r.cause_column, "code", "the cause gets the column once the transaction ended");
    cr_assert(strstr(r.cause_message, "pgc_uq_code") != NULL);
    cr_assert_eq(q1(c, "SELECT COUNT(*) FROM pgc_child WHERE id = 10"), 0, "rolled back");

    /* Cache hit inside a transaction: at once, no extra round trip. */
    OK(txm_begin(&t, c, NULL));
    before = rt(c);
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_child VALUES (11, 'a', 1, 0)", NULL, 0, NULL));
    cr_assert_eq(rt(c) - before, 1);
    r = last();
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
    OK(txm_rollback(t));

    /* txm_rollback: the thread's record (the FK error, still the last one) is completed. */
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EFOREIGN_KEY, txm_exec(c, "INSERT INTO pgc_child VALUES (12, 'y', 42, 0)", NULL, 0, NULL));
    cr_assert_str_eq(txm_error_last()->column_name, "");
    OK(txm_rollback(t));
    r = last();
    expect(&r, TXM_EFOREIGN_KEY, "23503", "pgc_fk_parent", "pgc_child", "parent_id");

    /* A failed savepoint inside a transaction that commits: the lookup follows the COMMIT. */
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgc_child VALUES (13, 'z', 1, 0)");
    OK(txm_begin(&n, c, NULL));
    RC(TXM_ECHECK, txm_exec(c, "INSERT INTO pgc_child VALUES (14, 'w', 1, -5)", NULL, 0, NULL));
    cr_assert_str_eq(txm_error_last()->column_name, "");
    OK(txm_rollback(n));
    OK(txm_commit(t));
    r = last();
    expect(&r, TXM_ECHECK, "23514", "pgc_ck_qty", "pgc_child", "qty");
    cr_assert_eq(q1(c, "SELECT COUNT(*) FROM pgc_child WHERE id = 13"), 1, "committed");
    txm_close(c);
}

static int body_violates(txm_conn *c, void *p)
{
    (void)p;
    return txm_exec(c, "INSERT INTO pgc_child VALUES (20, 'a', 1, 0)", NULL, 0, NULL);
}

Test(pg_columns, atomic_and_retry_return_the_error_with_its_column)
{
    txm_conn *c;
    rec r;
    NEED_PG();
    c = fresh();
    RC(TXM_EUNIQUE, txm_atomic(c, NULL, body_violates, NULL));
    r = last();
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
    txm_close(c);
    c = check_open(pg_url(), NULL);
    RC(TXM_EUNIQUE, txm_retry(c, NULL, body_violates, NULL));
    r = last();
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
    txm_close(c);
    /* A batch at depth 0: BEGIN, the statements and COMMIT in one flight; the failure leaves the
     * transaction aborted, and the ROLLBACK's flight carries the lookup. */
    c = check_open(pg_url(), NULL);
    {
        txm_batch_stmt b[2];
        memset(b, 0, sizeof b);
        b[0].sql = "INSERT INTO pgc_child VALUES (21, 'k', 1, 0)";
        b[1].sql = "INSERT INTO pgc_child VALUES (22, 'a', 1, 0)";
        RC(TXM_EUNIQUE, txm_batch(c, b, 2, NULL));
        r = last();
        expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
        cr_assert(strstr(r.message, "statement 2") != NULL, "the batch's message is kept: %s", r.message);
    }
    txm_close(c);
}

Test(pg_columns, hostile_constraint_name_is_bound)
{
    static const char *name = "pgc_x'); DROP TABLE pgc_victim; --\"$1;";
    char sql[512], quoted[128];
    txm_conn *c;
    txm_tx *t;
    uint64_t trips;
    rec r;
    NEED_PG();
    c = fresh();
    x(c, "CREATE TABLE pgc_victim (id INTEGER)");
    OK(txm_quote_ident(c, quoted, sizeof quoted, name));
    snprintf(sql, sizeof sql, "ALTER TABLE pgc_parent ADD COLUMN tag TEXT CONSTRAINT %s UNIQUE", quoted);
    x(c, sql);
    x(c, "UPDATE pgc_parent SET tag = 't'");
    r = fail0(c, "INSERT INTO pgc_parent VALUES (2, 't')", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", name, "pgc_parent", "tag");
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_parent VALUES (3, 't')", NULL, 0, NULL));
    r = last();
    cr_assert_str_eq(r.column, "tag");
    OK(txm_rollback(t));
    cr_assert_eq(q1(c, "SELECT COUNT(*) FROM pgc_victim"), 0, "pgc_victim still exists");
    txm_close(c);
}

Test(pg_columns, own_ddl_refreshes_the_cache)
{
    txm_conn *c;
    uint64_t trips;
    rec r;
    NEED_PG();
    c = fresh();
    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'b', 1, -1)", TXM_ECHECK, &trips);
    cr_assert_str_eq(r.column, "qty");
    /* The same name now checks another column. */
    x(c, "ALTER TABLE pgc_child DROP CONSTRAINT pgc_ck_qty");
    x(c, "ALTER TABLE pgc_child ADD CONSTRAINT pgc_ck_qty CHECK (id < 100)");
    r = fail0(c, "INSERT INTO pgc_child VALUES (200, 'b', 1, -1)", TXM_ECHECK, &trips);
    expect(&r, TXM_ECHECK, "23514", "pgc_ck_qty", "pgc_child", "id");
    cr_assert_eq(trips, 2);
    txm_close(c);
}

/* The lookup fails (an error) or loses the connection (it ends its own session, a real
 * FATAL 57P01 in its place): the original error, the outcome and the stats stand. */
static void with_lookup(const char *sql) { txm__pg_col_sql_for_tests = sql; }

Test(pg_columns, failing_lookup_changes_nothing)
{
    txm_conn *c;
    txm_tx *t;
    uint64_t trips;
    rec r;
    NEED_PG();
    c = fresh();
    txm_close(c);
    with_lookup("SELECT ($1::text || $2::text || $3::text)::integer");
    c = check_open(pg_url(), NULL);
    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'a', 1, 0)", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "");
    cr_assert_eq(trips, 2);
    /* The refusal is remembered: no second attempt. */
    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'a', 1, 0)", TXM_EUNIQUE, &trips);
    cr_assert_eq(trips, 1);
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EFOREIGN_KEY, txm_exec(c, "INSERT INTO pgc_child VALUES (3, 'q', 7, 0)", NULL, 0, NULL));
    RC(TXM_ETX_ABORTED, txm_commit(t));
    r = last();
    cr_assert_eq(r.cause_code, TXM_EFOREIGN_KEY);
    cr_assert_str_eq(r.cause_constraint, "pgc_fk_parent");
    cr_assert_str_eq(r.cause_column, "");
    OK(txm_exec(c, "SELECT 1", NULL, 0, NULL)); /* the connection is fine */
    txm_close(c);
    with_lookup(NULL);
}

#define KILL_SELF                                                                                  \
    "SELECT pg_terminate_backend(pg_backend_pid())::text || $1::text || $2::text || $3::text"

Test(pg_columns, connection_lost_during_the_lookup_at_depth_0)
{
    char url[2200];
    txm_conn *c;
    uint64_t trips;
    rec r;
    NEED_PG();
    c = fresh();
    txm_close(c);
    with_lookup(KILL_SELF);
    snprintf(url, sizeof url, "fault+%s", pg_url()); /* through the fault driver, no fault armed */
    c = check_open(url, NULL);
    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'a', 1, 0)", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "");
    cr_assert_eq(r.flags & TXM_ERRF_TX_LOST, 0u, "the statement's error is reported as it was");
    /* The loss shows at the next call, and reconnecting recovers. */
    RC(TXM_ECONNECTION, txm_exec(c, "SELECT 1", NULL, 0, NULL));
    with_lookup(NULL);
    OK(txm_reconnect(c));
    r = fail0(c, "INSERT INTO pgc_child VALUES (2, 'a', 1, 0)", TXM_EUNIQUE, &trips);
    expect(&r, TXM_EUNIQUE, "23505", "pgc_uq_code", "pgc_child", "code");
    txm_close(c);
}

Test(pg_columns, connection_lost_during_the_lookup_after_rollback_and_commit)
{
    char url[2200];
    txm_conn *c, *check;
    txm_tx *t, *n;
    rec r;
    NEED_PG();
    c = fresh();
    txm_close(c);
    with_lookup(KILL_SELF);
    snprintf(url, sizeof url, "fault+%s", pg_url());
    c = check_open(url, NULL);
    check = check_open(pg_url(), NULL);

    /* After ROLLBACK: the commit of the poisoned transaction is still a rollback, cause intact. */
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgc_child VALUES (30, 'r', 1, 0)");
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_child VALUES (31, 'a', 1, 0)", NULL, 0, NULL));
    RC(TXM_ETX_ABORTED, txm_commit(t));
    r = last();
    cr_assert_str_eq(r.sqlstate, "25P02");
    cr_assert_eq(r.cause_code, TXM_EUNIQUE);
    cr_assert_str_eq(r.cause_sqlstate, "23505");
    cr_assert_str_eq(r.cause_constraint, "pgc_uq_code");
    cr_assert_str_eq(r.cause_column, "");
    cr_assert_eq(q1(check, "SELECT COUNT(*) FROM pgc_child WHERE id = 30"), 0);
    RC(TXM_ECONNECTION, txm_exec(c, "SELECT 1", NULL, 0, NULL));
    OK(txm_reconnect(c));

    /* After COMMIT: the commit happened and is reported as done. */
    OK(txm_begin(&t, c, NULL));
    x(c, "INSERT INTO pgc_child VALUES (32, 's', 1, 0)");
    OK(txm_begin(&n, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_child VALUES (33, 'a', 1, 0)", NULL, 0, NULL));
    OK(txm_rollback(n));
    OK(txm_commit(t));
    cr_assert_eq(q1(check, "SELECT COUNT(*) FROM pgc_child WHERE id = 32"), 1, "committed");
    r = last();
    cr_assert_eq(r.code, TXM_EUNIQUE);
    cr_assert_str_eq(r.column, "");
    RC(TXM_ECONNECTION, txm_exec(c, "SELECT 1", NULL, 0, NULL));
    with_lookup(NULL);
    txm_close(check);
    txm_close(c);
}

Test(pg_columns, fault_driver_loss_at_the_rollback_keeps_the_cause)
{
    char url[2200];
    txm_conn *c;
    txm_tx *t;
    rec r;
    NEED_PG();
    c = fresh();
    txm_close(c);
    snprintf(url, sizeof url, "fault+%s%sfault=disconnect&fault_at=rollback", pg_url(),
             strchr(pg_url(), '?') ? "&" : "?");
    c = check_open(url, NULL);
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_child VALUES (40, 'a', 1, 0)", NULL, 0, NULL));
    RC(TXM_ETX_ABORTED, txm_commit(t)); /* the ROLLBACK (and its lookup) never left */
    r = last();
    cr_assert_eq(r.cause_code, TXM_EUNIQUE);
    cr_assert_str_eq(r.cause_sqlstate, "23505");
    cr_assert_str_eq(r.cause_constraint, "pgc_uq_code");
    cr_assert_str_eq(r.cause_column, "");
    RC(TXM_ECONNECTION, txm_exec(c, "SELECT 1", NULL, 0, NULL));
    txm_close(c);
}

Test(pg_columns, aborted_transaction_records_carry_25P02)
{
    txm_conn *c;
    txm_tx *t, *j;
    txm_tx_options jo = TXM_TX_OPTIONS_INIT;
    rec r;
    uint64_t before;
    NEED_PG();
    c = fresh();
    OK(txm_begin(&t, c, NULL));
    RC(TXM_EUNIQUE, txm_exec(c, "INSERT INTO pgc_child VALUES (50, 'a', 1, 0)", NULL, 0, NULL));
    before = rt(c);
    RC(TXM_ETX_ABORTED, txm_exec(c, "SELECT 1", NULL, 0, NULL)); /* refused locally */
    cr_assert_eq(rt(c), before, "refused without a round trip");
    r = last();
    cr_assert_str_eq(r.sqlstate, "25P02");
    cr_assert_str_eq(r.cause_sqlstate, "23505");
    RC(TXM_ETX_ABORTED, txm_commit(t));
    cr_assert_str_eq(last().sqlstate, "25P02");
    /* A joined level that rolled back dooms its owner: that record is an aborted transaction too. */
    jo.flags = TXM_TX_JOIN;
    OK(txm_begin(&t, c, NULL));
    OK(txm_begin(&j, c, &jo));
    OK(txm_rollback(j));
    RC(TXM_ETX_ABORTED, txm_commit(t));
    r = last();
    cr_assert_str_eq(r.sqlstate, "25P02");
    cr_assert_eq(r.cause_code, TXM_ETX_ABORTED);
    cr_assert_str_eq(r.cause_sqlstate, "25P02");
    txm_close(c);
}
