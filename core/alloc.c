/* The single allocation wrapper of txm. Failure injection (tests) is per thread. */
#include "internal.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local unsigned long fail_countdown; /* 0 = off; 1 = the next allocation fails */
static _Thread_local bool fail_sticky;
static _Thread_local bool fail_tripped;
static _Thread_local unsigned long alloc_count;
static _Thread_local unsigned long failed_count; /* allocations failed by injection */
/* Blocks allocated and not yet freed, over all threads (the allocation sweep checks it returns to
 * its baseline; relaxed: only read by tests once the threads that allocate are quiet). */
static atomic_long live_blocks;

void txm__alloc_fail_after(unsigned long n, bool sticky)
{
    fail_countdown = n;
    fail_sticky = sticky;
    fail_tripped = false;
}

unsigned long txm__alloc_count(void) { return alloc_count; }
unsigned long txm__alloc_failures(void) { return failed_count; }

long txm__alloc_live(void) { return atomic_load_explicit(&live_blocks, memory_order_relaxed); }

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
    return p;
}

static bool should_fail(void)
{
    alloc_count++;
    if (fail_tripped) {
        failed_count += fail_sticky;
        return fail_sticky;
    }
    if (fail_countdown == 0)
        return false;
    if (--fail_countdown == 0) {
        fail_tripped = true;
        failed_count++;
        return true;
    }
    return false;
}

void *txm__malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return counted(malloc(n ? n : 1));
}

void *txm__calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    if (size && count > SIZE_MAX / size)
        return NULL; /* overflow: fail like glibc, without tripping ASan's calloc-overflow abort */
    return counted(calloc(count ? count : 1, size ? size : 1));
}

void *txm__realloc(void *p, size_t n)
{
    void *q;
    if (should_fail())
        return NULL;
    q = realloc(p, n ? n : 1);
    return p ? q : counted(q); /* resizing a block does not change the count */
}

void txm__free(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    free(p);
}

char *txm__strndup(const char *s, size_t n)
{
    char *d;
    if (!s)
        return NULL;
    d = txm__malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *txm__strdup(const char *s) { return s ? txm__strndup(s, strlen(s)) : NULL; }
