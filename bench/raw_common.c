/* Control statement texts shared by the raw baselines: spelled as txm's drivers spell them, so
 * the baselines send the same SQL as txm does. */
#include "bench.h"

#include <stdio.h>

const char *bench_ctl_sql(bench_kind k, raw_kind kind, unsigned level)
{
    static char sp[BENCH_MAX_LEVEL + 1][32], rel[BENCH_MAX_LEVEL + 1][48];
    static int ready;
    if (!ready) {
        unsigned i;
        for (i = 0; i <= BENCH_MAX_LEVEL; i++) {
            snprintf(sp[i], sizeof sp[i], "SAVEPOINT txm_sp_%u", i);
            snprintf(rel[i], sizeof rel[i], "RELEASE SAVEPOINT txm_sp_%u", i);
        }
        ready = 1;
    }
    if (level > BENCH_MAX_LEVEL)
        level = BENCH_MAX_LEVEL;
    switch (kind) {
    case RAW_BEGIN:
        return k == BENCH_SQLITE ? "BEGIN IMMEDIATE" : k == BENCH_MYSQL ? "START TRANSACTION" : "BEGIN";
    case RAW_SAVEPOINT: return sp[level];
    case RAW_RELEASE: return rel[level];
    case RAW_COMMIT: return "COMMIT";
    case RAW_ROLLBACK: return "ROLLBACK";
    case RAW_INSERT: break;
    }
    return "";
}

const bench_raw *bench_raw_for(bench_kind k)
{
    switch (k) {
    case BENCH_SQLITE:
#if BENCH_HAVE_SQLITE3
        return &bench_raw_sqlite;
#else
        return NULL;
#endif
    case BENCH_PG:
#if BENCH_HAVE_PQ
        return &bench_raw_pg;
#else
        return NULL;
#endif
    case BENCH_MYSQL:
#if BENCH_HAVE_MARIADB
        return &bench_raw_mysql;
#else
        return NULL;
#endif
    }
    return NULL;
}
