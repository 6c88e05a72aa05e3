/* Ledger: posts with running balances, idempotency (also after TXM_ECOMMIT_UNKNOWN), transfers,
 * no-overdraft, overflow, joining a caller's transaction, verify and the corruptions it finds. */
#include "billing_fixture.h"

#include <stdint.h>
#include <txm/fault.h>

TestSuite(ledger, .fini = bf_cleanup);

static int64_t count_entries(txm_conn *c)
{
    int64_t n = -1;
    BF_OK(txm_query_i64(c, &n, "SELECT COUNT(*) FROM billing_entries", NULL, 0));
    return n;
}

static int64_t balance_of(const txm_billing *b, txm_conn *c, int64_t id)
{
    int64_t v = -1;
    BF_OK(txm_billing_balance(b, c, id, &v));
    return v;
}

static int64_t account(const txm_billing *b, txm_conn *c, const char *name, unsigned flags)
{
    int64_t id = 0;
    BF_OK(txm_billing_account(b, c, name, flags, &id, NULL));
    return id;
}

static void raw(txm_conn *c, const char *sql, int64_t a, int64_t b2)
{
    txm_value p[2] = {txm_int(a), txm_int(b2)};
    size_t n = strchr(sql, '?') ? (strchr(strchr(sql, '?') + 1, '?') ? 2 : 1) : 0;
    BF_OK(txm_exec(c, sql, p, n, NULL));
}

static void verify_ok(const txm_billing *b, txm_conn *c)
{
    txm_billing_report r;
    int rc = txm_billing_verify(b, c, &r);
    cr_assert_eq(rc, 0, "verify: %s (%s)", txm_err_name(rc), r.message);
    cr_assert_eq(r.ok, 1);
}

Test(ledger, post_stores_the_running_balance_and_a_replay_changes_nothing)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "alice", 0);
    txm_billing_entry e1, e2, r;
    BF_OK(txm_billing_post(b, c, a, 100, "k1", &e1));
    cr_assert(e1.id > 0);
    cr_assert_eq(e1.account_id, a);
    cr_assert_eq(e1.seq, 1);
    cr_assert_eq(e1.amount, 100);
    cr_assert_eq(e1.balance, 100);
    cr_assert_eq(e1.replayed, 0);
    BF_OK(txm_billing_post(b, c, a, -30, "k2", &e2));
    cr_assert_eq(e2.seq, 2);
    cr_assert_eq(e2.balance, 70);
    cr_assert_neq(e2.id, e1.id);
    BF_OK(txm_billing_post(b, c, a, 100, "k1", &r));
    cr_assert_eq(r.replayed, 1);
    cr_assert_eq(r.id, e1.id);
    cr_assert_eq(r.seq, 1);
    cr_assert_eq(r.balance, 100);
    cr_assert_eq(r.amount, 100);
    cr_assert_eq(r.account_id, a);
    cr_assert_eq(balance_of(b, c, a), 70, "a replay changed the balance");
    cr_assert_eq(count_entries(c), 2);
    BF_OK(txm_billing_post(b, c, a, 100, "k1", NULL)); /* out may be NULL */
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, the_same_key_for_another_operation_is_refused)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", 0), z = account(b, c, "z", 0);
    txm_billing_entry e = {0};
    BF_OK(txm_billing_post(b, c, a, 50, "key", NULL));
    cr_assert_eq(txm_billing_post(b, c, a, 51, "key", &e), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_post") && strstr(txm_error_last()->message, "already used"),
              "%s", txm_error_last()->message);
    cr_assert(strstr(txm_error_last()->message, "a post of 50") && strstr(txm_error_last()->message, "a post of 51"),
              "names both: %s", txm_error_last()->message);
    cr_assert_eq(e.id, 0);
    cr_assert_eq(txm_billing_post(b, c, z, 50, "key", NULL), TXM_EINVALID);
    /* A transfer with a post's key, and a post with a transfer's key. */
    cr_assert_eq(txm_billing_transfer(b, c, a, z, 50, "key", NULL, NULL), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "a transfer of 50"), "%s", txm_error_last()->message);
    BF_OK(txm_billing_transfer(b, c, a, z, 10, "tkey", NULL, NULL));
    cr_assert_eq(txm_billing_post(b, c, a, -10, "tkey", NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, a, z, 11, "tkey", NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, z, a, 10, "tkey", NULL, NULL), TXM_EINVALID);
    cr_assert_eq(balance_of(b, c, a), 40);
    cr_assert_eq(balance_of(b, c, z), 10);
    cr_assert_eq(count_entries(c), 3);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, bad_arguments_are_refused_before_anything_is_sent)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", 0), z = account(b, c, "z", 0);
    cr_assert_eq(txm_billing_post(b, c, a, 0, "k", NULL), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_post: amount is 0"), "%s", txm_error_last()->message);
    cr_assert_eq(txm_billing_post(b, c, a, 1, NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_post(b, c, a, 1, "", NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_post(NULL, c, a, 1, "k", NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_post(b, NULL, a, 1, "k", NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, a, z, 0, "k", NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, a, z, -5, "k", NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, a, z, INT64_MIN, "k", NULL, NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, a, a, 5, "k", NULL, NULL), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "same account"), "%s", txm_error_last()->message);
    cr_assert_eq(count_entries(c), 0);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, unknown_accounts_are_not_found_and_leave_nothing)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", 0);
    BF_OK(txm_billing_post(b, c, a, 100, "seed", NULL));
    cr_assert_eq(txm_billing_post(b, c, a + 1000, 5, "k", NULL), TXM_ENOTFOUND);
    cr_assert(strstr(txm_error_last()->message, "no account with id"), "%s", txm_error_last()->message);
    /* Missing credit side (after the debit in lock order) and missing debit side. */
    cr_assert_eq(txm_billing_transfer(b, c, a, a + 1000, 5, "t1", NULL, NULL), TXM_ENOTFOUND);
    cr_assert_eq(txm_billing_transfer(b, c, a + 1000, a, 5, "t2", NULL, NULL), TXM_ENOTFOUND);
    cr_assert_eq(txm_billing_transfer(b, c, -7, a, 5, "t3", NULL, NULL), TXM_ENOTFOUND);
    cr_assert_eq(balance_of(b, c, a), 100);
    cr_assert_eq(count_entries(c), 1);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, overflow_in_either_direction_is_edata_and_writes_nothing)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t hi = account(b, c, "hi", 0), lo = account(b, c, "lo", 0), mid = account(b, c, "mid", 0);
    txm_billing_entry e;
    BF_OK(txm_billing_post(b, c, hi, INT64_MAX - 10, "h1", &e));
    cr_assert_eq(e.balance, INT64_MAX - 10);
    BF_OK(txm_billing_post(b, c, lo, INT64_MIN + 5, "l1", &e));
    cr_assert_eq(e.balance, INT64_MIN + 5);
    cr_assert_eq(txm_billing_post(b, c, hi, 11, "h2", NULL), TXM_EDATA);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_post") && strstr(txm_error_last()->message, "int64"),
              "%s", txm_error_last()->message);
    cr_assert_eq(txm_billing_post(b, c, lo, -6, "l2", NULL), TXM_EDATA);
    cr_assert_eq(txm_billing_post(b, c, lo, INT64_MIN, "l3", NULL), TXM_EDATA);
    BF_OK(txm_billing_post(b, c, hi, 10, "h3", &e)); /* exactly to the edge is fine */
    cr_assert_eq(e.balance, INT64_MAX);
    /* A transfer whose credit overflows: its debit is undone too. */
    BF_OK(txm_billing_post(b, c, mid, 100, "m1", NULL));
    cr_assert_eq(txm_billing_transfer(b, c, mid, hi, 1, "t", NULL, NULL), TXM_EDATA);
    cr_assert_eq(txm_billing_transfer(b, c, hi, mid, INT64_MAX, "t2", NULL, NULL), TXM_EDATA);
    cr_assert_eq(balance_of(b, c, mid), 100);
    cr_assert_eq(balance_of(b, c, hi), INT64_MAX);
    cr_assert_eq(balance_of(b, c, lo), INT64_MIN + 5);
    cr_assert_eq(count_entries(c), 4);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, no_overdraft_is_a_check_error_and_leaves_nothing)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t s = account(b, c, "strict", TXM_BILLING_NO_OVERDRAFT), f = account(b, c, "free", 0);
    txm_billing_entry d, cr;
    cr_assert_eq(txm_billing_post(b, c, s, -1, "p1", NULL), TXM_ECHECK);
    BF_OK(txm_billing_post(b, c, s, 3, "p2", NULL));
    cr_assert_eq(txm_billing_transfer(b, c, s, f, 5, "t1", NULL, NULL), TXM_ECHECK);
    cr_assert_eq(balance_of(b, c, s), 3);
    cr_assert_eq(balance_of(b, c, f), 0);
    cr_assert_eq(count_entries(c), 1);
    BF_OK(txm_billing_transfer(b, c, s, f, 3, "t2", &d, &cr)); /* down to exactly 0 */
    cr_assert_eq(d.balance, 0);
    BF_OK(txm_billing_post(b, c, f, -10, "p3", NULL)); /* the other account may go negative */
    cr_assert_eq(balance_of(b, c, f), -7);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, transfer_writes_two_legs_and_replays_both)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t x = account(b, c, "x", 0), y = account(b, c, "y", 0);
    txm_billing_entry d, cr, d2, cr2;
    BF_OK(txm_billing_post(b, c, y, 7, "seed", NULL));
    /* from the higher id to the lower: the locks go in id order, the roles stay. */
    BF_OK(txm_billing_transfer(b, c, y, x, 5, "t", &d, &cr));
    cr_assert_eq(d.account_id, y);
    cr_assert_eq(d.amount, -5);
    cr_assert_eq(d.seq, 2);
    cr_assert_eq(d.balance, 2);
    cr_assert_eq(cr.account_id, x);
    cr_assert_eq(cr.amount, 5);
    cr_assert_eq(cr.seq, 1);
    cr_assert_eq(cr.balance, 5);
    cr_assert_eq(d.replayed + cr.replayed, 0);
    BF_OK(txm_billing_transfer(b, c, y, x, 5, "t", &d2, &cr2));
    cr_assert_eq(d2.replayed, 1);
    cr_assert_eq(cr2.replayed, 1);
    cr_assert_eq(d2.id, d.id);
    cr_assert_eq(cr2.id, cr.id);
    cr_assert_eq(cr2.balance, 5);
    cr_assert_eq(balance_of(b, c, x), 5);
    cr_assert_eq(balance_of(b, c, y), 2);
    cr_assert_eq(count_entries(c), 3);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, a_post_joins_the_callers_transaction)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", TXM_BILLING_NO_OVERDRAFT), z = account(b, c, "z", 0);
    txm_billing_entry e;
    txm_tx *tx = NULL;
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_post(b, c, a, 10, "in-rolled-back", &e));
    cr_assert_eq(e.balance, 10);
    BF_OK(txm_rollback(tx));
    cr_assert_eq(balance_of(b, c, a), 0);
    cr_assert_eq(count_entries(c), 0);

    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_post(b, c, a, 10, "good1", NULL));
    /* Failing posts inside: each undoes only itself; the caller's transaction goes on. */
    cr_assert_eq(txm_billing_post(b, c, a, -11, "overdraft", NULL), TXM_ECHECK);
    cr_assert_eq(txm_billing_post(b, c, a + 1000, 1, "missing", NULL), TXM_ENOTFOUND);
    cr_assert_eq(txm_billing_post(b, c, a, 11, "good1", NULL), TXM_EINVALID);
    cr_assert_eq(txm_billing_transfer(b, c, a, z, 50, "tr-over", NULL, NULL), TXM_ECHECK);
    BF_OK(txm_billing_post(b, c, a, 10, "good1", &e)); /* a replay inside the same transaction */
    cr_assert_eq(e.replayed, 1);
    BF_OK(txm_billing_transfer(b, c, a, z, 4, "good2", NULL, NULL));
    BF_OK(txm_commit(tx));
    cr_assert_eq(balance_of(b, c, a), 6);
    cr_assert_eq(balance_of(b, c, z), 4);
    cr_assert_eq(count_entries(c), 3);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

typedef struct hook_post {
    txm_billing *b;
    int64_t account;
    int rc;
    txm_billing_entry e;
} hook_post;

static int post_from_hook(txm_conn *c, void *payload)
{
    hook_post *h = payload;
    h->rc = txm_billing_post(h->b, c, h->account, 42, "from-hook", &h->e);
    return h->rc;
}

Test(ledger, a_post_from_an_on_commit_hook_runs_as_its_own_transaction)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    hook_post h;
    txm_tx *tx = NULL;
    memset(&h, 0, sizeof h);
    h.b = b;
    h.account = account(b, c, "hooked", 0);
    h.rc = 99;
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_billing_post(b, c, h.account, 1, "before-hook", NULL));
    BF_OK(txm_on_commit(c, post_from_hook, &h, NULL));
    BF_OK(txm_commit(tx));
    cr_assert_eq(h.rc, 0, "the hook's post failed: %s", txm_err_name(h.rc));
    cr_assert_eq(h.e.seq, 2);
    cr_assert_eq(h.e.balance, 43);
    cr_assert_eq(balance_of(b, c, h.account), 43);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, hostile_idempotency_keys_are_stored_verbatim)
{
    static const char *const keys[] = {"'", "\"", "`", "'); DROP TABLE billing_entries; --", "a\\b", "?", "Key", "key",
                                       "key ", "ключ", "%s%n"};
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", 0);
    char k200[201], k201[202];
    size_t i;
    memset(k200, 'x', 200);
    k200[200] = '\0';
    memset(k201, 'y', 201);
    k201[201] = '\0';
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        txm_billing_entry e;
        txm_rows *r = NULL;
        txm_value p;
        size_t len = 0;
        const char *got;
        BF_OK(txm_billing_post(b, c, a, 1, keys[i], &e));
        cr_assert_eq(e.replayed, 0, "key '%s' collided with another", keys[i]);
        p = txm_int(e.id);
        BF_OK(txm_query(&r, c, "SELECT idem_key FROM billing_entries WHERE id = ?", &p, 1));
        cr_assert(txm_rows_next(r));
        got = txm_rows_get_text(r, 0, &len);
        cr_assert(got && len == strlen(keys[i]) && memcmp(got, keys[i], len) == 0, "key '%s' stored as '%.*s'",
                  keys[i], (int)len, got ? got : "");
        txm_rows_free(r);
    }
    BF_OK(txm_billing_post(b, c, a, 1, k200, NULL));
    cr_assert_eq(txm_billing_post(b, c, a, 1, k201, NULL), TXM_EINVALID);
    cr_assert(strstr(txm_error_last()->message, "idempotency key"), "%s", txm_error_last()->message);
    cr_assert_eq(count_entries(c), (int64_t)(sizeof keys / sizeof keys[0]) + 1);
    cr_assert_eq(balance_of(b, c, a), (int64_t)(sizeof keys / sizeof keys[0]) + 1);
    verify_ok(b, c);
    txm_billing_free(b);
    txm_close(c);
}

/* verify: each kind of corruption, made with raw SQL, is found and named precisely. */
typedef struct corrupt_case {
    const char *name;
    const char *sql; /* ? = account id, ? = entry id (the second entry of account b) */
    int64_t want_entry; /* 0: the account row, 1: the entry damaged, 2: the entry after it */
    const char *want;
} corrupt_case;

static void check_corruption(const corrupt_case *k)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a1 = account(b, c, "a1", 0), a2 = account(b, c, "a2", 0), a3 = account(b, c, "a3", 0);
    txm_billing_entry e[3];
    txm_billing_report r;
    int rc;
    BF_OK(txm_billing_post(b, c, a1, 5, "x1", NULL));
    BF_OK(txm_billing_post(b, c, a2, 10, "y1", &e[0]));
    BF_OK(txm_billing_post(b, c, a2, 20, "y2", &e[1]));
    BF_OK(txm_billing_post(b, c, a2, -3, "y3", &e[2]));
    BF_OK(txm_billing_transfer(b, c, a1, a3, 2, "z", NULL, NULL));
    verify_ok(b, c);
    if (strstr(k->sql, "?"))
        raw(c, k->sql, strstr(k->sql, "account_id = ?") || strstr(k->sql, "WHERE id = ? AND 1") ? a2 : e[1].id,
            e[1].id);
    else
        raw(c, k->sql, 0, 0);
    rc = txm_billing_verify(b, c, &r);
    cr_assert_eq(rc, TXM_EDATA, "%s: verify returned %s", k->name, txm_err_name(rc));
    cr_assert_eq(r.ok, 0);
    cr_assert_eq(r.account_id, a2, "%s: account %lld", k->name, (long long)r.account_id);
    cr_assert_eq(r.entry_id, k->want_entry == 0 ? 0 : e[k->want_entry].id, "%s: entry %lld", k->name,
                 (long long)r.entry_id);
    cr_assert(strstr(r.message, k->want), "%s: message '%s' lacks '%s'", k->name, r.message, k->want);
    cr_assert(strstr(txm_error_last()->message, "txm_billing_verify") && strstr(txm_error_last()->message, k->want),
              "%s", txm_error_last()->message);
    cr_assert_eq(r.accounts, 2, "%s: stopped at the second account", k->name);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, verify_finds_a_changed_entry_balance)
{
    corrupt_case k = {"entry balance", "UPDATE billing_entries SET balance = balance + 1 WHERE id = ?", 1,
                      "has balance 31, expected 10 + 20 = 30"};
    check_corruption(&k);
}

Test(ledger, verify_finds_a_changed_amount)
{
    corrupt_case k = {"entry amount", "UPDATE billing_entries SET amount = 21 WHERE id = ?", 1,
                      "has balance 30, expected 10 + 21 = 31"};
    check_corruption(&k);
}

Test(ledger, verify_finds_a_missing_entry)
{
    corrupt_case k = {"gap", "DELETE FROM billing_entries WHERE id = ?", 2, "has seq 3, expected 2 (seq 2 is missing)"};
    check_corruption(&k);
}

Test(ledger, verify_finds_a_changed_account_balance)
{
    corrupt_case k = {"account balance", "UPDATE billing_accounts SET balance = 99 WHERE id = ? AND 1 = 1", 0,
                      "balance is 99, but its last entry"};
    check_corruption(&k);
}

Test(ledger, verify_finds_a_changed_last_seq)
{
    corrupt_case k = {"last_seq", "UPDATE billing_accounts SET last_seq = 4 WHERE id = ? AND 1 = 1", 0,
                      "last_seq is 4, but the account has 3 entries"};
    check_corruption(&k);
}

Test(ledger, verify_finds_an_account_without_entries_that_has_a_balance)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a1 = account(b, c, "a1", 0), a2 = account(b, c, "a2", 0);
    txm_billing_report r;
    BF_OK(txm_billing_post(b, c, a1, 5, "x1", NULL));
    raw(c, "UPDATE billing_accounts SET balance = 7 WHERE id = ?", a2, 0);
    cr_assert_eq(txm_billing_verify(b, c, &r), TXM_EDATA);
    cr_assert_eq(r.account_id, a2);
    cr_assert_eq(r.entry_id, 0);
    cr_assert(strstr(r.message, "balance is 7, but the account has no entries"), "%s", r.message);
    cr_assert_eq(r.entries, 1);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, verify_walks_more_than_one_page)
{
    txm_conn *c = bf_open();
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "big", 0), z = account(b, c, "other", 0);
    txm_billing_report r;
    txm_tx *tx = NULL;
    char key[32];
    int i;
    /* 2,300 entries: more than one page (2,000) of verify's keyset walk. One transaction of
     * them keeps SQLite fast; on PostgreSQL each post's savepoint costs, so they commit in
     * transactions of 100. */
    for (i = 0; i < 2300; i++) {
        if (i % 100 == 0)
            BF_OK(txm_begin(&tx, c, NULL));
        snprintf(key, sizeof key, "p%d", i);
        BF_OK(txm_billing_post(b, c, i % 10 ? a : z, i % 7 - 3 ? i % 7 - 3 : 1, key, NULL));
        if (i % 100 == 99)
            BF_OK(txm_commit(tx));
    }
    BF_OK(txm_billing_verify(b, c, &r));
    cr_assert_eq(r.entries, 2300);
    cr_assert_eq(r.accounts, 2);
    /* A gap in the second page of the big account (its seq 2,050 is the 2,050th entry). */
    raw(c, "DELETE FROM billing_entries WHERE account_id = ? AND seq = 2050", a, 0);
    cr_assert_eq(txm_billing_verify(b, c, &r), TXM_EDATA);
    cr_assert_eq(r.account_id, a);
    cr_assert(strstr(r.message, "seq 2050 is missing"), "%s", r.message);
    cr_assert_eq(r.entries, 2050);
    txm_billing_free(b);
    txm_close(c);
}

/* COMMIT_UNKNOWN: the post's COMMIT executed (or not) and the connection died before the answer.
 * Re-posting with the same key after reconnecting returns the original entry, or posts it once. */
static void commit_unknown(const char *fault, int committed)
{
    char url[700];
    const char *base;
    txm_conn *c = bf_open(), *f = NULL;
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "uncertain", 0);
    txm_billing_entry e;
    txm_outcome oc;
    int rc;
    base = bf_url();
    snprintf(url, sizeof url, "fault+%s", base);
    BF_OK(txm_open(&f, url, NULL));
    BF_OK(txm_billing_post(b, f, a, 5, "before", NULL));
    snprintf(url, sizeof url, "fault=%s", fault);
    BF_OK(txm_fault_set(f, url));
    rc = txm_billing_post(b, f, a, 100, "pay-1", &e);
    cr_assert_eq(rc, TXM_ECOMMIT_UNKNOWN, "%s: post returned %s: %s", fault, txm_err_name(rc),
                 txm_error_last()->message);
    cr_assert_eq(txm_fault_count(f), 1);
    if (txm_resolve_outcome(f, &oc) == 0) /* PostgreSQL can tell; the key works either way */
        cr_assert_eq(oc, committed ? TXM_OUTCOME_COMMITTED : TXM_OUTCOME_ABORTED);
    BF_OK(txm_reconnect(f));
    BF_OK(txm_billing_post(b, f, a, 100, "pay-1", &e));
    cr_assert_eq(e.replayed, committed, "%s: replayed = %d", fault, e.replayed);
    cr_assert_eq(e.seq, 2);
    cr_assert_eq(e.balance, 105);
    BF_OK(txm_billing_post(b, f, a, 100, "pay-1", &e));
    cr_assert_eq(e.replayed, 1);
    cr_assert_eq(balance_of(b, c, a), 105, "%s: the money arrived %s", fault, committed ? "twice" : "never");
    cr_assert_eq(count_entries(c), 2);
    /* A transfer's COMMIT lost the same way. */
    {
        int64_t z = account(b, c, "z", 0);
        txm_billing_entry d, cr;
        BF_OK(txm_fault_set(f, url));
        cr_assert_eq(txm_billing_transfer(b, f, a, z, 30, "tr-1", NULL, NULL), TXM_ECOMMIT_UNKNOWN);
        BF_OK(txm_reconnect(f));
        BF_OK(txm_billing_transfer(b, f, a, z, 30, "tr-1", &d, &cr));
        cr_assert_eq(d.replayed, committed);
        cr_assert_eq(cr.replayed, committed);
        cr_assert_eq(balance_of(b, c, a), 75);
        cr_assert_eq(balance_of(b, c, z), 30);
    }
    verify_ok(b, c);
    txm_close(f);
    txm_billing_free(b);
    txm_close(c);
}

Test(ledger, commit_unknown_committed_then_replayed)
{
    commit_unknown("commit_unknown", 1);
}

Test(ledger, commit_unknown_aborted_then_posted_once)
{
    commit_unknown("commit_unknown_aborted", 0);
}

/* A deadlock (injected at the entry's statement, after the account row was updated) is retried
 * on its own outside a transaction and posts exactly once; inside a caller's transaction it is
 * returned with TXM_ERRF_TX_LOST for the caller's retry. */
Test(ledger, a_deadlock_is_retried_and_posts_once)
{
    char url[700], spec[80];
    txm_conn *c = bf_open(), *f = NULL;
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", 0), z = account(b, c, "z", 0);
    int at = strcmp(bf_engine(), "postgresql") == 0 ? 1 : 2; /* the CTE / the INSERT after the UPDATE */
    txm_billing_entry e, d;
    txm_stats st;
    txm_tx *tx = NULL;
    int rc;
    snprintf(url, sizeof url, "fault+%s", bf_url());
    BF_OK(txm_open(&f, url, NULL));
    snprintf(spec, sizeof spec, "fault=deadlock&fault_at=%d&fault_times=2", at);
    BF_OK(txm_fault_set(f, spec));
    txm_stats_reset(f);
    BF_OK(txm_billing_post(b, f, a, 9, "dl-1", &e));
    cr_assert_eq(txm_fault_count(f), 2);
    txm_stats_get(f, &st);
    cr_assert_eq(st.retries, 2);
    cr_assert_eq(e.replayed, 0);
    cr_assert_eq(e.seq, 1);
    /* The transfer's second leg (PostgreSQL: its second CTE; elsewhere its second UPDATE...). */
    snprintf(spec, sizeof spec, "fault=deadlock&fault_at=%d", at + 1);
    BF_OK(txm_fault_set(f, spec));
    BF_OK(txm_billing_transfer(b, f, a, z, 4, "dl-2", &d, &e));
    cr_assert_eq(txm_fault_count(f), 3); /* counts since open */
    cr_assert_eq(e.balance, 4);
    cr_assert_eq(d.balance, 5);
    /* Inside a caller's transaction: returned, the transaction lost, nothing written. */
    snprintf(spec, sizeof spec, "fault=deadlock&fault_at=%d", at);
    BF_OK(txm_begin(&tx, f, NULL));
    BF_OK(txm_fault_set(f, spec));
    rc = txm_billing_post(b, f, a, 1, "dl-3", NULL);
    cr_assert_eq(rc, TXM_EDEADLOCK, "%s", txm_err_name(rc));
    cr_assert(txm_error_last()->flags & TXM_ERRF_TX_LOST);
    txm_rollback(tx);
    cr_assert_eq(balance_of(b, c, a), 5);
    cr_assert_eq(balance_of(b, c, z), 4);
    cr_assert_eq(count_entries(c), 3);
    verify_ok(b, c);
    txm_close(f);
    txm_billing_free(b);
    txm_close(c);
}

/* The original post committed by another connection after the caller's transaction took its
 * snapshot (MySQL's default REPEATABLE READ): the replay still finds it (a locking read). */
Test(ledger, a_replay_inside_an_older_snapshot_finds_the_original)
{
    txm_conn *c = bf_open(), *other;
    txm_billing *b = bf_billing(c, NULL);
    int64_t a = account(b, c, "a", 0), n = 0;
    txm_billing_entry e, orig;
    txm_tx *tx = NULL;
    if (strcmp(bf_engine(), "sqlite") == 0) {
        txm_billing_free(b);
        txm_close(c);
        cr_skip_test("SQLite: a write transaction holds the database's write lock, so no other post can commit "
                     "after its snapshot");
    }
    other = bf_open();
    BF_OK(txm_begin(&tx, c, NULL));
    BF_OK(txm_query_i64(c, &n, "SELECT COUNT(*) FROM billing_entries", NULL, 0)); /* the snapshot */
    BF_OK(txm_billing_post(b, other, a, 77, "late", &orig));
    BF_OK(txm_billing_post(b, c, a, 77, "late", &e));
    cr_assert_eq(e.replayed, 1);
    cr_assert_eq(e.id, orig.id);
    cr_assert_eq(e.balance, 77);
    cr_assert_eq(txm_billing_post(b, c, a, 78, "late", NULL), TXM_EINVALID);
    BF_OK(txm_commit(tx));
    cr_assert_eq(balance_of(b, c, a), 77);
    cr_assert_eq(count_entries(c), 1);
    txm_close(other);
    txm_billing_free(b);
    txm_close(c);
}
