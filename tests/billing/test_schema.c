/* Billing configuration and schema: options validation, engine binding, idempotent DDL. */
#include "billing_fixture.h"

TestSuite(schema, .fini = bf_cleanup);

Test(schema, create_is_idempotent_and_drop_removes_everything)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t n = -1;
    BF_OK(txm_billing_schema_create(b, c)); /* second time: nothing to do, no error */
    BF_OK(txm_query_i64(c, &n, "SELECT COUNT(*) FROM billing_accounts", NULL, 0));
    cr_assert_eq(n, 0);
    BF_OK(txm_billing_schema_drop(b, c));
    cr_assert_neq(txm_query_i64(c, &n, "SELECT COUNT(*) FROM billing_accounts", NULL, 0), 0,
                  "the accounts table survived txm_billing_schema_drop");
    BF_OK(txm_billing_schema_drop(b, c)); /* dropping what is gone is not an error */
    txm_billing_free(b);
    txm_close(c);
}

Test(schema, hostile_prefixes_are_refused)
{
    static const char *const bad[] = {"1abc", "a b", "a\"; DROP TABLE x; --", "a`b", "x-y",
                                      "abcdefghijabcdefghijabcdefghijabc" /* 33 bytes */, "é"};
    txm_conn *c = bf_open();
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
        txm_billing *b = (txm_billing *)1;
        o.prefix = bad[i];
        cr_assert_eq(txm_billing_new(&b, c, &o), TXM_EINVALID, "prefix '%s' accepted", bad[i]);
        cr_assert_null(b);
        cr_assert(strstr(txm_error_last()->message, "prefix") != NULL, "%s", txm_error_last()->message);
    }
    txm_close(c);
}

Test(schema, options_are_versioned)
{
    txm_conn *c = bf_open();
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b = NULL;
    o.version = 99;
    cr_assert_eq(txm_billing_new(&b, c, &o), TXM_EINVALID);
    cr_assert_eq(txm_billing_options_init(&o, 99), TXM_EINVALID);
    BF_OK(txm_billing_options_init(&o, TXM_BILLING_OPTIONS_VERSION));
    cr_assert_eq(txm_billing_new(&b, NULL, &o), TXM_EINVALID);
    cr_assert_eq(txm_billing_new(NULL, c, &o), TXM_EINVALID);
    txm_close(c);
}

/* A retry policy built against version 1 of txm.h ends at `seed`: billing accepts it and never
 * copies or reads what follows it (0xAB bytes would be an unknown jitter, TXM_EINVALID). */
Test(schema, a_version_1_retry_policy_is_accepted)
{
    txm_conn *c = bf_open();
    txm_billing_options o = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b = NULL;
    union {
        txm_retry_policy p;
        unsigned char bytes[sizeof(txm_retry_policy)];
    } u;
    int64_t id = 0;
    memset(&u, 0xAB, sizeof u);
    BF_OK(txm_retry_policy_init(&u.p, 1));
    o.retry = &u.p;
    BF_OK(txm_billing_new(&b, c, &o));
    BF_OK(txm_billing_schema_create(b, c));
    BF_OK(txm_billing_account(b, c, "v1-policy", 0, &id, NULL));
    cr_assert_gt(id, 0);
    u.p.version = 3;
    txm_billing_free(b);
    b = NULL;
    cr_assert_eq(txm_billing_new(&b, c, &o), TXM_EINVALID, "retry policy version 3 accepted");
    txm_close(c);
}

Test(schema, an_object_refuses_a_connection_to_another_engine)
{
    txm_conn *c = bf_open(), *other = NULL;
    txm_billing *b = NULL;
    BF_OK(txm_billing_new(&b, c, NULL));
    if (strcmp(bf_engine(), "sqlite") == 0) {
        /* A PostgreSQL/MariaDB connection may not exist here; SQLite's other engine is checked by the
         * server runs of this test. */
        txm_billing_free(b);
        txm_close(c);
        cr_skip_test("needs a second engine; the postgresql and mysql runs check this");
    }
    BF_OK(txm_open(&other, "sqlite::memory:", NULL));
    cr_assert_eq(txm_billing_schema_create(b, other), TXM_EMISUSE);
    cr_assert(strstr(txm_error_last()->message, "made for") != NULL, "%s", txm_error_last()->message);
    txm_close(other);
    txm_billing_free(b);
    txm_close(c);
}

Test(schema, refuses_to_run_inside_a_transaction)
{
    txm_conn *c = bf_open();
    txm_billing *b = NULL;
    txm_tx *tx = NULL;
    BF_OK(txm_billing_new(&b, c, NULL));
    BF_OK(txm_begin(&tx, c, NULL));
    cr_assert_eq(txm_billing_schema_create(b, c), TXM_EMISUSE);
    BF_OK(txm_rollback(tx));
    txm_billing_free(b);
    txm_close(c);
}
