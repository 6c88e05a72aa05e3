/* Allocation wrapper and failure injection (core/alloc.c). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

Test(alloc, fail_next_then_recover)
{
    void *p;
    txm__alloc_fail_after(1, false);
    cr_expect(eq(ptr, txm__malloc(16), NULL), "the next allocation fails");
    p = txm__malloc(16);
    cr_expect(not(eq(ptr, p, NULL)), "later ones succeed");
    txm__free(p);
    p = txm__malloc(16);
    cr_expect(not(eq(ptr, p, NULL)));
    txm__free(p);
}

Test(alloc, fail_nth)
{
    void *a, *b;
    txm__alloc_fail_after(3, false);
    a = txm__malloc(8);
    b = txm__calloc(2, 8);
    cr_expect(not(eq(ptr, a, NULL)));
    cr_expect(not(eq(ptr, b, NULL)));
    cr_expect(eq(ptr, txm__strdup("x"), NULL), "the third allocation fails, whatever the function");
    txm__free(a);
    txm__free(b);
}

Test(alloc, sticky_fails_until_reset)
{
    void *a, *b;
    txm__alloc_fail_after(2, true);
    a = txm__malloc(8);
    cr_expect(not(eq(ptr, a, NULL)));
    cr_expect(eq(ptr, txm__malloc(8), NULL));
    cr_expect(eq(ptr, txm__calloc(1, 8), NULL));
    cr_expect(eq(ptr, txm__strndup("abc", 2), NULL));
    txm__alloc_fail_after(0, false);
    b = txm__malloc(8);
    cr_expect(not(eq(ptr, b, NULL)), "n = 0 disables injection");
    txm__free(a);
    txm__free(b);
}

Test(alloc, failed_realloc_keeps_the_block)
{
    char *p = txm__malloc(4), *q;
    cr_assert(not(eq(ptr, p, NULL)));
    memcpy(p, "abc", 4);
    txm__alloc_fail_after(1, false);
    q = txm__realloc(p, 1 << 20);
    cr_expect(eq(ptr, q, NULL));
    cr_expect(eq(str, p, "abc"), "the original block is untouched");
    q = txm__realloc(p, 1 << 20);
    cr_assert(not(eq(ptr, q, NULL)));
    cr_expect(eq(str, q, "abc"));
    txm__free(q);
}

Test(alloc, count_and_helpers)
{
    unsigned long before = txm__alloc_count();
    char *s = txm__strdup("hello"), *t = txm__strndup("hello", 3);
    cr_expect(eq(u64, (uint64_t)(txm__alloc_count() - before), 2));
    cr_expect(eq(str, s, "hello"));
    cr_expect(eq(str, t, "hel"));
    cr_expect(eq(ptr, txm__strdup(NULL), NULL));
    txm__free(s);
    txm__free(t);
    txm__free(NULL);
}

Test(alloc, calloc_overflow_is_null)
{
    cr_expect(eq(ptr, txm__calloc(SIZE_MAX / 2 + 2, 4), NULL));
}

static void *other_thread(void *arg)
{
    void *p = txm__malloc(8);
    *(int *)arg = p != NULL;
    txm__free(p);
    return NULL;
}

Test(alloc, injection_is_per_thread)
{
    pthread_t th;
    int ok = 0;
    void *p;
    txm__alloc_fail_after(1, true);
    cr_assert(eq(int, pthread_create(&th, NULL, other_thread, &ok), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));
    cr_expect(eq(int, ok, 1), "another thread's allocations are not affected");
    cr_expect(eq(ptr, txm__malloc(8), NULL));
    txm__alloc_fail_after(0, false);
    p = txm__malloc(8);
    cr_expect(not(eq(ptr, p, NULL)));
    txm__free(p);
}
