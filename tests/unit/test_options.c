/* Versioned options structs: *_init rejects unknown versions and copies the *_INIT defaults. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stddef.h>
#include <string.h>

#include "internal.h"

Test(options, tx_options)
{
    const txm_tx_options def = TXM_TX_OPTIONS_INIT;
    txm_tx_options o;
    memset(&o, 0xAB, sizeof o);
    cr_expect(eq(int, txm_tx_options_init(&o, 0), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "version") != NULL, "%s", txm_error_last()->message);
    cr_expect(eq(int, txm_tx_options_init(&o, 99), TXM_EINVALID));
    cr_expect(eq(int, txm_tx_options_init(NULL, TXM_TX_OPTIONS_VERSION), TXM_EINVALID));
    cr_assert(eq(int, txm_tx_options_init(&o, TXM_TX_OPTIONS_VERSION), 0));
    cr_expect(eq(u32, o.version, def.version));
    cr_expect(eq(u32, o.version, (unsigned)TXM_TX_OPTIONS_VERSION));
    cr_expect(eq(u32, o.flags, def.flags));
    cr_expect(eq(int, (int)o.isolation, (int)def.isolation));
}

/* A caller compiled against version 1 has a 3-field struct: init(…, 1) fills just that much. */
Test(options, tx_options_version_1_writes_only_its_fields)
{
    union {
        txm_tx_options o;
        unsigned char bytes[sizeof(txm_tx_options) + 8];
    } u;
    size_t v1 = offsetof(txm_tx_options, lock_timeout_ms);
    memset(&u, 0xAB, sizeof u);
    cr_assert(eq(int, txm_tx_options_init(&u.o, 1), 0), "%s", txm_error_last()->message);
    cr_expect(eq(u32, u.o.version, 1u));
    cr_expect(eq(u32, u.o.flags, 0u));
    cr_expect(eq(int, (int)u.o.isolation, (int)TXM_ISOLATION_DEFAULT));
    for (size_t i = v1; i < sizeof u.bytes; i++)
        cr_assert(eq(u8, u.bytes[i], 0xAB), "txm_tx_options_init(…, 1) wrote byte %zu (a version-1 struct has %zu)", i,
                  v1);
    cr_assert(eq(int, txm_tx_options_init(&u.o, TXM_TX_OPTIONS_VERSION), 0));
    cr_expect(eq(u32, u.o.lock_timeout_ms, 0u));
    cr_expect(eq(u32, u.o.statement_timeout_ms, 0u));
    cr_expect(eq(int, txm_tx_options_init(&u.o, TXM_TX_OPTIONS_VERSION + 1), TXM_EINVALID));
}

Test(options, retry_policy)
{
    const txm_retry_policy def = TXM_RETRY_POLICY_INIT;
    txm_retry_policy p;
    memset(&p, 0xAB, sizeof p);
    cr_expect(eq(int, txm_retry_policy_init(&p, 0), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "version") != NULL, "%s", txm_error_last()->message);
    cr_expect(eq(int, txm_retry_policy_init(&p, 99), TXM_EINVALID));
    cr_expect(eq(int, txm_retry_policy_init(NULL, TXM_RETRY_POLICY_VERSION), TXM_EINVALID));
    cr_assert(eq(int, txm_retry_policy_init(&p, TXM_RETRY_POLICY_VERSION), 0));
    cr_expect(eq(u32, p.version, (unsigned)TXM_RETRY_POLICY_VERSION));
    cr_expect(eq(u32, p.max_attempts, def.max_attempts));
    cr_expect(eq(u32, p.base_delay_us, def.base_delay_us));
    cr_expect(eq(u32, p.max_delay_us, def.max_delay_us));
    cr_expect(eq(u32, p.deadline_ms, def.deadline_ms));
    cr_expect(eq(u32, p.retry_on, def.retry_on));
    cr_expect(eq(ptr, (void *)p.tx, (void *)def.tx));
    cr_expect(p.before_retry == def.before_retry);
    cr_expect(eq(ptr, p.payload, def.payload));
    cr_expect(eq(u64, p.seed, def.seed));
    cr_expect(eq(u32, p.jitter, def.jitter));
    cr_expect(eq(u32, p.jitter, TXM_RETRY_JITTER_FULL), "full jitter stays the default");
    cr_expect(ge(u32, p.max_attempts, 1u));
    /* The documented defaults (include/txm.h, docs/semantics.md "Sizing the retry policy"). */
    cr_expect(eq(u32, p.max_attempts, 30u));
    cr_expect(eq(u32, p.base_delay_us, 2000u));
    cr_expect(eq(u32, p.max_delay_us, 200000u));
    cr_expect(eq(u32, p.deadline_ms, 0u));
}

Test(options, open_options)
{
    const txm_open_options def = TXM_OPEN_OPTIONS_INIT;
    txm_open_options o;
    memset(&o, 0xAB, sizeof o);
    cr_expect(eq(int, txm_open_options_init(&o, 0), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "version") != NULL, "%s", txm_error_last()->message);
    cr_expect(eq(int, txm_open_options_init(&o, 99), TXM_EINVALID));
    cr_expect(eq(int, txm_open_options_init(NULL, TXM_OPEN_OPTIONS_VERSION), TXM_EINVALID));
    cr_assert(eq(int, txm_open_options_init(&o, TXM_OPEN_OPTIONS_VERSION), 0));
    cr_expect(eq(u32, o.version, (unsigned)TXM_OPEN_OPTIONS_VERSION));
    cr_expect(o.log == def.log);
    cr_expect(eq(ptr, o.log_payload, def.log_payload));
    cr_expect(eq(int, (int)o.log_level, (int)def.log_level));
    cr_expect(eq(u32, o.autocommit_retries, 0u)); /* opt-in */
    cr_expect(eq(u32, o.autocommit_retries, def.autocommit_retries));
}

/* Version 1 is still accepted; its init writes nothing past the version 1 fields (a caller built
 * against that header has no room for them). */
Test(options, open_options_version_1)
{
    txm_open_options o;
    memset(&o, 0xAB, sizeof o);
    cr_assert(eq(u32, (unsigned)TXM_OPEN_OPTIONS_VERSION, 2u));
    cr_assert(eq(int, txm_open_options_init(&o, 1), 0));
    cr_expect(eq(u32, o.version, 1u));
    cr_expect(eq(int, (int)o.log_level, (int)TXM_LOG_WARN));
    cr_expect(eq(u32, o.autocommit_retries, 0xABABABABu), "a version 1 init wrote past the version 1 struct");
    cr_expect(eq(int, txm_open_options_init(&o, 3), TXM_EINVALID));
}

Test(options, open_rejects_too_many_autocommit_retries)
{
    txm_open_options o;
    txm_conn *c = (txm_conn *)(void *)&o;
    cr_assert(eq(int, txm_open_options_init(&o, TXM_OPEN_OPTIONS_VERSION), 0));
    o.autocommit_retries = TXM_AUTOCOMMIT_RETRIES_MAX + 1;
    cr_expect(eq(int, txm_open(&c, "sqlite::memory:", &o), TXM_EINVALID));
    cr_expect(eq(ptr, (void *)c, NULL));
    cr_expect(strstr(txm_error_last()->message, "autocommit_retries") != NULL, "%s", txm_error_last()->message);
    o.autocommit_retries = TXM_AUTOCOMMIT_RETRIES_MAX;
    cr_assert(eq(int, txm_open(&c, "sqlite::memory:", &o), 0));
    txm_close(c);
    o.version = 3;
    cr_expect(eq(int, txm_open(&c, "sqlite::memory:", &o), TXM_EINVALID));
}

/* A caller compiled against version 1 of txm_retry_policy has no `jitter`: init(…, 1) fills
 * only the fields up to `seed`. */
Test(options, retry_policy_version_1_writes_only_its_fields)
{
    union {
        txm_retry_policy p;
        unsigned char bytes[sizeof(txm_retry_policy) + 8];
    } u;
    size_t v1 = offsetof(txm_retry_policy, jitter);
    memset(&u, 0xAB, sizeof u);
    cr_assert(eq(int, txm_retry_policy_init(&u.p, 1), 0), "%s", txm_error_last()->message);
    cr_expect(eq(u32, u.p.version, 1u));
    cr_expect(eq(u32, u.p.max_attempts, 30u));
    cr_expect(eq(u64, u.p.seed, (uint64_t)0));
    for (size_t i = v1; i < sizeof u.bytes; i++)
        cr_assert(eq(u8, u.bytes[i], 0xAB),
                  "txm_retry_policy_init(…, 1) wrote byte %zu (a version-1 struct has %zu)", i, v1);
    cr_assert(eq(int, txm_retry_policy_init(&u.p, TXM_RETRY_POLICY_VERSION), 0));
    cr_expect(eq(u32, u.p.version, 2u));
    cr_expect(eq(u32, u.p.jitter, TXM_RETRY_JITTER_FULL));
    cr_expect(eq(int, txm_retry_policy_init(&u.p, TXM_RETRY_POLICY_VERSION + 1), TXM_EINVALID));
}
