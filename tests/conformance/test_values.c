/* Values through parameters and back through txm_rows: extremes, text with quotes and Unicode,
 * blobs with NUL bytes, NULL, affected-row counts, the rows accessors. */
#include "harness.h"

#include <float.h>

static void insert_val(int64_t id, txm_value i, txm_value r, txm_value t, txm_value b)
{
    txm_value p[5] = {txm_int(id), i, r, t, b};
    int64_t affected = -7;
    CONF_OK(txm_exec(conf.c, "INSERT INTO t_vals (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)", p, 5, &affected));
    cr_assert(affected == 1, "INSERT affected %lld rows", (long long)affected);
}

static txm_rows *select_val(int64_t id)
{
    txm_value p = txm_int(id);
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT i, r, t, b FROM t_vals WHERE id = ?", &p, 1));
    cr_assert(rows != NULL);
    cr_assert(txm_rows_count(rows) == 1, "rows: %zu", txm_rows_count(rows));
    cr_assert(txm_rows_next(rows) == 1);
    return rows;
}

Test(values, int64_extremes, .init = conf_init_all, .fini = conf_fini)
{
    static const int64_t vals[] = {INT64_MIN, INT64_MAX, 0, -1, 1, INT32_MAX + 1LL, INT32_MIN - 1LL};
    size_t n = sizeof vals / sizeof vals[0];
    for (size_t k = 0; k < n; k++)
        insert_val((int64_t)k, txm_int(vals[k]), txm_null(), txm_null(), txm_null());
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT id, i FROM t_vals ORDER BY id", NULL, 0));
    cr_assert(txm_rows_count(rows) == n);
    for (size_t k = 0; k < n; k++) {
        cr_assert(txm_rows_next(rows) == 1);
        cr_assert(txm_rows_type(rows, 1) == TXM_T_INT, "row %zu: type %d, expected TXM_T_INT", k,
                  (int)txm_rows_type(rows, 1));
        int64_t got = txm_rows_get_i64(rows, 1);
        cr_assert(got == vals[k], "row %zu: %lld, expected %lld", k, (long long)got, (long long)vals[k]);
    }
    cr_assert(txm_rows_next(rows) == 0);
    txm_rows_free(rows);
    /* as parameters in a WHERE clause and through txm_query_i64 */
    for (size_t k = 0; k < 2; k++) {
        txm_value p = txm_int(vals[k]);
        int64_t got = 0;
        CONF_OK(txm_query_i64(conf.c, &got, "SELECT i FROM t_vals WHERE i = ?", &p, 1));
        cr_assert(got == vals[k]);
    }
}

Test(values, real, .init = conf_init_all, .fini = conf_fini)
{
    static const double vals[] = {3.25, -1.5e300, 1e-300, 0.1, -0.0, DBL_MAX};
    size_t n = sizeof vals / sizeof vals[0];
    for (size_t k = 0; k < n; k++)
        insert_val((int64_t)k, txm_null(), txm_real(vals[k]), txm_null(), txm_null());
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT r FROM t_vals ORDER BY id", NULL, 0));
    for (size_t k = 0; k < n; k++) {
        cr_assert(txm_rows_next(rows) == 1);
        cr_assert(txm_rows_type(rows, 0) == TXM_T_REAL, "row %zu: type %d, expected TXM_T_REAL", k,
                  (int)txm_rows_type(rows, 0));
        double got = txm_rows_get_double(rows, 0);
        cr_assert(got == vals[k], "row %zu: %.17g, expected %.17g (must round-trip exactly)", k, got, vals[k]);
    }
    txm_rows_free(rows);
}

Test(values, text_with_quotes_and_unicode, .init = conf_init_all, .fini = conf_fini)
{
    static const char *const vals[] = {
        "it's \"quoted\"; DROP TABLE t_vals; --",
        "back\\slash \\' \\\" and \t tab",
        "Gr\u00fc\u00dfe \u65e5\u672c \U0001F600", /* Grüße 日本 😀, UTF-8 */
        "",
        "?",
    };
    size_t n = sizeof vals / sizeof vals[0];
    for (size_t k = 0; k < n; k++)
        insert_val((int64_t)k, txm_null(), txm_null(), txm_text(vals[k]), txm_null());
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT t FROM t_vals ORDER BY id", NULL, 0));
    for (size_t k = 0; k < n; k++) {
        cr_assert(txm_rows_next(rows) == 1);
        cr_assert(txm_rows_type(rows, 0) == TXM_T_TEXT, "row %zu: type %d, expected TXM_T_TEXT", k,
                  (int)txm_rows_type(rows, 0));
        cr_assert(!txm_rows_is_null(rows, 0), "row %zu: empty text read back as NULL", k);
        size_t len = 12345;
        const char *got = txm_rows_get_text(rows, 0, &len);
        cr_assert(got != NULL);
        cr_assert(len == strlen(vals[k]) && memcmp(got, vals[k], len) == 0, "row %zu: '%.*s' (%zu bytes), expected '%s'",
                  k, (int)len, got, len, vals[k]);
        cr_assert(got[len] == '\0', "text must be NUL-terminated");
    }
    txm_rows_free(rows);
    /* and as a parameter in a comparison */
    txm_value p = txm_text(vals[2]);
    int64_t cnt = 0;
    CONF_OK(txm_query_i64(conf.c, &cnt, "SELECT COUNT(*) FROM t_vals WHERE t = ?", &p, 1));
    cr_assert(cnt == 1);
}

Test(values, blob_with_nul_bytes, .init = conf_init_all, .fini = conf_fini)
{
    static const unsigned char blob[] = {0x00, 0x01, 0x00, 0xff, 'a', 0x00, 0x80, '\'', '\\', 0x00};
    insert_val(1, txm_null(), txm_null(), txm_null(), txm_blob(blob, sizeof blob));
    insert_val(2, txm_null(), txm_null(), txm_null(), txm_blob("", 0));
    txm_rows *rows = select_val(1);
    cr_assert(txm_rows_type(rows, 3) == TXM_T_BLOB, "type %d, expected TXM_T_BLOB", (int)txm_rows_type(rows, 3));
    size_t len = 0;
    const char *got = txm_rows_get_text(rows, 3, &len);
    cr_assert(got != NULL && len == sizeof blob, "blob length %zu, expected %zu", len, sizeof blob);
    cr_assert(memcmp(got, blob, len) == 0, "blob bytes differ");
    txm_rows_free(rows);
    rows = select_val(2);
    cr_assert(!txm_rows_is_null(rows, 3), "an empty blob read back as NULL");
    len = 99;
    got = txm_rows_get_text(rows, 3, &len);
    cr_assert(got != NULL && len == 0, "empty blob: length %zu", len);
    txm_rows_free(rows);
}

Test(values, null_round_trip, .init = conf_init_all, .fini = conf_fini)
{
    insert_val(1, txm_null(), txm_null(), txm_text(NULL), txm_null());
    txm_rows *rows = select_val(1);
    for (size_t col = 0; col < 4; col++) {
        cr_assert(txm_rows_is_null(rows, col), "column %zu is not NULL", col);
        cr_assert(txm_rows_type(rows, col) == TXM_T_NULL, "column %zu: type %d", col, (int)txm_rows_type(rows, col));
        cr_assert(txm_rows_get_i64(rows, col) == 0);
    }
    txm_rows_free(rows);
    int64_t v = 5;
    CONF_RC(TXM_ENOTFOUND, txm_query_i64(conf.c, &v, "SELECT i FROM t_vals WHERE id = 1", NULL, 0));
    CONF_RC(TXM_ENOTFOUND, txm_query_i64(conf.c, &v, "SELECT i FROM t_vals WHERE id = 2", NULL, 0));
    /* NULL parameters compare as SQL NULL */
    txm_value p = txm_null();
    int64_t cnt = 9;
    CONF_OK(txm_query_i64(conf.c, &cnt, "SELECT COUNT(*) FROM t_vals WHERE i = ?", &p, 1));
    cr_assert(cnt == 0, "NULL = NULL must not match");
}

Test(values, affected_counts, .init = conf_init, .fini = conf_fini)
{
    int64_t affected = -7;
    for (int i = 1; i <= 3; i++) {
        txm_value p[2] = {txm_int(i), txm_int(i)};
        CONF_OK(txm_exec(conf.c, "INSERT INTO t_item (id, n) VALUES (?, ?)", p, 2, &affected));
        cr_assert(affected == 1);
    }
    CONF_OK(txm_exec(conf.c, "UPDATE t_item SET n = n + 10", NULL, 0, &affected));
    cr_assert(affected == 3, "UPDATE of 3 rows: affected %lld", (long long)affected);
    CONF_OK(txm_exec(conf.c, "UPDATE t_item SET n = 0 WHERE id = 999", NULL, 0, &affected));
    cr_assert(affected == 0, "UPDATE of no row: affected %lld", (long long)affected);
    CONF_OK(txm_exec(conf.c, "DELETE FROM t_item WHERE id >= 2", NULL, 0, &affected));
    cr_assert(affected == 2, "DELETE of 2 rows: affected %lld", (long long)affected);
    /* inside a transaction and a nested level, too */
    txm_tx *t = conf_begin(conf.c);
    txm_tx *n = conf_begin(conf.c);
    CONF_OK(txm_exec(conf.c, "UPDATE t_item SET n = 5", NULL, 0, &affected));
    cr_assert(affected == 1);
    CONF_OK(txm_commit(n));
    CONF_OK(txm_commit(t));
    CONF_OK(txm_exec(conf.c, "UPDATE t_item SET n = 6", NULL, 0, NULL)); /* NULL affected_out is fine */
}

Test(values, rows_accessors, .init = conf_init, .fini = conf_fini)
{
    CONF_OK(conf_item(conf.c, 1));
    CONF_OK(conf_item(conf.c, 2));
    conf_exec(conf.c, "UPDATE t_item SET name = '42' WHERE id = 2");
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT id, name FROM t_item ORDER BY id", NULL, 0));
    cr_assert(txm_rows_count(rows) == 2 && txm_rows_columns(rows) == 2);
    cr_assert_str_eq(txm_rows_column_name(rows, 0), "id");
    cr_assert_str_eq(txm_rows_column_name(rows, 1), "name");
    cr_assert(txm_rows_column_name(rows, 2) == NULL);
    cr_assert(txm_rows_column_index(rows, "name") == 1 && txm_rows_column_index(rows, "nope") == -1);
    cr_assert(txm_rows_is_null(rows, 0), "before the first txm_rows_next there is no current row");
    cr_assert(txm_rows_next(rows) == 1);
    cr_assert(txm_rows_get_i64(rows, 0) == 1);
    cr_assert_str_eq(txm_rows_get_text(rows, 1, NULL), "item-1");
    cr_assert(txm_rows_is_null(rows, 7), "out-of-range columns read as NULL");
    cr_assert(txm_rows_next(rows) == 1);
    cr_assert(txm_rows_get_i64(rows, 1) == 42, "get_i64 converts text holding an integer");
    cr_assert(txm_rows_next(rows) == 0);
    cr_assert(txm_rows_next(rows) == 0);
    txm_rows_free(rows);
    /* an empty result still has its columns */
    CONF_OK(txm_query(&rows, conf.c, "SELECT id, name FROM t_item WHERE id = 999", NULL, 0));
    cr_assert(txm_rows_count(rows) == 0 && txm_rows_columns(rows) == 2);
    cr_assert(txm_rows_next(rows) == 0);
    txm_rows_free(rows);
}

Test(values, many_parameters, .init = conf_init, .fini = conf_fini)
{
    enum { N = 40 };
    for (int i = 1; i <= 5; i++)
        CONF_OK(conf_item(conf.c, i));
    char sql[512] = "SELECT COUNT(*) FROM t_item WHERE id IN (";
    txm_value p[N];
    for (int i = 0; i < N; i++) {
        strcat(sql, i ? ",?" : "?");
        p[i] = txm_int(i % 2 ? i : 1000 + i); /* odd i: 1, 3, 5 exist */
    }
    strcat(sql, ")");
    int64_t n = 0;
    CONF_OK(txm_query_i64(conf.c, &n, sql, p, N));
    cr_assert(n == 3, "IN list of %d parameters matched %lld rows, expected 3", N, (long long)n);
}

Test(values, large_result, .init = conf_init, .fini = conf_fini)
{
    enum { N = 2000 };
    txm_tx *t = conf_begin(conf.c);
    for (int i = 1; i <= N; i++)
        CONF_OK(conf_item(conf.c, i));
    CONF_OK(txm_commit(t));
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT id, name FROM t_item ORDER BY id", NULL, 0));
    cr_assert(txm_rows_count(rows) == N, "%zu rows, expected %d", txm_rows_count(rows), N);
    int64_t sum = 0, k = 0;
    while (txm_rows_next(rows)) {
        k++;
        int64_t id = txm_rows_get_i64(rows, 0);
        cr_assert(id == k, "row %lld has id %lld", (long long)k, (long long)id);
        char want[32];
        snprintf(want, sizeof want, "item-%lld", (long long)id);
        cr_assert_str_eq(txm_rows_get_text(rows, 1, NULL), want);
        sum += id;
    }
    txm_rows_free(rows);
    cr_assert(k == N && sum == (int64_t)N * (N + 1) / 2);
}

Test(values, text_of_numbers, .init = conf_init, .fini = conf_fini)
{
    txm_value p[2] = {txm_text("x"), txm_int(-42)};
    CONF_OK(txm_exec(conf.c, "INSERT INTO t_item (id, name, n) VALUES (1, ?, ?)", p, 2, NULL));
    txm_rows *rows = NULL;
    CONF_OK(txm_query(&rows, conf.c, "SELECT n FROM t_item", NULL, 0));
    cr_assert(txm_rows_next(rows) == 1);
    const char *s = txm_rows_get_text(rows, 0, NULL);
    cr_assert(s != NULL, "get_text never returns NULL for a non-NULL value");
    cr_assert_str_eq(s, "-42", "an integer reads as its decimal text");
    txm_rows_free(rows);
}

/* txm_query_i64 keeps TXM_ENOTFOUND for both "no row" and a NULL value (callers that test for
 * that code keep working) and says which in the message; txm_query_i64_or_null tells them apart:
 * a NULL is a success with *is_null = 1, only a missing row is TXM_ENOTFOUND. Neither poisons the
 * transaction: the statement itself succeeded. */
Test(values, query_i64_null_and_no_row_are_told_apart, .init = conf_init_all, .fini = conf_fini)
{
    int64_t v = 5;
    int is_null = 7;
    insert_val(1, txm_null(), txm_null(), txm_text(NULL), txm_null());
    insert_val(2, txm_int(42), txm_null(), txm_text(NULL), txm_null());

    CONF_RC(TXM_ENOTFOUND, txm_query_i64(conf.c, &v, "SELECT i FROM t_vals WHERE id = 1", NULL, 0));
    cr_assert(conf_contains(txm_error_last()->message, "value is NULL"), "%s", txm_error_last()->message);
    cr_assert(v == 0);
    CONF_RC(TXM_ENOTFOUND, txm_query_i64(conf.c, &v, "SELECT i FROM t_vals WHERE id = 3", NULL, 0));
    cr_assert(conf_contains(txm_error_last()->message, "no row"), "%s", txm_error_last()->message);
    cr_assert(!conf_contains(txm_error_last()->message, "NULL"), "%s", txm_error_last()->message);

    txm_tx *t = conf_begin(conf.c);
    v = 5;
    CONF_OK(txm_query_i64_or_null(conf.c, &v, &is_null, "SELECT i FROM t_vals WHERE id = 1", NULL, 0));
    cr_assert(is_null == 1 && v == 0, "NULL: is_null=%d v=%lld", is_null, (long long)v);
    txm_value p = txm_int(2);
    CONF_OK(txm_query_i64_or_null(conf.c, &v, &is_null, "SELECT i FROM t_vals WHERE id = ?", &p, 1));
    cr_assert(is_null == 0 && v == 42, "value: is_null=%d v=%lld", is_null, (long long)v);
    is_null = 7;
    CONF_RC(TXM_ENOTFOUND, txm_query_i64_or_null(conf.c, &v, &is_null, "SELECT i FROM t_vals WHERE id = 3", NULL, 0));
    cr_assert(is_null == 0 && v == 0, "no row: is_null=%d v=%lld", is_null, (long long)v);
    cr_assert(conf_contains(txm_error_last()->message, "txm_query_i64_or_null"), "%s", txm_error_last()->message);
    cr_assert(conf_contains(txm_error_last()->message, "no row"), "%s", txm_error_last()->message);
    CONF_OK(txm_query_i64_or_null(conf.c, &v, &is_null, "SELECT MAX(i) FROM t_vals WHERE id = 3", NULL, 0));
    cr_assert(is_null == 1, "an aggregate over no row is a row holding NULL");
    /* The transaction is intact. */
    CONF_OK(txm_exec(conf.c, "UPDATE t_vals SET i = 7 WHERE id = 1", NULL, 0, NULL));
    CONF_OK(txm_commit(t));
    CONF_OK(txm_query_i64_or_null(conf.c, &v, &is_null, "SELECT i FROM t_vals WHERE id = 1", NULL, 0));
    cr_assert(is_null == 0 && v == 7);
}
