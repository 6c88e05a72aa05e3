/* Transaction-control detection: txm_exec refuses these statements, so false negatives let SQL
 * desynchronise txm's savepoint stack and false positives refuse ordinary statements. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <string.h>

#include "internal.h"

#define PG TXM_DIALECT_DOLLAR_QUOTES
#define MY (TXM_DIALECT_BACKSLASH | TXM_DIALECT_BACKTICKS | TXM_DIALECT_HASH_COMMENTS)
#define LITE (TXM_DIALECT_BACKTICKS | TXM_DIALECT_BRACKETS)

typedef struct tc_case {
    unsigned dialect;
    const char *sql;
    const char *expect; /* NULL: not a control statement */
} tc_case;

static void run(const tc_case *t, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const char *got = txm__sql_tx_control(t[i].sql, t[i].dialect);
        if (t[i].expect)
            cr_expect(got && strcmp(got, t[i].expect) == 0, "'%s' should be %s, got %s", t[i].sql, t[i].expect,
                      got ? got : "NULL");
        else
            cr_expect(eq(ptr, (void *)got, NULL), "'%s' is not control, got %s", t[i].sql, got ? got : "NULL");
    }
}
#define RUN(t) run(t, sizeof t / sizeof t[0])

Test(tx_control, keywords_are_detected)
{
    static const tc_case t[] = {
        {PG, "BEGIN", "BEGIN"},
        {PG, "begin", "BEGIN"},
        {PG, "BeGiN;", "BEGIN"},
        {PG, "BEGIN WORK", "BEGIN"},
        {PG, "BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN"},
        {PG, "COMMIT", "COMMIT"},
        {PG, "  /*x*/ commit", "COMMIT"},
        {PG, "COMMIT PREPARED 'x'", "COMMIT"},
        {PG, "END", "END"},
        {PG, "end transaction", "END"},
        {PG, "ROLLBACK", "ROLLBACK"},
        {PG, "ROLLBACK TO SAVEPOINT s1", "ROLLBACK"},
        {PG, "SAVEPOINT s1", "SAVEPOINT"},
        {PG, "RELEASE SAVEPOINT s1", "RELEASE"},
        {PG, "release s1", "RELEASE"},
        {PG, "ABORT", "ABORT"},
        {PG, "START TRANSACTION", "START"},
        {PG, "start  transaction read only", "START"},
        {PG, "START /* c */ TRANSACTION", "START"},
        {PG, "START\n-- c\nTRANSACTION", "START"},
        {PG, "(ROLLBACK", "ROLLBACK"},
        {PG, "((  commit))", "COMMIT"},
        {PG, "\t\r\n\f\vBEGIN", "BEGIN"},
        {PG, "-- comment\nBEGIN", "BEGIN"},
        {PG, "/* a /* nested */ comment */ BEGIN", "BEGIN"},
        {PG, ";BEGIN", "BEGIN"},
        {PG, "COMMIT\n", "COMMIT"},
        {PG, "COMMIT--x", "COMMIT"},
        {PG, "COMMIT/*x*/", "COMMIT"},
        {MY, "# comment\nCOMMIT", "COMMIT"},
        {MY, "/*!40101 COMMIT */", "COMMIT"},
        {MY, "SELECT 1; BEGIN", NULL}, /* only the first statement is examined */
        {MY, "START TRANSACTION WITH CONSISTENT SNAPSHOT", "START"},
        {LITE, "BEGIN IMMEDIATE", "BEGIN"},
        {LITE, "END TRANSACTION", "END"},
        {MY, "XA START 'x'", "XA"},
        {MY, "xa commit 'x'", "XA"},
        {PG, "PREPARE TRANSACTION 'gid'", "PREPARE"},
        {PG, "prepare /* c */ transaction 'gid'", "PREPARE"},
    };
    RUN(t);
}

Test(tx_control, ordinary_statements_are_not_control)
{
    static const tc_case t[] = {
        {PG, "", NULL},
        {PG, "   ", NULL},
        {PG, "SELECT 1", NULL},
        {PG, "SELECT begin FROM t", NULL},
        {PG, "begin_date = 1", NULL},
        {PG, "BEGINNING", NULL},
        {PG, "COMMITTED", NULL},
        {PG, "END_", NULL},
        {PG, "begin$x", NULL},
        {PG, "release1", NULL},
        {PG, "START SLAVE", NULL},
        {PG, "START REPLICA", NULL},
        {PG, "START", NULL},
        {PG, "STARTTRANSACTION", NULL},
        {PG, "START TRANSACTIONS", NULL},
        {PG, "UPDATE t SET x = 1 -- COMMIT", NULL},
        {PG, "/* COMMIT */ SELECT 1", NULL},
        {PG, "-- COMMIT", NULL},
        {PG, "/* unterminated COMMIT", NULL},
        {PG, "/* a /* b */ COMMIT */ SELECT 1", NULL}, /* nested in PostgreSQL */
        {PG, "'COMMIT'", NULL},
        {PG, "\"BEGIN\"", NULL},
        {PG, "DO $$ BEGIN END $$", NULL},
        {PG, "# COMMIT", NULL},                       /* not a comment in PostgreSQL */
        {MY, "SELECT 1 # COMMIT", NULL},
        {MY, "/* COMMIT */ SELECT 1", NULL},
        {LITE, "/* a /* b */ COMMIT */ SELECT 1", "COMMIT"}, /* not nested in SQLite */
        {LITE, "[BEGIN]", NULL},
        {LITE, "`COMMIT`", NULL},
        {PG, "PREPARE q AS SELECT 1", NULL},
        {MY, "PREPARE stmt FROM 'SELECT 1'", NULL},
        {PG, "PREPARE", NULL},
        {MY, "XAX", NULL},
    };
    RUN(t);
}

Test(tx_control, null_is_not_control)
{
    cr_expect(eq(ptr, (void *)txm__sql_tx_control(NULL, PG), NULL));
}

Test(tx_control, result_is_static_upper_case)
{
    const char *a = txm__sql_tx_control("commit", PG);
    const char *b = txm__sql_tx_control("COMMIT", MY);
    cr_assert(eq(ptr, (void *)a, (void *)b), "the same static string for every call");
    cr_assert(eq(str, (char *)a, "COMMIT"));
}
