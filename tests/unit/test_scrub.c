/* The secret scrubber (core/url.c txm__scrub) and the scrub scope of the error records
 * (core/error.c): every spelling of every secret a URL can carry, opaque key=value redaction,
 * short secrets, text cut by a bounded buffer, allocation failure. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <stdio.h>
#include <string.h>

#include "internal.h"

static txm_url *parse_ok(const char *s)
{
    txm_url *u = NULL;
    int rc = txm__url_parse(&u, s);
    cr_assert(eq(int, rc, 0), "parsing '%s' failed: %s", s, txm_error_last()->message);
    return u;
}

/* Scrubs a text that quotes `spelling` (as a library would) and checks it is gone. */
static void expect_hidden(const txm_url *u, const char *spelling)
{
    char text[512], out[512];
    snprintf(text, sizeof text, "libpq says: bad value \"%s\" (end)", spelling);
    txm__scrub(u, out, sizeof out, text, false);
    cr_expect(strstr(out, spelling) == NULL, "URL '%s': spelling '%s' survives in: %s", u->full, spelling, out);
    cr_expect(strstr(out, "***") != NULL, "URL '%s': nothing masked in: %s", u->full, out);
    cr_expect(strstr(out, "libpq says: bad value \"") == out, "the rest of the text is kept: %s", out);
}

static const struct {
    const char *url;
    const char *spellings[6]; /* NULL-terminated */
} cases[] = {
    /* user:password@ with '@', '%', '+' percent-encoded: raw, decoded, '+' as a space */
    {"postgresql://u:S%40c+r%25t@h/db", {"S%40c+r%25t", "S@c+r%t", "S@c r%t", NULL}},
    /* the three defect spellings of issue 7 (libpq conninfo after the scheme, no "//") */
    {"postgresql:host=127.0.0.1 port=1 password=SECRET1", {"SECRET1", NULL}},
    {"postgres:password=SECRET2 dbname=x", {"SECRET2", NULL}},
    {"mysql:password=SECRET3", {"SECRET3", NULL}},
    /* a percent-encoded key and value: libpq echoes the raw URI */
    {"postgresql://[]/db?pass%77ord=S%45CRET4", {"S%45CRET4", "SECRET4", NULL}},
    /* conninfo quoting with an escaped quote, and spaces around '=' */
    {"postgresql:password='a b\\'c9' host=h", {"'a b\\'c9'", "a b\\'c9", "a b'c9", NULL}},
    {"postgresql:host=h password = Spaced5 port=1", {"Spaced5", NULL}},
    /* libpq's other secret keyword, Connector/C's spellings, SQLCipher's key */
    {"postgresql://h/db?sslpassword=K%2Bey6&x=1", {"K%2Bey6", "K+ey6", NULL}},
    {"mysql://u:p%40ss7@h/db?passwd=PwTwo&pwd=PwThree", {"p%40ss7", "p@ss7", "PwTwo", "PwThree", NULL}},
    {"sqlite:/x.db?key=Qk1key&hexkey=00ffee", {"Qk1key", "00ffee", NULL}},
    /* query values run to '&' (a space is part of them), conninfo values to a space */
    {"postgresql://h/db?password=two words&x=1", {"two words", NULL}},
    /* an ambiguous password (unencoded '@', '/', '?'): the whole span and its pieces */
    {"mysql://u:pass@word/more?tail@h/db", {"pass@word/more?tail", "word", "more", "tail", NULL}},
    {"mysql:u:Opaque8@h/db", {"Opaque8", NULL}},
    {"postgresql://u@h/db?api_token=Tok9&client_secret=Sec10", {"Tok9", "Sec10", NULL}},
    /* an encoded '=' inside the key: libpq decodes it and quotes "password=Enc11" */
    {"postgresql://h/db?password%3DEnc11", {"Enc11", NULL}},
};

Test(scrub, every_spelling_of_every_secret_is_hidden)
{
    size_t i, k;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        txm_url *u = parse_ok(cases[i].url);
        cr_expect(txm__url_secret_count(u) > 0, "no secret recorded for %s", cases[i].url);
        for (k = 0; cases[i].spellings[k]; k++)
            expect_hidden(u, cases[i].spellings[k]);
        /* The URL itself, as written, is scrubbed of every secret (libpq quotes it whole). */
        {
            char out[512];
            txm__scrub(u, out, sizeof out, cases[i].url, false);
            for (k = 0; cases[i].spellings[k]; k++)
                cr_expect(strstr(out, cases[i].spellings[k]) == NULL, "'%s' shows '%s'", out, cases[i].spellings[k]);
            for (k = 0; cases[i].spellings[k]; k++)
                cr_expect(strstr(u->redacted, cases[i].spellings[k]) == NULL, "redacted '%s' shows '%s'", u->redacted,
                          cases[i].spellings[k]);
        }
        txm__url_free(u);
    }
}

Test(scrub, opaque_key_value_urls_are_redacted)
{
    static const char *const pairs[][2] = {
        {"postgresql:host=127.0.0.1 port=1 password=SECRET", "postgresql:host=127.0.0.1 port=1 password=***"},
        {"postgres:password=SECRET dbname=x", "postgres:password=*** dbname=x"},
        {"mysql:password=SECRET", "mysql:password=***"},
        {"postgresql:password='a b' host=h", "postgresql:password=*** host=h"},
        {"postgresql:host=h sslpassword = k port=1", "postgresql:host=h sslpassword = *** port=1"},
        {"postgresql://[]/db?pass%77ord=S%45CRET", "postgresql://[]/db?pass%77ord=***"},
        {"postgresql://h/db?password=a b&sslmode=disable", "postgresql://h/db?password=***&sslmode=disable"},
    };
    size_t i;
    for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        txm_url *u = parse_ok(pairs[i][0]);
        cr_expect(eq(str, (char *)u->redacted, (char *)pairs[i][1]));
        txm__url_free(u);
    }
}

Test(scrub, keys_that_are_not_secret_are_kept)
{
    txm_url *u = parse_ok("postgresql://u@h/db?sslmode=disable&ssl_key=/k.pem&application_name=pay");
    char out[256];
    cr_expect(eq(sz, txm__url_secret_count(u), 0));
    cr_expect(eq(str, (char *)u->redacted, "postgresql://u@h/db?sslmode=disable&ssl_key=/k.pem&application_name=pay"));
    txm__scrub(u, out, sizeof out, "sslmode=disable pay u h db", false);
    cr_expect(eq(str, out, "sslmode=disable pay u h db"));
    txm__url_free(u);
}

/* Decision (docs/decisions.md): every occurrence of a secret is masked, however short. */
Test(scrub, a_short_secret_is_masked_everywhere)
{
    txm_url *u = parse_ok("mysql://u:x@h/db");
    char out[64];
    txm__scrub(u, out, sizeof out, "x marks the box", false);
    cr_expect(eq(str, out, "*** marks the bo***"));
    txm__url_free(u);
}

Test(scrub, pieces_of_four_bytes_or_more_are_hidden)
{
    /* MariaDB quotes only the rejected element of a ',' list: a piece of the password */
    txm_url *u = parse_ok("mysql://u:Ab12%2CXy%3A9q@h/db");
    char out[128];
    txm__scrub(u, out, sizeof out, "Variable 'sql_mode' can't be set to the value of 'Ab12'", false);
    cr_expect(eq(str, out, "Variable 'sql_mode' can't be set to the value of '***'"));
    txm__scrub(u, out, sizeof out, "middle [2,Xy:] and 3 bytes [Xy:] stay", false);
    cr_expect(eq(str, out, "middle [***] and 3 bytes [Xy:] stay"));
    txm__url_free(u);
}

Test(scrub, a_guessed_span_is_masked_only_whole)
{
    /* The ambiguous span runs to the last '@' (inside a query value here). It, and its pieces of
     * 3+ bytes between delimiters, are masked where they stand whole; other runs of 4 bytes of it
     * are not (the guess may reach into the host and the query). */
    txm_url *u = parse_ok("mysql://u:pa@ss@h:3306/db?email=a@b");
    char out[128];
    txm__scrub(u, out, sizeof out, "[ss@h:33] [pa@ss@h:3306/db?email=a] [email]", false);
    cr_expect(eq(str, out, "[ss@h:33] [***] [***]"));
    txm__url_free(u);
}

Test(scrub, the_longest_spelling_wins)
{
    /* "p%40ss" must be masked whole, not as "p%40" + a decoded tail. */
    txm_url *u = parse_ok("mysql://u:p%40ss@h/db");
    char out[64];
    txm__scrub(u, out, sizeof out, "[p%40ss] [p@ss]", false);
    cr_expect(eq(str, out, "[***] [***]"));
    txm__url_free(u);
}

Test(scrub, text_cut_short_hides_a_trailing_piece_of_a_secret)
{
    txm_url *u = parse_ok("mysql://u:ABCDEFGH@h/db");
    char out[16];
    /* the source was cut by someone else's buffer: its tail "ABC" is the start of the secret */
    txm__scrub(u, out, sizeof out, "cut: ABC", true);
    cr_expect(eq(str, out, "cut: ***"));
    /* not cut: "ABC" alone is not the secret */
    txm__scrub(u, out, sizeof out, "cut: ABC", false);
    cr_expect(eq(str, out, "cut: ABC"));
    /* the copy itself is cut inside the secret */
    txm__scrub(u, out, 12, "0123456789ABCDEFGH", false);
    cr_expect(strstr(out, "AB") == NULL, "%s", out);
    txm__scrub(u, out, 12, "01234567ABCDEFGH", false);
    cr_expect(eq(str, out, "01234567***"));
    /* bounds: size 1 and 0 */
    txm__scrub(u, out, 1, "ABCDEFGH", false);
    cr_expect(eq(str, out, ""));
    cr_expect(eq(sz, txm__scrub(u, out, 0, "ABCDEFGH", false), 0));
    txm__url_free(u);
}

Test(scrub, no_url_or_no_secret_is_a_plain_copy)
{
    char out[8];
    txm_url *u = parse_ok("sqlite::memory:");
    cr_expect(eq(sz, txm__url_secret_count(u), 0));
    txm__scrub(u, out, sizeof out, "abcdefghij", false);
    cr_expect(eq(str, out, "abcdefg"));
    txm__scrub(NULL, out, sizeof out, NULL, false);
    cr_expect(eq(str, out, ""));
    txm__url_free(u);
}

/* Every error record set in scope is scrubbed: message, detail and names, with the tail check
 * for a field that a driver filled to the brim. */
Test(scrub, error_records_in_scope_are_scrubbed)
{
    txm_url *u = parse_ok("postgresql://u:Hunter2Pw@h/db");
    const txm_url *prev;
    txm_error_detail d;
    char filler[600], detail[TXM_ERR_MSG_MAX];
    const txm_error *e;

    memset(&d, 0, sizeof d);
    memset(detail, 'd', sizeof detail);
    memcpy(detail + sizeof detail - 1 - 5, "Hunte", 5); /* a driver cut the secret at the end */
    detail[sizeof detail - 1] = '\0';
    d.detail = detail;
    d.table_name = "t_Hunter2Pw";
    d.constraint_name = "Hunter2Pw_key";

    prev = txm__scrub_scope(u);
    txm_driver_error(TXM_EAUTH, &d, "auth failed for password \"%s\" in %s", "Hunter2Pw", u->full);
    e = txm_error_last();
    cr_expect(strstr(e->message, "Hunter2Pw") == NULL, "%s", e->message);
    cr_expect(strstr(e->message, "auth failed for password \"***\" in postgresql://u:***@h/db") != NULL, "%s",
              e->message);
    cr_expect(strstr(e->detail, "Hunte") == NULL, "tail of the detail: %s", e->detail + 480);
    cr_expect(eq(str, (char *)e->table_name, "t_***"));
    cr_expect(eq(str, (char *)e->constraint_name, "***_key"));

    /* a message longer than the record: the secret straddles the bound */
    memset(filler, 'f', sizeof filler);
    filler[TXM_ERR_MSG_MAX - 4] = '\0';
    txm__err(TXM_ERROR, "%sHunter2Pw", filler);
    cr_expect(strstr(txm_error_last()->message, "Hunt") == NULL);
    cr_expect(strstr(txm_error_last()->message, "Hu") == NULL);

    /* the scope nests and is restored */
    cr_expect(eq(ptr, (void *)txm__scrub_scope(prev), (void *)u));
    txm__err(TXM_ERROR, "out of scope: %s", "Hunter2Pw");
    cr_expect(strstr(txm_error_last()->message, "Hunter2Pw") != NULL, "no scope, no scrub");
    txm__url_free(u);
}

Test(scrub, url_parse_errors_quote_a_scrubbed_url)
{
    /* the user name equals the password: `redacted` shows the user, the message must not */
    txm_url *u = (txm_url *)(void *)&u;
    int rc = txm__url_parse(&u, "mysql://Zp4ss:Zp4ss@h/db?x=%zz");
    cr_assert(eq(int, rc, TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "Zp4ss") == NULL, "%s", txm_error_last()->message);
    cr_expect(strstr(txm_error_last()->message, "invalid URL 'mysql://***:***@h/db?x=%zz'") != NULL, "%s",
              txm_error_last()->message);
}

/* Scrubbing costs (text x recorded bytes): absurd secret lists are refused, quickly, and the
 * scan of a long URL stays linear (no quadratic search for the next space or '&'). */
Test(scrub, absurd_secret_lists_are_refused)
{
    static char url[600000];
    size_t o, i;
    txm_url *u = NULL;
    o = (size_t)snprintf(url, sizeof url, "postgresql://h/db?x=1");
    for (i = 0; i < 20000; i++)
        o += (size_t)snprintf(url + o, sizeof url - o, "&password=Pw%07zuq", i);
    cr_assert(eq(int, txm__url_parse(&u, url), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "more than 32768 bytes") != NULL, "%s", txm_error_last()->message);
    cr_expect(eq(ptr, u, NULL));
    /* many keys that are no secrets, and a long password well under the bound, are fine */
    o = (size_t)snprintf(url, sizeof url, "postgresql://u:");
    for (i = 0; i < 4000; i++)
        url[o++] = (char)('a' + i % 26);
    o += (size_t)snprintf(url + o, sizeof url - o, "@h/db?x=1");
    for (i = 0; i < 20000; i++)
        o += (size_t)snprintf(url + o, sizeof url - o, "&k%zu=v", i);
    u = parse_ok(url);
    cr_expect(eq(sz, u->nparams, 20001));
    txm__url_free(u);
}

Test(scrub, allocation_failure_at_every_step_of_a_parse)
{
    const char *url = "postgresql://u:p%40ss@h/db?password=x+y&sslpassword='k'&pwd=zz";
    unsigned long n;
    int ok = 0;
    for (n = 1; n < 64 && !ok; n++) {
        txm_url *u = (txm_url *)(void *)&u;
        int rc;
        txm__alloc_fail_after(n, false);
        rc = txm__url_parse(&u, url);
        txm__alloc_fail_after(0, false);
        if (rc == 0) {
            ok = 1;
            cr_expect(txm__url_secret_count(u) > 0);
            txm__url_free(u);
        } else {
            cr_expect(eq(int, rc, TXM_ENOMEM));
            cr_expect(eq(ptr, u, NULL));
            cr_expect(strstr(txm_error_last()->message, "out of memory") != NULL);
        }
    }
    cr_expect(ok, "the parse never succeeded");
    cr_expect(gt(ulong, n, 2), "a parse with secrets allocates more than once");
}
