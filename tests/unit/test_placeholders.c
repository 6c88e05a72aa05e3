/* Placeholder scanner/rewriter: table-driven cases per dialect. Each case is run in both styles:
 * QMARK must count without copying, DOLLAR must count the same and produce the expected text. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The dialects the built-in drivers use. */
#define PG TXM_DIALECT_DOLLAR_QUOTES
#define MY (TXM_DIALECT_BACKSLASH | TXM_DIALECT_BACKTICKS | TXM_DIALECT_HASH_COMMENTS)
#define LITE (TXM_DIALECT_BACKTICKS | TXM_DIALECT_BRACKETS)
#define ANSI 0u

typedef struct ph_case {
    unsigned dialect;
    const char *sql;
    int rc;             /* 0 or TXM_EINVALID */
    size_t count;       /* when rc == 0 */
    const char *dollar; /* expected TXM_PH_DOLLAR output; NULL: same as sql */
    const char *error;  /* when rc != 0: a substring of the message */
} ph_case;

static const char *dialect_name(unsigned d)
{
    return d == PG ? "pg" : d == MY ? "mysql" : d == LITE ? "sqlite" : d == ANSI ? "ansi" : "other";
}

static void run_case(const ph_case *c)
{
    char *out = (char *)"sentinel";
    size_t count = 12345;
    int rc = txm__sql_placeholders(c->sql, TXM_PH_QMARK, c->dialect, &out, &count);
    cr_assert(eq(int, rc, c->rc), "[%s] QMARK %s: rc %d, expected %d (%s)", dialect_name(c->dialect), c->sql, rc,
              c->rc, txm_error_last()->message);
    cr_assert(eq(ptr, out, NULL), "[%s] QMARK must not copy: %s", dialect_name(c->dialect), c->sql);
    if (rc) {
        cr_assert(eq(sz, count, 0));
        cr_assert(strstr(txm_error_last()->message, c->error) != NULL, "[%s] %s: message '%s' lacks '%s'",
                  dialect_name(c->dialect), c->sql, txm_error_last()->message, c->error);
    } else {
        cr_assert(eq(sz, count, c->count), "[%s] QMARK %s", dialect_name(c->dialect), c->sql);
    }

    out = (char *)"sentinel";
    count = 12345;
    rc = txm__sql_placeholders(c->sql, TXM_PH_DOLLAR, c->dialect, &out, &count);
    cr_assert(eq(int, rc, c->rc), "[%s] DOLLAR %s: rc %d (%s)", dialect_name(c->dialect), c->sql, rc,
              txm_error_last()->message);
    if (rc) {
        cr_assert(eq(ptr, out, NULL));
        cr_assert(eq(sz, count, 0));
        cr_assert(strstr(txm_error_last()->message, c->error) != NULL, "[%s] %s: message '%s' lacks '%s'",
                  dialect_name(c->dialect), c->sql, txm_error_last()->message, c->error);
        return;
    }
    if (c->count == 0)
        cr_assert(eq(ptr, out, NULL), "[%s] DOLLAR without placeholders returns no copy: %s",
                  dialect_name(c->dialect), c->sql);
    else
        cr_assert(not(eq(ptr, out, NULL)), "[%s] DOLLAR with placeholders returns a heap string: %s",
                  dialect_name(c->dialect), c->sql);
    {
        /* Compare, free, then assert: a failing case does not also report a leak. */
        const char *want = c->dollar ? c->dollar : c->sql;
        const char *used = out ? out : c->sql; /* NULL: the caller uses the SQL as is */
        int same = strcmp(used, want) == 0;
        char got[256];
        snprintf(got, sizeof got, "%s", used);
        txm__free(out);
        cr_assert(same, "[%s] rewrite of %s\n  got:  %s\n  want: %s", dialect_name(c->dialect), c->sql, got, want);
    }
    cr_assert(eq(sz, count, c->count), "[%s] DOLLAR %s", dialect_name(c->dialect), c->sql);
}

static void run_table(const ph_case *cases, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        run_case(&cases[i]);
}
#define RUN(t) run_table(t, sizeof t / sizeof t[0])

Test(placeholders, basics_every_dialect)
{
    static const unsigned ds[] = {PG, MY, LITE, ANSI};
    size_t i;
    for (i = 0; i < 4; i++) {
        const ph_case t[] = {
            {ds[i], "", 0, 0, NULL, NULL},
            {ds[i], "SELECT 1", 0, 0, NULL, NULL},
            {ds[i], "SELECT ?", 0, 1, "SELECT $1", NULL},
            {ds[i], "INSERT INTO t (a, b, c) VALUES (?, ?,?)", 0, 3, "INSERT INTO t (a, b, c) VALUES ($1, $2,$3)", NULL},
            {ds[i], "SELECT '?' , ?", 0, 1, "SELECT '?' , $1", NULL},
            {ds[i], "SELECT 'it''s ?', ?", 0, 1, "SELECT 'it''s ?', $1", NULL},
            {ds[i], "SELECT 1 -- ?\n, ?", 0, 1, "SELECT 1 -- ?\n, $1", NULL},
            {ds[i], "SELECT 1 /* ? */ , ?", 0, 1, "SELECT 1 /* ? */ , $1", NULL},
            {ds[i], "SELECT 1 -- ? at the end", 0, 0, NULL, NULL},
            {ds[i], "??", 0, 2, "$1$2", NULL},
            {ds[i], "?", 0, 1, "$1", NULL},
            {ds[i], "SELECT ?::int, (?)", 0, 2, "SELECT $1::int, ($2)", NULL},
            {ds[i], "SELECT 'abc", TXM_EINVALID, 0, NULL, "unterminated string literal starting at byte offset 7"},
            {ds[i], "SELECT 1 /* ?", TXM_EINVALID, 0, NULL, "unterminated block comment starting at byte offset 9"},
            {ds[i], "SELECT ? /* ?", TXM_EINVALID, 0, NULL, "offset 9"},
            {ds[i], "'", TXM_EINVALID, 0, NULL, "offset 0"},
        };
        RUN(t);
    }
}

Test(placeholders, identifier_boundaries_get_a_space)
{
    /* "a=?AND" must not become "$1AND" (PostgreSQL: trailing junk after parameter) nor "col$1"
     * (an identifier: '$' is an identifier character in PostgreSQL). */
    const ph_case t[] = {
        {PG, "SELECT * FROM t WHERE a=?AND b=?", 0, 2, "SELECT * FROM t WHERE a=$1 AND b=$2", NULL},
        {PG, "SELECT col?", 0, 1, "SELECT col $1", NULL},
        {PG, "SELECT ?1", 0, 1, "SELECT $1 1", NULL},
        {PG, "SELECT ?$", 0, 1, "SELECT $1 $", NULL},
        {PG, "SELECT ?_x", 0, 1, "SELECT $1 _x", NULL},
        {PG, "SELECT \xc3\xa9?\xc3\xa9", 0, 1, "SELECT \xc3\xa9 $1 \xc3\xa9", NULL},
    };
    RUN(t);
}

Test(placeholders, postgresql)
{
    const ph_case t[] = {
        {PG, "SELECT \"we?ird\" FROM t WHERE a = ?", 0, 1, "SELECT \"we?ird\" FROM t WHERE a = $1", NULL},
        {PG, "SELECT \"a\"\"?\" , ?", 0, 1, "SELECT \"a\"\"?\" , $1", NULL},
        /* Nested block comments. */
        {PG, "SELECT /* a /* ? */ ? */ ?", 0, 1, "SELECT /* a /* ? */ ? */ $1", NULL},
        {PG, "SELECT /* /* */ ?", TXM_EINVALID, 0, NULL, "block comment starting at byte offset 7"},
        {PG, "SELECT /**/ ?", 0, 1, "SELECT /**/ $1", NULL},
        {PG, "SELECT /*/ ? */ ?", 0, 1, "SELECT /*/ ? */ $1", NULL},
        /* Dollar quotes. */
        {PG, "SELECT $$ ? $$, ?", 0, 1, "SELECT $$ ? $$, $1", NULL},
        {PG, "SELECT $fn$ it's ? $fn$ , ?", 0, 1, "SELECT $fn$ it's ? $fn$ , $1", NULL},
        {PG, "SELECT $a$ $b$ ? $b$ $a$, ?", 0, 1, "SELECT $a$ $b$ ? $b$ $a$, $1", NULL},
        {PG, "SELECT $a$ ? $a$$a$ ? $a$", 0, 0, NULL, NULL},
        {PG, "SELECT $a$ $ab$ ? $a$", 0, 0, NULL, NULL},
        {PG, "SELECT $t_1$ ? $t_1$ ?", 0, 1, "SELECT $t_1$ ? $t_1$ $1", NULL},
        {PG, "$$?$$", 0, 0, NULL, NULL},
        {PG, "SELECT $1, ?, $$?$$", 0, 1, "SELECT $1, $1, $$?$$", NULL},        /* $1 is not a quote */
        {PG, "SELECT $1$ ?", 0, 1, "SELECT $1$ $1", NULL},                       /* nor $1$ */
        {PG, "SELECT a$b$ FROM t WHERE x = ?", 0, 1, "SELECT a$b$ FROM t WHERE x = $1", NULL}, /* identifier */
        {PG, "SELECT x1$a$ ?", 0, 1, "SELECT x1$a$ $1", NULL},                    /* identifier */
        {PG, "SELECT $1$a$ ? $a$", 0, 0, NULL, NULL},  /* parameter $1, then a quote (longest match) */
        {PG, "SELECT 1$a$ ? $a$", 0, 0, NULL, NULL},   /* number 1, then a quote */
        {PG, "SELECT ?$a$ ? $a$", 0, 1, "SELECT $1 $a$ ? $a$", NULL},
        {PG, "SELECT $ ?", 0, 1, "SELECT $ $1", NULL},
        {PG, "SELECT $tag$ x", TXM_EINVALID, 0, NULL, "unterminated dollar-quoted string starting at byte offset 7"},
        {PG, "SELECT $$", TXM_EINVALID, 0, NULL, "dollar-quoted"},
        {PG, "SELECT $a$ x $b$", TXM_EINVALID, 0, NULL, "dollar-quoted"},
        /* E'' strings allow backslash escapes; plain strings do not (standard_conforming_strings). */
        {PG, "SELECT E'\\'?', ?", 0, 1, "SELECT E'\\'?', $1", NULL},
        {PG, "SELECT e'a\\'b?', ?", 0, 1, "SELECT e'a\\'b?', $1", NULL},
        {PG, "SELECT 'a\\', ?", 0, 1, "SELECT 'a\\', $1", NULL},
        {PG, "SELECT E'x'\n'\\'?', ?", 0, 1, "SELECT E'x'\n'\\'?', $1", NULL}, /* continuation keeps E */
        {PG, "SELECT E'x' '\\', ?", 0, 1, "SELECT E'x' '\\', $1", NULL},      /* no newline: new string */
        {PG, "SELECT nE'\\', ?", 0, 1, "SELECT nE'\\', $1", NULL},            /* not an E prefix */
        {PG, "SELECT E'\\", TXM_EINVALID, 0, NULL, "string literal"},
        /* Not PostgreSQL syntax: #, backticks, brackets, backslashes in "..." are ordinary. */
        {PG, "SELECT 1 # ?", 0, 1, "SELECT 1 # $1", NULL},
        {PG, "SELECT `a?`", 0, 1, "SELECT `a $1`", NULL},
        {PG, "SELECT [a?]", 0, 1, "SELECT [a $1]", NULL},
        {PG, "SELECT \"abc", TXM_EINVALID, 0, NULL, "unterminated quoted identifier starting at byte offset 7"},
        {PG, "SELECT 1--?", 0, 0, NULL, NULL},
        {PG, "SELECT /*! ? */ 1", 0, 0, NULL, NULL},
    };
    RUN(t);
}

Test(placeholders, mysql)
{
    const ph_case t[] = {
        {MY, "SELECT `a?b` FROM t WHERE c = ?", 0, 1, "SELECT `a?b` FROM t WHERE c = $1", NULL},
        {MY, "SELECT `a``?` , ?", 0, 1, "SELECT `a``?` , $1", NULL},
        {MY, "SELECT `abc", TXM_EINVALID, 0, NULL, "unterminated backtick-quoted identifier starting at byte offset 7"},
        {MY, "SELECT 'a\\'?', ?", 0, 1, "SELECT 'a\\'?', $1", NULL},
        {MY, "SELECT 'a\\\\', ?", 0, 1, "SELECT 'a\\\\', $1", NULL},
        {MY, "SELECT 'a\\', ?", TXM_EINVALID, 0, NULL, "string literal starting at byte offset 7"},
        {MY, "SELECT \"a\\\"?\", ?", 0, 1, "SELECT \"a\\\"?\", $1", NULL},
        {MY, "SELECT \"a\"\"?\", ?", 0, 1, "SELECT \"a\"\"?\", $1", NULL},
        {MY, "SELECT \"abc", TXM_EINVALID, 0, NULL, "unterminated double-quoted string starting at byte offset 7"},
        {MY, "SELECT 1 # ?\n, ?", 0, 1, "SELECT 1 # ?\n, $1", NULL},
        {MY, "SELECT 1 #?", 0, 0, NULL, NULL},
        /* MySQL needs whitespace or a control character after "--". */
        {MY, "SELECT 1--?", 0, 1, "SELECT 1--$1", NULL},
        {MY, "SELECT 1 -- ?\n, ?", 0, 1, "SELECT 1 -- ?\n, $1", NULL},
        {MY, "SELECT 1 --\t?\n, ?", 0, 1, "SELECT 1 --\t?\n, $1", NULL},
        {MY, "SELECT 1 --", 0, 0, NULL, NULL},
        /* Comments do not nest in MySQL. */
        {MY, "SELECT /* a /* ? */ ?", 0, 1, "SELECT /* a /* ? */ $1", NULL},
        /* Executable comments are code to some servers, a comment to others (version gate, M! on
         * MySQL): scanned as code, but no placeholder inside one (issue 7: a value ending the
         * comment became SQL on a server that skipped it). */
        {MY, "SELECT /*! STRAIGHT_JOIN */ a FROM t WHERE b = ?", 0, 1, "SELECT /*! STRAIGHT_JOIN */ a FROM t WHERE b = $1", NULL},
        {MY, "SELECT /*!50000 ? */ + ?", TXM_EINVALID, 0, NULL,
         "placeholder at byte offset 16 of the SQL text is inside the MySQL executable comment starting at byte offset 7"},
        {MY, "SELECT 1 /*!999999 + ? */", TXM_EINVALID, 0, NULL, "inside the MySQL executable comment starting at byte offset 9"},
        {MY, "SELECT /*M!100000 ? */ 1", TXM_EINVALID, 0, NULL, "inside the MySQL executable comment"},
        {MY, "SELECT /*M! ? */", TXM_EINVALID, 0, NULL, "inside the MySQL executable comment"},
        {MY, "SELECT /*! ? */", TXM_EINVALID, 0, NULL, "inside the MySQL executable comment"},
        {MY, "SELECT /*!50000 1 + */ ?", 0, 1, "SELECT /*!50000 1 + */ $1", NULL},
        {MY, "SELECT /*!50000 'a' \"b\" `c` */ ?", 0, 1, "SELECT /*!50000 'a' \"b\" `c` */ $1", NULL},
        /* A star-slash inside a literal or comment in it: the readings disagree on the comment's
         * end, hence on what is a literal after it. Fine without placeholders. */
        {MY, "SELECT /*!50000 '*/?' */ ?", TXM_EINVALID, 0, NULL, "executable comment starting at byte offset 7 of the SQL text holds a '*/'"},
        {MY, "SELECT /*!50000 /* x */ 1 */ ?", TXM_EINVALID, 0, NULL, "holds a '*/'"},
        {MY, "SELECT /*!50000 # */\n */ ?", TXM_EINVALID, 0, NULL, "holds a '*/'"},
        {MY, "SELECT /*!50000 '*/' */ 1", 0, 0, NULL, NULL},
        {MY, "SELECT /*! 1", TXM_EINVALID, 0, NULL, "unterminated executable comment starting at byte offset 7"},
        {MY, "SELECT /*+ BKA(t) ? */ 1", 0, 0, NULL, NULL},
        /* Not MySQL syntax. */
        {MY, "SELECT [a?b]", 0, 1, "SELECT [a $1 b]", NULL},
        {MY, "SELECT $$ ? $$", 0, 1, "SELECT $$ $1 $$", NULL},
    };
    RUN(t);
}

Test(placeholders, sqlite)
{
    const ph_case t[] = {
        {LITE, "SELECT [a?b] FROM t WHERE c = ?", 0, 1, "SELECT [a?b] FROM t WHERE c = $1", NULL},
        {LITE, "SELECT [a[?] , ?", 0, 1, "SELECT [a[?] , $1", NULL},
        {LITE, "SELECT [abc", TXM_EINVALID, 0, NULL, "unterminated bracket-quoted identifier starting at byte offset 7"},
        {LITE, "SELECT `a?b`, \"c?d\", 'e?f', ?", 0, 1, "SELECT `a?b`, \"c?d\", 'e?f', $1", NULL},
        {LITE, "SELECT 'a\\', ?", 0, 1, "SELECT 'a\\', $1", NULL},
        /* Comments do not nest in SQLite: the first close ends the comment. */
        {LITE, "SELECT /* a /* ? */ ? */ ?", 0, 2, "SELECT /* a /* ? */ $1 */ $2", NULL},
        {LITE, "SELECT /* /* */ ?", 0, 1, "SELECT /* /* */ $1", NULL},
        {LITE, "SELECT 1 # ?", 0, 1, "SELECT 1 # $1", NULL},
        {LITE, "SELECT $$ ? $$", 0, 1, "SELECT $$ $1 $$", NULL},
        {LITE, "SELECT 1--?", 0, 0, NULL, NULL},
    };
    RUN(t);
}

/* Runs of more than 16 ordinary bytes take the strcspn path: every dialect's stop bytes must be
 * found there too. */
#define A40 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
Test(placeholders, long_runs_of_ordinary_bytes)
{
    const ph_case t[] = {
        {PG, A40 " $$?$$ " A40 " ?", 0, 1, A40 " $$?$$ " A40 " $1", NULL},
        {PG, A40 "$x$ ?", 0, 1, A40 "$x$ $1", NULL}, /* aaa$x$ is an identifier, not a quote */
        {PG, A40 "$x$?$x$ ?", TXM_EINVALID, 0, NULL, "dollar-quoted string starting at byte offset 44"},
        {PG, A40 " /*" A40 "/*" A40 "*/" A40 "?*/ ?", 0, 1, A40 " /*" A40 "/*" A40 "*/" A40 "?*/ $1", NULL},
        {PG, A40 " --" A40 "?\n" A40 " ?", 0, 1, A40 " --" A40 "?\n" A40 " $1", NULL},
        {MY, A40 " #" A40 "?\n" A40 "?", 0, 1, A40 " #" A40 "?\n" A40 " $1", NULL},
        {MY, "/*! " A40 "*/ ?", 0, 1, "/*! " A40 "*/ $1", NULL},
        {MY, A40 " `" A40 "?` " A40 " ?", 0, 1, A40 " `" A40 "?` " A40 " $1", NULL},
        {MY, A40 " \"" A40 "\\\"?\" ?", 0, 1, A40 " \"" A40 "\\\"?\" $1", NULL},
        {LITE, A40 " [" A40 "?] " A40 " ?", 0, 1, A40 " [" A40 "?] " A40 " $1", NULL},
        {LITE, A40 " '" A40 "?' " A40 " ?", 0, 1, A40 " '" A40 "?' " A40 " $1", NULL},
        {ANSI, A40 A40 "?", 0, 1, A40 A40 " $1", NULL},
        {ANSI, A40 "'", TXM_EINVALID, 0, NULL, "string literal starting at byte offset 40"},
        {MY, A40 "/*! " A40, TXM_EINVALID, 0, NULL, "executable comment starting at byte offset 40"},
    };
    RUN(t);
}

Test(placeholders, many_placeholders)
{
    /* 10000 placeholders: the output grows by one digit per power of ten; ASan checks the size. */
    enum { N = 10000 };
    static char sql[2 * N + 16];
    char *out = NULL, *p;
    size_t count = 0, i, expect_len = 0;
    char tail[16];
    p = sql;
    for (i = 0; i < N; i++) {
        *p++ = '?';
        *p++ = ',';
    }
    *p = '\0';
    cr_assert(eq(int, txm__sql_placeholders(sql, TXM_PH_DOLLAR, PG, &out, &count), 0));
    cr_assert(eq(sz, count, N));
    for (i = 1; i <= N; i++)
        expect_len += 1 + (size_t)snprintf(tail, sizeof tail, "%zu", i) + 1;
    cr_assert(eq(sz, strlen(out), expect_len));
    cr_assert(eq(str, out + strlen(out) - 7, "$10000,"));
    cr_assert(eq(int, strncmp(out, "$1,$2,$3,", 9), 0));
    txm__free(out);

    /* Worst case growth: every placeholder between identifier characters gets two spaces. */
    p = sql;
    for (i = 0; i < N; i++) {
        *p++ = 'a';
        *p++ = '?';
    }
    *p++ = 'a';
    *p = '\0';
    cr_assert(eq(int, txm__sql_placeholders(sql, TXM_PH_DOLLAR, PG, &out, &count), 0));
    cr_assert(eq(sz, count, N));
    cr_assert(eq(int, strncmp(out, "a $1 a $2 a", 11), 0));
    cr_assert(eq(str, out + strlen(out) - 9, " $10000 a"));
    txm__free(out);

    /* Many '?' inside a literal: sized from the '?' bytes, but none is a placeholder. */
    sql[0] = '\'';
    memset(sql + 1, '?', 2 * N);
    sql[2 * N + 1] = '\'';
    sql[2 * N + 2] = '\0';
    cr_assert(eq(int, txm__sql_placeholders(sql, TXM_PH_DOLLAR, PG, &out, &count), 0));
    cr_assert(eq(sz, count, 0));
    cr_assert(eq(ptr, out, NULL), "nothing rewritten: no copy");
}

Test(placeholders, dollar_without_placeholders_does_not_allocate)
{
    char *out = (char *)"sentinel";
    size_t count = 7;
    unsigned long before = txm__alloc_count();
    cr_assert(eq(int, txm__sql_placeholders("SELECT 1 FROM t", TXM_PH_DOLLAR, PG, &out, &count), 0));
    cr_assert(eq(ptr, out, NULL));
    cr_assert(eq(sz, count, 0));
    cr_assert(eq(u64, (uint64_t)(txm__alloc_count() - before), 0));
    /* Validation still happens without a copy. */
    cr_assert(eq(int, txm__sql_placeholders("SELECT 'x", TXM_PH_DOLLAR, PG, &out, &count), TXM_EINVALID));
}

Test(placeholders, qmark_never_allocates_dollar_allocates_once)
{
    const char *sql = "SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)";
    char *out = NULL;
    size_t count = 0;
    unsigned long before = txm__alloc_count();
    cr_assert(eq(int, txm__sql_placeholders(sql, TXM_PH_QMARK, LITE, &out, &count), 0));
    cr_assert(eq(sz, count, 3));
    cr_assert(eq(u64, (uint64_t)(txm__alloc_count() - before), 0));
    before = txm__alloc_count();
    cr_assert(eq(int, txm__sql_placeholders(sql, TXM_PH_DOLLAR, PG, &out, &count), 0));
    cr_assert(eq(u64, (uint64_t)(txm__alloc_count() - before), 1));
    cr_assert(eq(str, out, "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"));
    txm__free(out);
}

Test(placeholders, invalid_arguments)
{
    char *out = (char *)"sentinel";
    size_t count = 7;
    cr_expect(eq(int, txm__sql_placeholders(NULL, TXM_PH_QMARK, PG, &out, &count), TXM_EINVALID));
    cr_expect(eq(ptr, out, NULL));
    cr_expect(eq(sz, count, 0));
    cr_expect(eq(int, txm__sql_placeholders("SELECT ?", TXM_PH_QMARK, PG, NULL, &count), TXM_EINVALID));
    cr_expect(eq(int, txm__sql_placeholders("SELECT ?", TXM_PH_QMARK, PG, &out, NULL), TXM_EINVALID));
    cr_expect(eq(int, txm__sql_placeholders("SELECT ?", (txm_placeholder_style)7, PG, &out, &count), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "placeholder style") != NULL);
}

Test(placeholders, out_of_memory)
{
    char *out = (char *)"sentinel";
    size_t count = 7;
    txm__alloc_fail_after(1, false);
    cr_assert(eq(int, txm__sql_placeholders("SELECT ?", TXM_PH_DOLLAR, PG, &out, &count), TXM_ENOMEM));
    cr_expect(eq(ptr, out, NULL));
    cr_expect(eq(sz, count, 0));
    cr_expect(eq(int, txm_error_last()->code, TXM_ENOMEM));
    cr_assert(eq(int, txm__sql_placeholders("SELECT ?", TXM_PH_DOLLAR, PG, &out, &count), 0));
    txm__free(out);
}

Test(placeholders, error_leaves_no_stale_state)
{
    /* A failure followed by a success on the same thread: the second result is independent. */
    char *out = NULL;
    size_t count = 0;
    cr_assert(eq(int, txm__sql_placeholders("SELECT '", TXM_PH_DOLLAR, PG, &out, &count), TXM_EINVALID));
    cr_assert(eq(int, txm__sql_placeholders("SELECT ?", TXM_PH_DOLLAR, PG, &out, &count), 0));
    cr_assert(eq(str, out, "SELECT $1"));
    txm__free(out);
}
