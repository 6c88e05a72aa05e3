/*
 * depth_probe: one transaction of depth N on sqlite::memory: (one INSERT per level, then every
 * level committed), measured alone under callgrind by scripts/callgrind-depth.sh: the function
 * `measured` is the only code collected (--toggle-collect), after an identical warm-up
 * transaction has filled txm's level pool and SQLite's caches.
 *
 *   depth_probe N [URL]      (URL defaults to sqlite::memory:)
 */
#include "txm.h"

#include <stdio.h>
#include <stdlib.h>

static int one_tx(txm_conn *c, txm_tx **stack, unsigned n)
{
    unsigned d;
    for (d = 0; d < n; d++) {
        txm_value v = txm_int((int64_t)d);
        if (txm_begin(&stack[d], c, NULL) != 0 || txm_exec(c, "INSERT INTO probe(v) VALUES (?)", &v, 1, NULL) != 0)
            return -1;
    }
    while (d > 0)
        if (txm_commit(stack[--d]) != 0)
            return -1;
    return 0;
}

__attribute__((noinline)) int measured(txm_conn *c, txm_tx **stack, unsigned n);
__attribute__((noinline)) int measured(txm_conn *c, txm_tx **stack, unsigned n) { return one_tx(c, stack, n); }

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
    txm_conn *c = NULL;
    txm_tx **stack;
    if (n < 1 || n > 1000000) {
        fprintf(stderr, "usage: depth_probe N [URL] (1 <= N <= 1000000)\n");
        return 2;
    }
    stack = malloc(n * sizeof *stack);
    if (!stack || txm_open(&c, argc > 2 ? argv[2] : "sqlite::memory:", NULL) != 0 ||
        txm_exec(c, "CREATE TABLE probe(v INTEGER NOT NULL)", NULL, 0, NULL) != 0 || one_tx(c, stack, (unsigned)n) != 0 ||
        measured(c, stack, (unsigned)n) != 0) {
        fprintf(stderr, "depth_probe: %s\n", txm_error_last()->message);
        return 1;
    }
    txm_close(c);
    free(stack);
    return 0;
}
