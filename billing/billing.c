/* txm-billing: configuration objects, schema entry points and shared helpers. */
#include "internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int txm_billing_options_init(txm_billing_options *opts, unsigned version)
{
    static const txm_billing_options def = TXM_BILLING_OPTIONS_INIT;
    if (!opts)
        return txm_error_set(TXM_EINVALID, "txm_billing_options_init: opts is NULL");
    if (version != TXM_BILLING_OPTIONS_VERSION)
        return txm_error_set(TXM_EINVALID, "txm_billing_options_init: unknown version %u", version);
    *opts = def;
    return 0;
}

void txm_billing_retry_policy_default(txm_retry_policy *out)
{
    static const txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    if (!out)
        return;
    *out = def;
    /* See docs/billing.md ("Retry defaults") for the measurement behind these. */
    out->max_attempts = 12;
    out->base_delay_us = 1000;
    out->max_delay_us = 100000;
}

static int valid_prefix(const char *p)
{
    size_t i, n = strlen(p);
    if (n > 32)
        return 0;
    for (i = 0; i < n; i++) {
        char ch = p[i];
        int alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
        if (!alpha && !(i > 0 && ch >= '0' && ch <= '9'))
            return 0;
    }
    return 1;
}

static int quote_table(const txm_conn *c, char *buf, const char *prefix, const char *name)
{
    char raw[80];
    snprintf(raw, sizeof raw, "%s%s", prefix, name);
    return txm_quote_ident(c, buf, BL_NAME_MAX, raw);
}

int txm_billing_new(txm_billing **out, const txm_conn *c, const txm_billing_options *opts)
{
    static const txm_billing_options def = TXM_BILLING_OPTIONS_INIT;
    txm_billing *b;
    const char *drv, *prefix;
    int rc = 0;
    if (out)
        *out = NULL;
    if (!out)
        return txm_error_set(TXM_EINVALID, "txm_billing_new: out is NULL");
    if (!c)
        return txm_error_set(TXM_EINVALID, "txm_billing_new: connection is NULL");
    if (!opts)
        opts = &def;
    if (opts->version != TXM_BILLING_OPTIONS_VERSION)
        return txm_error_set(TXM_EINVALID, "txm_billing_new: unknown options version %u", opts->version);
    prefix = opts->prefix ? opts->prefix : "billing_";
    if (!valid_prefix(prefix))
        return txm_error_set(TXM_EINVALID,
                             "txm_billing_new: table prefix must match [A-Za-z_][A-Za-z0-9_]* and be at most 32 "
                             "bytes");
    if (opts->retry && ((opts->retry->version != 1 && opts->retry->version != TXM_RETRY_POLICY_VERSION) ||
                        opts->retry->max_attempts == 0))
        return txm_error_set(TXM_EINVALID, "txm_billing_new: retry policy has an unknown version or 0 attempts");
    drv = txm_driver_name(c);
    b = calloc(1, sizeof *b);
    if (!b)
        return txm_error_set(TXM_ENOMEM, "txm_billing_new: out of memory");
    if (strcmp(drv, "sqlite") == 0)
        b->engine = BL_SQLITE;
    else if (strcmp(drv, "postgresql") == 0)
        b->engine = BL_PG;
    else if (strcmp(drv, "mysql") == 0)
        b->engine = BL_MYSQL;
    else {
        free(b);
        return txm_error_set(TXM_ENOTSUPPORTED, "txm_billing_new: the %s driver is not supported (sqlite, "
                                                "postgresql, mysql)", drv);
    }
    snprintf(b->driver, sizeof b->driver, "%s", drv);
    snprintf(b->prefix, sizeof b->prefix, "%s", prefix);
    if (!rc) rc = quote_table(c, b->t.accounts, prefix, "accounts");
    if (!rc) rc = quote_table(c, b->t.entries, prefix, "entries");
    if (!rc) rc = quote_table(c, b->t.api_keys, prefix, "api_keys");
    if (!rc) rc = quote_table(c, b->t.upstreams, prefix, "upstreams");
    if (!rc) rc = quote_table(c, b->t.usage, prefix, "usage");
    if (!rc) rc = quote_table(c, b->t.payouts, prefix, "payouts");
    if (!rc) rc = quote_table(c, b->t.outbox, prefix, "outbox");
    if (!rc) rc = quote_table(c, b->t.imports, prefix, "imports");
    if (!rc) rc = quote_table(c, b->t.import_tasks, prefix, "import_tasks");
    if (!rc) rc = quote_table(c, b->t.import_workers, prefix, "import_workers");
    if (rc) {
        free(b);
        return rc;
    }
    if (opts->retry) {
        /* A version-1 policy (built against an older txm.h) ends before `jitter`: copy only its
         * fields, over the defaults; txm_retry validates the rest. */
        txm_billing_retry_policy_default(&b->retry);
        memcpy(&b->retry, opts->retry,
               opts->retry->version == 1 ? offsetof(txm_retry_policy, jitter) : sizeof b->retry);
        b->retry.version = TXM_RETRY_POLICY_VERSION;
    } else
        txm_billing_retry_policy_default(&b->retry);
    b->retry.tx = NULL;
    b->notify = opts->notify;
    b->notify_payload = opts->notify_payload;
    *out = b;
    return 0;
}

void txm_billing_free(txm_billing *b) { free(b); }

int bl_check(const txm_billing *b, txm_conn *c, const char *who)
{
    if (!b)
        return txm_error_set(TXM_EINVALID, "%s: billing object is NULL", who);
    if (!c)
        return txm_error_set(TXM_EINVALID, "%s: connection is NULL", who);
    if (strcmp(txm_driver_name(c), b->driver) != 0)
        return txm_error_set(TXM_EMISUSE, "%s: the billing object was made for %s, the connection is %s", who,
                             b->driver, txm_driver_name(c));
    return 0;
}

int bl_run(const txm_billing *b, txm_conn *c, txm_body_cb body, void *payload)
{
    if (txm_depth(c) > 0)
        return txm_atomic(c, NULL, body, payload);
    return txm_retry(c, &b->retry, body, payload);
}

int bl_sql(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        return txm_error_set(TXM_EINVALID, "txm-billing: statement does not fit in %zu bytes", size);
    return 0;
}

int bl_check_text(const char *s, size_t max, const char *who, const char *what)
{
    size_t n;
    if (!s)
        return txm_error_set(TXM_EINVALID, "%s: %s is NULL", who, what);
    n = strlen(s);
    if (n == 0 || n > max)
        return txm_error_set(TXM_EINVALID, "%s: %s must be 1 to %zu bytes long (it is %zu)", who, what, max, n);
    return 0;
}

const char *bl_id_ddl(const txm_billing *b)
{
    switch (b->engine) {
    case BL_PG:
        return "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
    case BL_MYSQL:
        return "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY";
    default:
        return "id INTEGER PRIMARY KEY"; /* the rowid: 64-bit */
    }
}

const char *bl_table_opts(const txm_billing *b) { return b->engine == BL_MYSQL ? " ENGINE=InnoDB" : ""; }


typedef struct insert_id {
    const char *sql;
    const txm_value *p;
    size_t n;
    int64_t id;
} insert_id;

static int insert_id_body(txm_conn *c, void *payload)
{
    insert_id *a = payload;
    return txm_query_i64(c, &a->id, a->sql, a->p, a->n);
}

int bl_insert_id(const txm_billing *b, txm_conn *c, const char *sql, const txm_value *p, size_t n, int64_t *id_out)
{
    insert_id a;
    int rc;
    a.sql = sql;
    a.p = p;
    a.n = n;
    a.id = 0;
    if ((rc = bl_run(b, c, insert_id_body, &a)) == 0)
        *id_out = a.id;
    return rc;
}

static int schema_body(txm_conn *c, void *payload)
{
    const txm_billing *b = payload;
    int rc;
    if ((rc = bl_ledger_create(b, c)) != 0)
        return rc;
    if ((rc = bl_usage_create(b, c)) != 0)
        return rc;
    if ((rc = bl_payout_create(b, c)) != 0)
        return rc;
    return bl_import_create(b, c);
}

static int drop_body(txm_conn *c, void *payload)
{
    const txm_billing *b = payload;
    int rc;
    if ((rc = bl_import_drop(b, c)) != 0)
        return rc;
    if ((rc = bl_payout_drop(b, c)) != 0)
        return rc;
    if ((rc = bl_usage_drop(b, c)) != 0)
        return rc;
    return bl_ledger_drop(b, c);
}

/* MySQL commits every DDL statement implicitly: running DDL inside a txm transaction there would
 * be TXM_ESTATE. Each statement is idempotent (IF NOT EXISTS), so they run one by one instead. */
static int run_ddl(const txm_billing *b, txm_conn *c, const char *who, txm_body_cb body)
{
    int rc;
    if ((rc = bl_check(b, c, who)) != 0)
        return rc;
    if ((rc = txm_forbid_transaction(c, who)) != 0)
        return rc;
    if (b->engine == BL_MYSQL)
        return body(c, (void *)b);
    return txm_atomic(c, NULL, body, (void *)b);
}

int txm_billing_schema_create(const txm_billing *b, txm_conn *c)
{
    return run_ddl(b, c, "txm_billing_schema_create", schema_body);
}

int txm_billing_schema_drop(const txm_billing *b, txm_conn *c)
{
    return run_ddl(b, c, "txm_billing_schema_drop", drop_body);
}
