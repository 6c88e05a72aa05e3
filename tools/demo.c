/*
 * txm demo: nine short stories told on a real database, each checked as it is told. The core's:
 *   1. nesting: an inner level (a savepoint) fails; the outer level handles it and commits
 *   2. hooks: a "notification" registered with txm_on_commit runs only after the outermost COMMIT;
 *      one registered in a level that rolls back is discarded (its on-rollback hook runs instead)
 *   3. poisoning: an error swallowed inside a transaction; the next statement is refused at once
 *      with TXM_ETX_ABORTED naming the original cause
 *   4. retry: txm_retry meets a real lock timeout (a second connection holds the lock), the
 *      before_retry callback releases it, the second attempt commits
 * and prints txm_stats; then the five billing stories of tools/demo_billing.c. SQL is portable
 * across SQLite, PostgreSQL and MySQL/MariaDB; tables are
 * named txm_demo_* and dropped at the end.
 */
#include "tool.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "txm.h"

#define ACCOUNTS "txm_demo_accounts"

typedef struct demo {
    txm_conn *c;
    const char *url;
    const char *driver;
    int notifications_sent;
    int rollbacks_seen;
} demo;

/* Prints "txm demo: WHAT: TXM_EXXX: message [sqlstate, native code] (cause: ...)" and returns 1. */
int txm_tool_demo_fail(const char *what, int rc)
{
    const txm_error *e = txm_error_last();
    fprintf(stderr, "txm demo: %s: %s", what, txm_err_name(rc));
    if (e->code == rc && rc != TXM_OK) {
        fprintf(stderr, ": %s", e->message);
        if (e->sqlstate[0] || e->native_code)
            fprintf(stderr, " [sqlstate %s, native %d]", e->sqlstate[0] ? e->sqlstate : "-",
                    e->native_code);
        if (e->cause)
            fprintf(stderr, " (cause: %s: %s)", txm_err_name(e->cause->code), e->cause->message);
    } else {
        fprintf(stderr, ": %s", txm_strerror(rc));
    }
    fputc('\n', stderr);
    return 1;
}

int txm_tool_demo_check(int ok, const char *fmt, ...)
{
    va_list ap;
    if (ok)
        return 0;
    fprintf(stderr, "txm demo: unexpected: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int exec0(txm_conn *c, const char *sql)
{
    int rc = txm_exec(c, sql, NULL, 0, NULL);
    return rc ? txm_tool_demo_fail(sql, rc) : 0;
}

static int add_account(txm_conn *c, int id, const char *owner, int64_t balance)
{
    txm_value p[3];
    p[0] = txm_int(id);
    p[1] = txm_text(owner);
    p[2] = txm_int(balance);
    return txm_exec(c, "INSERT INTO " ACCOUNTS " (id, owner, balance) VALUES (?, ?, ?)", p, 3, NULL);
}

/* Prints "owner=balance, ..." of every account, ordered by id. */
static int print_accounts(txm_conn *c, const char *indent)
{
    txm_rows *r = NULL;
    int rc = txm_query(&r, c, "SELECT owner, balance FROM " ACCOUNTS " ORDER BY id", NULL, 0);
    int first = 1;
    if (rc)
        return txm_tool_demo_fail("reading accounts", rc);
    printf("%saccounts now: ", indent);
    while (txm_rows_next(r)) {
        printf("%s%s=%lld", first ? "" : ", ", txm_rows_get_text(r, 0, NULL),
               (long long)txm_rows_get_i64(r, 1));
        first = 0;
    }
    printf("%s\n", first ? "(none)" : "");
    txm_rows_free(r);
    return 0;
}

static int count_accounts(txm_conn *c, int64_t *n)
{
    int rc = txm_query_i64(c, n, "SELECT COUNT(*) FROM " ACCOUNTS, NULL, 0);
    return rc ? txm_tool_demo_fail("counting accounts", rc) : 0;
}

static int setup(demo *d)
{
    if (exec0(d->c, "DROP TABLE IF EXISTS " ACCOUNTS))
        return 1;
    return exec0(d->c, "CREATE TABLE " ACCOUNTS " (id INTEGER PRIMARY KEY,"
                       " owner VARCHAR(40) NOT NULL UNIQUE, balance BIGINT NOT NULL)");
}

/* ---- 1. nesting ---------------------------------------------------------------------------- */
static int story_nesting(demo *d)
{
    txm_tx *outer = NULL, *inner = NULL;
    int64_t n = 0;
    int rc;

    printf("\n1. Nesting: an inner level fails, the outer level handles it\n");
    if ((rc = txm_begin(&outer, d->c, NULL)))
        return txm_tool_demo_fail("begin outer", rc);
    if ((rc = add_account(d->c, 1, "alice", 100)))
        return txm_tool_demo_fail("insert alice", rc);
    printf("   outer (depth %d): opened an account for alice with 100\n", txm_depth(d->c));

    if ((rc = txm_begin(&inner, d->c, NULL)))
        return txm_tool_demo_fail("begin inner", rc);
    rc = add_account(d->c, 2, "alice", 5);
    printf("   inner (depth %d, a savepoint): a second account for alice -> %s: %s\n",
           txm_depth(d->c), txm_err_name(rc), rc ? txm_error_last()->message : "(accepted?)");
    if (txm_tool_demo_check(rc == TXM_EUNIQUE, "duplicate owner gave %s, expected TXM_EUNIQUE", txm_err_name(rc)))
        return 1;
    if ((rc = txm_rollback(inner)))
        return txm_tool_demo_fail("rollback inner", rc);
    printf("   inner: rolled back to its savepoint; the outer level is untouched\n");

    if ((rc = add_account(d->c, 3, "carol", 50)))
        return txm_tool_demo_fail("insert carol", rc);
    if ((rc = txm_commit(outer)))
        return txm_tool_demo_fail("commit outer", rc);
    printf("   outer: opened an account for carol with 50 and committed\n");
    if (print_accounts(d->c, "   ") || count_accounts(d->c, &n))
        return 1;
    return txm_tool_demo_check(n == 2, "expected 2 accounts after story 1, found %lld", (long long)n);
}

/* ---- 2. hooks ------------------------------------------------------------------------------ */
typedef struct note {
    demo *d;
    char text[96];
} note;

static note *new_note(demo *d, const char *text)
{
    note *n = malloc(sizeof *n);
    if (n) {
        n->d = d;
        snprintf(n->text, sizeof n->text, "%s", text);
    }
    return n;
}

static int send_notification(txm_conn *c, void *payload)
{
    note *n = payload;
    n->d->notifications_sent++;
    printf("   >> notification sent: %s (connection idle again: depth %d)\n", n->text, txm_depth(c));
    return 0;
}

static int note_rolled_back(txm_conn *c, void *payload)
{
    note *n = payload;
    (void)c;
    n->d->rollbacks_seen++;
    printf("   >> on-rollback: \"%s\" will not be sent\n", n->text);
    return 0;
}

static int hook(demo *d, int on_commit, const char *text)
{
    note *n = new_note(d, text);
    int rc;
    if (!n)
        return txm_tool_demo_fail("allocating a notification", TXM_ENOMEM);
    rc = on_commit ? txm_on_commit(d->c, send_notification, n, free)
                   : txm_on_rollback(d->c, note_rolled_back, n, free);
    if (rc) {
        free(n); /* not taken when registration fails */
        return txm_tool_demo_fail("registering a hook", rc);
    }
    return 0;
}

static int story_hooks(demo *d)
{
    txm_tx *outer = NULL, *inner = NULL;
    txm_value p[2];
    int rc;

    printf("\n2. Hooks: notifications go out after the outermost COMMIT, never after a rollback\n");
    d->notifications_sent = d->rollbacks_seen = 0;
    if ((rc = txm_begin(&outer, d->c, NULL)))
        return txm_tool_demo_fail("begin outer", rc);
    if ((rc = add_account(d->c, 4, "dave", 20)))
        return txm_tool_demo_fail("insert dave", rc);
    if (hook(d, 1, "welcome e-mail to dave"))
        return 1;
    printf("   outer: opened an account for dave, queued \"welcome e-mail to dave\"\n");

    if ((rc = txm_begin(&inner, d->c, NULL)))
        return txm_tool_demo_fail("begin inner", rc);
    p[0] = txm_int(30);
    p[1] = txm_text("dave");
    if ((rc = txm_exec(d->c, "UPDATE " ACCOUNTS " SET balance = balance + ? WHERE owner = ?", p, 2, NULL)))
        return txm_tool_demo_fail("credit dave", rc);
    if (hook(d, 1, "receipt: dave credited 30") || hook(d, 0, "receipt: dave credited 30"))
        return 1;
    printf("   inner: credited dave 30, queued \"receipt: dave credited 30\"; now the inner level rolls back\n");
    if ((rc = txm_rollback(inner)))
        return txm_tool_demo_fail("rollback inner", rc);
    printf("   outer: before COMMIT, notifications sent: %d\n", d->notifications_sent);
    if (txm_tool_demo_check(d->notifications_sent == 0, "a hook ran before COMMIT") ||
        txm_tool_demo_check(d->rollbacks_seen == 1, "the on-rollback hook ran %d times, expected 1", d->rollbacks_seen))
        return 1;
    if ((rc = txm_commit(outer)))
        return txm_tool_demo_fail("commit outer", rc);
    printf("   outer: committed; notifications sent: %d (the receipt was discarded with its level)\n",
           d->notifications_sent);
    return txm_tool_demo_check(d->notifications_sent == 1, "expected exactly 1 notification, %d were sent",
                 d->notifications_sent);
}

/* ---- 3. poisoning -------------------------------------------------------------------------- */
static int story_poisoning(demo *d)
{
    txm_tx *tx = NULL;
    txm_stats before, after;
    const txm_error *e;
    int64_t n = 0;
    int rc;

    printf("\n3. Poisoning: a swallowed error does not go unnoticed\n");
    if ((rc = txm_begin(&tx, d->c, NULL)))
        return txm_tool_demo_fail("begin", rc);
    rc = add_account(d->c, 5, "carol", 1);
    printf("   a second account for carol -> %s; the code below ignores it and goes on\n",
           txm_err_name(rc));
    if (txm_tool_demo_check(rc == TXM_EUNIQUE, "duplicate owner gave %s, expected TXM_EUNIQUE", txm_err_name(rc)))
        return 1;
    txm_stats_get(d->c, &before);
    rc = txm_query_i64(d->c, &n, "SELECT COUNT(*) FROM " ACCOUNTS, NULL, 0);
    txm_stats_get(d->c, &after);
    e = txm_error_last();
    printf("   next statement -> %s: %s\n", txm_err_name(rc), rc ? e->message : "(ran?)");
    if (txm_tool_demo_check(rc == TXM_ETX_ABORTED, "expected TXM_ETX_ABORTED, got %s", txm_err_name(rc)) ||
        txm_tool_demo_check(e->cause != NULL, "TXM_ETX_ABORTED without a cause"))
        return 1;
    printf("   its cause: %s: %s\n", txm_err_name(e->cause->code), e->cause->message);
    printf("   refused without a round trip: round trips %llu -> %llu, refused %llu -> %llu\n",
           (unsigned long long)before.round_trips, (unsigned long long)after.round_trips,
           (unsigned long long)before.refused, (unsigned long long)after.refused);
    if (txm_tool_demo_check(e->cause->code == TXM_EUNIQUE, "cause is %s, expected TXM_EUNIQUE",
              txm_err_name(e->cause->code)) ||
        txm_tool_demo_check(after.round_trips == before.round_trips, "the refused statement reached the server"))
        return 1;
    rc = txm_commit(tx);
    printf("   COMMIT of the poisoned transaction -> %s (it was rolled back)\n", txm_err_name(rc));
    return txm_tool_demo_check(rc == TXM_ETX_ABORTED, "commit of a poisoned level gave %s, expected TXM_ETX_ABORTED",
                 txm_err_name(rc));
}

/* ---- 4. retry ------------------------------------------------------------------------------ */
typedef struct retry_ctx {
    demo *d;
    txm_conn *other;
    txm_tx *other_tx;
    unsigned attempts;
} retry_ctx;

static void before_retry(unsigned attempt, const txm_error *err, void *payload)
{
    retry_ctx *r = payload;
    int rc;
    printf("   attempt %u failed: %s: %s\n", attempt, txm_err_name(err->code), err->message);
    if (r->other_tx) {
        rc = txm_commit(r->other_tx);
        r->other_tx = NULL;
        printf("   before_retry: the other connection commits and lets go of its lock (%s)\n",
               txm_err_name(rc));
    }
}

static int transfer_body(txm_conn *c, void *payload)
{
    retry_ctx *r = payload;
    txm_value p[2];
    int rc;
    r->attempts++;
    printf("   attempt %u: moving 10 from alice to carol\n", r->attempts);
    p[0] = txm_int(10);
    p[1] = txm_text("alice");
    if ((rc = txm_exec(c, "UPDATE " ACCOUNTS " SET balance = balance - ? WHERE owner = ?", p, 2, NULL)))
        return rc;
    p[1] = txm_text("carol");
    return txm_exec(c, "UPDATE " ACCOUNTS " SET balance = balance + ? WHERE owner = ?", p, 2, NULL);
}

/* A short lock wait on this session, in each engine's own words. */
static int short_lock_wait(txm_conn *c, const char *driver)
{
    /* SQLite: busy_timeout=100 is in the URL (see txm_tool_demo); a PRAGMA busy_timeout would
     * replace the driver's busy handler, which tells a lock timeout from a would-be deadlock. */
    if (strcmp(driver, "postgresql") == 0)
        return exec0(c, "SET lock_timeout = 200");
    if (strcmp(driver, "mysql") == 0)
        return exec0(c, "SET SESSION innodb_lock_wait_timeout = 1");
    return 0;
}

static int story_retry(demo *d)
{
    retry_ctx r;
    txm_retry_policy policy = TXM_RETRY_POLICY_INIT;
    txm_stats st;
    txm_value p[1];
    int rc, ret = 1;

    printf("\n4. Retry: a transient error, handled by txm_retry\n");
    if (strstr(d->url, ":memory:")) {
        printf("   skipped: needs a database that two connections share (not :memory:)\n");
        return 0;
    }
    memset(&r, 0, sizeof r);
    r.d = d;
    if ((rc = txm_open(&r.other, d->url, NULL)))
        return txm_tool_demo_fail("opening a second connection", rc);
    if (short_lock_wait(d->c, d->driver))
        goto out;
    if ((rc = txm_begin(&r.other_tx, r.other, NULL))) {
        txm_tool_demo_fail("begin on the second connection", rc);
        goto out;
    }
    p[0] = txm_text("alice");
    if ((rc = txm_exec(r.other, "UPDATE " ACCOUNTS " SET balance = balance WHERE owner = ?", p, 1, NULL))) {
        txm_tool_demo_fail("locking alice on the second connection", rc);
        goto out;
    }
    printf("   another connection holds a write lock on alice's account\n");

    policy.max_attempts = 3;
    policy.base_delay_us = 1000;
    policy.retry_on |= TXM_RETRY_LOCK_TIMEOUT;
    policy.before_retry = before_retry;
    policy.payload = &r;
    rc = txm_retry(d->c, &policy, transfer_body, &r);
    if (rc) {
        txm_tool_demo_fail("txm_retry", rc);
        goto out;
    }
    printf("   committed on attempt %u\n", r.attempts);
    if (txm_tool_demo_check(r.attempts == 2, "expected success on attempt 2, got it on attempt %u", r.attempts))
        goto out;
    txm_stats_get(d->c, &st);
    if (txm_tool_demo_check(st.retries >= 1, "txm_stats counts %llu retries", (unsigned long long)st.retries))
        goto out;
    ret = print_accounts(d->c, "   ");
out:
    if (r.other_tx)
        txm_rollback(r.other_tx);
    txm_close(r.other);
    return ret;
}

static void print_stats(const txm_conn *c)
{
    txm_stats s;
    txm_stats_get(c, &s);
    printf("\ntxm_stats of the demo connection:\n");
    printf("  round trips %llu, statements %llu, control statements %llu, refused %llu\n",
           (unsigned long long)s.round_trips, (unsigned long long)s.statements,
           (unsigned long long)s.control, (unsigned long long)s.refused);
    printf("  begins %llu, commits %llu, rollbacks %llu\n", (unsigned long long)s.begins,
           (unsigned long long)s.commits, (unsigned long long)s.rollbacks);
    printf("  savepoints %llu, releases %llu, rollbacks to savepoint %llu\n",
           (unsigned long long)s.savepoints, (unsigned long long)s.releases,
           (unsigned long long)s.rollbacks_to);
    printf("  retries %llu, hooks run %llu, hooks failed %llu\n", (unsigned long long)s.retries,
           (unsigned long long)s.hooks_run, (unsigned long long)s.hooks_failed);
}

/* Removes the default database and its temporary directory. */
static void remove_tmp(const char *dir)
{
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    char path[4096];
    size_t i;
    for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s/txm-demo.db%s", dir, suffixes[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "txm demo: cannot remove %s: %s\n", path, strerror(errno));
    }
    if (rmdir(dir) != 0)
        fprintf(stderr, "txm demo: cannot remove %s: %s\n", dir, strerror(errno));
}

int txm_tool_demo(int argc, char **argv)
{
    char tmpdir[4096] = "", url_buf[4200], url_buf2[4400], url_billing[4400], shown[4400];
    const char *url = NULL, *billing_url;
    int skipped_billing = 0;
    demo d;
    int i, rc, status = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strncmp(argv[i], "--url=", 6) == 0)
            url = argv[i] + 6;
        else if (strcmp(argv[i], "--url-env") == 0 && i + 1 < argc) {
            /* For the test suites: the URL comes from an environment variable; unset = skip. */
            const char *var = argv[++i];
            url = getenv(var);
            if (!url || !*url) {
                printf("txm demo: %s is not set: skipped\n", var);
                return 77;
            }
        } else {
            fprintf(stderr, "usage: txm demo [--url URL | --url-env VARIABLE]\n");
            return 2;
        }
    }
    if (!url) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/txm-demo-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "txm demo: cannot create a temporary directory in %s: %s\n",
                    base && *base ? base : "/tmp", strerror(errno));
            return 1;
        }
        snprintf(url_buf, sizeof url_buf, "sqlite:%s/txm-demo.db", tmpdir);
        url = url_buf;
    }
    /* The billing stories run several writers at once: on SQLite they want WAL and a long lock
     * wait (unless the URL says otherwise); story 4 wants a short one (100 ms). */
    billing_url = url;
    if (strncmp(url, "sqlite:", 7) == 0 && !strstr(url, "busy_timeout=")) {
        int w = snprintf(url_billing, sizeof url_billing, "%s%cbusy_timeout=30000%s", url,
                         strchr(url, '?') ? '&' : '?', strstr(url, "journal=") ? "" : "&journal=wal");
        if (w > 0 && (size_t)w < sizeof url_billing)
            billing_url = url_billing;
    }
    if (strncmp(url, "sqlite:", 7) == 0 && !strstr(url, "busy_timeout=")) {
        int w = snprintf(url_buf2, sizeof url_buf2, "%s%cbusy_timeout=100", url,
                         strchr(url, '?') ? '&' : '?');
        if (w > 0 && (size_t)w < sizeof url_buf2)
            url = url_buf2;
    }

    memset(&d, 0, sizeof d);
    d.url = url;
    txm_tool_redact(url, shown, sizeof shown);
    rc = txm_open(&d.c, url, NULL);
    if (rc) {
        txm_tool_demo_fail("cannot open the database", rc);
        fprintf(stderr, "txm demo: URL was %s\n", shown);
        goto done;
    }
    d.driver = txm_driver_name(d.c);
    printf("txm %s demo on %s (driver %s)\n", txm_version(), shown, d.driver);

    if (setup(&d) || story_nesting(&d) || story_hooks(&d) || story_poisoning(&d) || story_retry(&d))
        goto done;
    print_stats(d.c);
    if (strstr(d.url, ":memory:")) {
        /* Every billing story runs several connections on one database (writers racing, a
         * worker claiming what another queued): a private in-memory database cannot show that. */
        printf("\n5.-9. Billing stories\n   skipped: they need a database that several connections "
               "share (not :memory:); run `txm demo` without --url to see them on a file\n");
        skipped_billing = 1;
    } else if (txm_tool_demo_billing(billing_url)) {
        goto done;
    }
    status = 0;
done:
    if (d.c) {
        /* Leave nothing behind on a shared server; an error here does not hide the verdict. */
        if (txm_depth(d.c) == 0)
            txm_exec(d.c, "DROP TABLE IF EXISTS " ACCOUNTS, NULL, 0, NULL);
        txm_close(d.c);
    }
    if (tmpdir[0])
        remove_tmp(tmpdir);
    if (status != 0)
        printf("\ndemo FAILED (the reason is on standard error)\n");
    else if (skipped_billing)
        printf("\ndemo finished: the stories one in-memory connection can tell (1-3) behaved as told; 4-9 were skipped\n");
    else
        printf("\ndemo finished: all nine stories behaved as told\n");
    return status;
}
