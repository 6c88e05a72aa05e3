/* Capped exponential backoff (core/retry.c), full jitter and none: bounds, overflow, determinism,
 * spread. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <limits.h>

#include "internal.h"

/* min(cap, base * 2^(attempt-1)) without overflow. */
static uint64_t bound_of(unsigned attempt, unsigned base, unsigned cap)
{
    uint64_t b = base;
    unsigned i;
    for (i = 1; i < attempt && b < cap; i++)
        b <<= 1;
    return b < cap ? b : cap;
}

Test(backoff, never_exceeds_the_bound)
{
    static const unsigned bases[] = {1, 7, 2000, 100000};
    static const unsigned caps[] = {1, 1000, 200000, UINT_MAX};
    uint64_t st = 0x1234567887654321ull;
    size_t b, c;
    unsigned attempt, k;
    for (b = 0; b < 4; b++)
        for (c = 0; c < 4; c++)
            for (attempt = 1; attempt <= 70; attempt++)
                for (k = 0; k < 50; k++) {
                    uint64_t bound = bound_of(attempt, bases[b], caps[c]);
                    uint64_t d = txm__backoff_us(attempt, bases[b], caps[c], &st);
                    cr_assert(le(u64, d, bound), "attempt %u base %u cap %u: %llu > %llu", attempt, bases[b],
                              caps[c], (unsigned long long)d, (unsigned long long)bound);
                }
}

Test(backoff, no_overflow_for_huge_attempts)
{
    static const unsigned attempts[] = {32, 33, 63, 64, 65, 1000, UINT_MAX};
    uint64_t st = 99;
    size_t i;
    unsigned k;
    for (i = 0; i < sizeof attempts / sizeof attempts[0]; i++)
        for (k = 0; k < 200; k++) {
            cr_assert(le(u64, txm__backoff_us(attempts[i], UINT_MAX, UINT_MAX, &st), (uint64_t)UINT_MAX));
            cr_assert(le(u64, txm__backoff_us(attempts[i], 1u << 31, 300000000u, &st), (uint64_t)300000000u));
            cr_assert(le(u64, txm__backoff_us(attempts[i], 1000, 5000, &st), (uint64_t)5000));
        }
}

Test(backoff, deterministic_for_a_fixed_seed)
{
    uint64_t a = 42, b = 42, c = 43;
    unsigned k, differ = 0;
    for (k = 1; k <= 200; k++) {
        uint64_t x = txm__backoff_us(5, 1000, 1000000, &a);
        uint64_t y = txm__backoff_us(5, 1000, 1000000, &b);
        uint64_t z = txm__backoff_us(5, 1000, 1000000, &c);
        cr_assert(eq(u64, x, y), "draw %u differs for the same seed", k);
        differ += x != z;
    }
    cr_expect(gt(u32, differ, 150u), "a different seed gives a different sequence");
}

/* Over 10k draws: the largest reaches > 90% of the bound, the mean is half the bound +-10%. */
static void check_spread(unsigned attempt, unsigned base, unsigned cap)
{
    enum { N = 10000 };
    uint64_t st = 0xC0FFEEull, bound = bound_of(attempt, base, cap), max = 0;
    double sum = 0, mean;
    unsigned k;
    for (k = 0; k < N; k++) {
        uint64_t d = txm__backoff_us(attempt, base, cap, &st);
        if (d > max)
            max = d;
        sum += (double)d;
    }
    mean = sum / N;
    cr_expect(gt(u64, max * 10, bound * 9), "attempt %u base %u cap %u: max %llu of bound %llu", attempt, base, cap,
              (unsigned long long)max, (unsigned long long)bound);
    cr_expect(mean > 0.45 * (double)bound && mean < 0.55 * (double)bound, "mean %.1f, bound %llu", mean,
              (unsigned long long)bound);
}

Test(backoff, full_jitter_spread)
{
    check_spread(1, 2000, 200000);    /* bound 2000 */
    check_spread(3, 1000, 1000000);   /* bound 4000 */
    check_spread(8, 2000, 200000);    /* 256000 capped at 200000 */
    check_spread(64, UINT_MAX, UINT_MAX);
}

Test(backoff, cap_is_respected)
{
    uint64_t st = 7, max = 0;
    unsigned k;
    for (k = 0; k < 5000; k++) {
        uint64_t d = txm__backoff_us(20, 1000, 5000, &st);
        cr_assert(le(u64, d, (uint64_t)5000));
        if (d > max)
            max = d;
    }
    cr_expect(gt(u64, max, (uint64_t)4500), "the cap is the bound once base*2^n exceeds it");
}

Test(backoff, zero_base_or_cap_means_no_delay)
{
    uint64_t st = 5;
    cr_expect(eq(u64, txm__backoff_us(3, 0, 1000, &st), (uint64_t)0));
    cr_expect(eq(u64, txm__backoff_us(3, 1000, 0, &st), (uint64_t)0));
}

/* TXM_RETRY_JITTER_NONE sleeps exactly the capped exponential bound: 2, 4, 8 ... ms, then the cap. */
Test(backoff, no_jitter_is_the_capped_exponential_bound)
{
    txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    uint64_t st = 11, before;
    static const uint64_t expect[] = {2000, 4000, 8000, 16000, 32000, 64000, 128000, 200000, 200000};
    unsigned attempt;
    p.jitter = TXM_RETRY_JITTER_NONE;
    before = st;
    for (attempt = 1; attempt <= 9; attempt++)
        cr_assert(eq(u64, txm__retry_delay_us(&p, attempt, &st), expect[attempt - 1]), "attempt %u", attempt);
    cr_expect(eq(u64, st, before), "no jitter draws no random numbers");
    for (attempt = 1; attempt <= 70; attempt++)
        cr_assert(eq(u64, txm__retry_delay_us(&p, attempt, &st), bound_of(attempt, 2000, 200000)));
    p.base_delay_us = UINT_MAX;
    p.max_delay_us = UINT_MAX;
    cr_expect(eq(u64, txm__retry_delay_us(&p, UINT_MAX, &st), (uint64_t)UINT_MAX));
    p.base_delay_us = 0; /* no backoff, with either jitter */
    cr_expect(eq(u64, txm__retry_delay_us(&p, 5, &st), (uint64_t)0));
    p.jitter = TXM_RETRY_JITTER_FULL;
    cr_expect(eq(u64, txm__retry_delay_us(&p, 5, &st), (uint64_t)0));
}

/* The default policy's delay is full jitter: within the bound, and spread over it. */
Test(backoff, default_policy_delay_is_full_jitter)
{
    const txm_retry_policy p = TXM_RETRY_POLICY_INIT;
    uint64_t st = 3, min = UINT64_MAX, max = 0;
    unsigned k;
    for (k = 0; k < 2000; k++) {
        uint64_t d = txm__retry_delay_us(&p, 3, &st); /* bound 8000 */
        cr_assert(le(u64, d, (uint64_t)8000));
        min = d < min ? d : min;
        max = d > max ? d : max;
    }
    cr_expect(lt(u64, min, (uint64_t)800));
    cr_expect(gt(u64, max, (uint64_t)7200));
}
