/* URL parser: every accepted form, percent-decoding, redaction, and errors that never quote a
 * password. */
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
    cr_assert(not(eq(ptr, u, NULL)));
    /* Every field is non-NULL. */
    cr_assert(u->full && u->redacted && u->scheme && u->user && u->password && u->host && u->path && u->params);
    return u;
}

/* Parses s expecting TXM_EINVALID; checks *out is NULL and the message does not quote `secret`. */
static void parse_fails(const char *s, const char *secret, const char *must_mention)
{
    txm_url *u = (txm_url *)(void *)&u; /* not NULL, so we see it being reset */
    int rc = txm__url_parse(&u, s);
    const char *msg = txm_error_last()->message;
    cr_assert(eq(int, rc, TXM_EINVALID), "'%s' should be invalid, got %d", s ? s : "(null)", rc);
    cr_assert(eq(int, txm_error_last()->code, TXM_EINVALID));
    cr_assert(eq(ptr, u, NULL), "*out must be NULL after a failure");
    cr_assert(strstr(msg, "invalid URL") != NULL, "message: %s", msg);
    if (secret)
        cr_assert(strstr(msg, secret) == NULL, "message leaks the password: %s", msg);
    if (must_mention)
        cr_assert(strstr(msg, must_mention) != NULL, "message should mention '%s': %s", must_mention, msg);
}

Test(url, full_hierarchical_form)
{
    const char *s = "postgresql://bob:s3cret@db.example.com:5433/app?sslmode=require&application_name=txm";
    txm_url *u = parse_ok(s);
    cr_expect(eq(str, (char *)u->full, (char *)s));
    cr_expect(eq(str, (char *)u->scheme, "postgresql"));
    cr_expect(eq(str, (char *)u->user, "bob"));
    cr_expect(eq(str, (char *)u->password, "s3cret"));
    cr_expect(eq(str, (char *)u->host, "db.example.com"));
    cr_expect(eq(int, u->port, 5433));
    cr_expect(eq(str, (char *)u->path, "app"));
    cr_expect(eq(int, u->hierarchical, 1));
    cr_expect(eq(sz, u->nparams, 2));
    cr_expect(eq(str, (char *)u->params[0].key, "sslmode"));
    cr_expect(eq(str, (char *)u->params[0].value, "require"));
    cr_expect(eq(str, (char *)txm_url_param_get(u, "application_name"), "txm"));
    cr_expect(eq(str, (char *)u->redacted,
                 "postgresql://bob:***@db.example.com:5433/app?sslmode=require&application_name=txm"));
    txm__url_free(u);
}

Test(url, host_only)
{
    txm_url *u = parse_ok("mysql://db1");
    cr_expect(eq(str, (char *)u->scheme, "mysql"));
    cr_expect(eq(str, (char *)u->host, "db1"));
    cr_expect(eq(str, (char *)u->user, ""));
    cr_expect(eq(str, (char *)u->password, ""));
    cr_expect(eq(str, (char *)u->path, ""));
    cr_expect(eq(int, u->port, 0));
    cr_expect(eq(sz, u->nparams, 0));
    cr_expect(eq(int, u->hierarchical, 1));
    cr_expect(eq(str, (char *)u->redacted, "mysql://db1"));
    txm__url_free(u);
}

Test(url, bracketed_ipv6_host)
{
    txm_url *u = parse_ok("postgresql://[::1]:5432/db");
    cr_expect(eq(str, (char *)u->host, "::1"));
    cr_expect(eq(int, u->port, 5432));
    cr_expect(eq(str, (char *)u->path, "db"));
    txm__url_free(u);

    u = parse_ok("postgresql://u:pw@[fe80::1%25eth0]/db");
    cr_expect(eq(str, (char *)u->host, "fe80::1%eth0"));
    cr_expect(eq(int, u->port, 0));
    cr_expect(eq(str, (char *)u->password, "pw"));
    txm__url_free(u);
}

Test(url, opaque_sqlite_forms)
{
    txm_url *u = parse_ok("sqlite:/tmp/x.db?busy_timeout=100");
    cr_expect(eq(int, u->hierarchical, 0));
    cr_expect(eq(str, (char *)u->path, "/tmp/x.db"));
    cr_expect(eq(str, (char *)u->host, ""));
    cr_expect(eq(str, (char *)u->user, ""));
    cr_expect(eq(int, u->port, 0));
    cr_expect(eq(str, (char *)txm_url_param_get(u, "busy_timeout"), "100"));
    cr_expect(eq(str, (char *)u->redacted, "sqlite:/tmp/x.db?busy_timeout=100"));
    txm__url_free(u);

    u = parse_ok("sqlite::memory:");
    cr_expect(eq(str, (char *)u->scheme, "sqlite"));
    cr_expect(eq(str, (char *)u->path, ":memory:"));
    cr_expect(eq(sz, u->nparams, 0));
    cr_expect(eq(str, (char *)u->redacted, "sqlite::memory:"));
    txm__url_free(u);

    u = parse_ok("sqlite:rel.db");
    cr_expect(eq(str, (char *)u->path, "rel.db"));
    txm__url_free(u);

    u = parse_ok("sqlite:my%20file.db");
    cr_expect(eq(str, (char *)u->path, "my file.db"));
    txm__url_free(u);
}

Test(url, unix_socket_form_has_empty_host)
{
    txm_url *u = parse_ok("mysql://app@/billing?socket=/run/mysqld/mysqld.sock");
    cr_expect(eq(str, (char *)u->user, "app"));
    cr_expect(eq(str, (char *)u->host, ""));
    cr_expect(eq(str, (char *)u->path, "billing"));
    cr_expect(eq(str, (char *)txm_url_param_get(u, "socket"), "/run/mysqld/mysqld.sock"));
    txm__url_free(u);

    u = parse_ok("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
    cr_expect(eq(str, (char *)u->host, "/var/run/postgresql"));
    txm__url_free(u);
}

Test(url, percent_decoding_of_every_part)
{
    txm_url *u = parse_ok("mysql://us%40er:p%3Ass%2Fw%25d@h%2Dx/d%20b?k%3D=v%26w&%41=%62");
    cr_expect(eq(str, (char *)u->user, "us@er"));
    cr_expect(eq(str, (char *)u->password, "p:ss/w%d"));
    cr_expect(eq(str, (char *)u->host, "h-x"));
    cr_expect(eq(str, (char *)u->path, "d b"));
    cr_assert(eq(sz, u->nparams, 2));
    cr_expect(eq(str, (char *)u->params[0].key, "k="));
    cr_expect(eq(str, (char *)u->params[0].value, "v&w"));
    cr_expect(eq(str, (char *)txm_url_param_get(u, "A"), "b"));
    /* '+' is not a space (libpq does not decode it either). */
    txm__url_free(u);
    u = parse_ok("mysql://h/db?x=a+b");
    cr_expect(eq(str, (char *)txm_url_param_get(u, "x"), "a+b"));
    txm__url_free(u);
}

Test(url, user_and_password_variants)
{
    txm_url *u = parse_ok("mysql://:pw@h");
    cr_expect(eq(str, (char *)u->user, ""));
    cr_expect(eq(str, (char *)u->password, "pw"));
    cr_expect(eq(str, (char *)u->redacted, "mysql://:***@h"));
    txm__url_free(u);

    u = parse_ok("mysql://u@h");
    cr_expect(eq(str, (char *)u->user, "u"));
    cr_expect(eq(str, (char *)u->password, ""));
    cr_expect(eq(str, (char *)u->redacted, "mysql://u@h"));
    txm__url_free(u);

    u = parse_ok("mysql://u:@h");
    cr_expect(eq(str, (char *)u->password, ""));
    cr_expect(eq(str, (char *)u->redacted, "mysql://u:@h"));
    txm__url_free(u);

    /* '#' is an ordinary character (there are no fragments); ':' after the first belongs to the
     * password; the last '@' of the authority ends the user information. */
    u = parse_ok("mysql://u:a#b:c@d@h:3306/db");
    cr_expect(eq(str, (char *)u->password, "a#b:c@d"));
    cr_expect(eq(str, (char *)u->host, "h"));
    cr_expect(eq(int, u->port, 3306));
    cr_expect(eq(str, (char *)u->redacted, "mysql://u:***@h:3306/db"));
    txm__url_free(u);
}

Test(url, scheme_is_lower_cased_full_is_kept)
{
    txm_url *u = parse_ok("PostgreSQL://H/db");
    cr_expect(eq(str, (char *)u->scheme, "postgresql"));
    cr_expect(eq(str, (char *)u->full, "PostgreSQL://H/db"));
    cr_expect(eq(str, (char *)u->host, "H"));
    txm__url_free(u);
}

Test(url, ports)
{
    txm_url *u = parse_ok("mysql://h:/db");
    cr_expect(eq(int, u->port, 0), "an empty port means no port");
    txm__url_free(u);
    u = parse_ok("mysql://h:65535/db");
    cr_expect(eq(int, u->port, 65535));
    txm__url_free(u);
    u = parse_ok("mysql://h:1");
    cr_expect(eq(int, u->port, 1));
    txm__url_free(u);
}

Test(url, libpq_host_list_is_kept_whole)
{
    txm_url *u = parse_ok("postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write");
    cr_expect(eq(str, (char *)u->host, "h1:5432,h2:5433"));
    cr_expect(eq(int, u->port, 0));
    cr_expect(eq(str, (char *)u->path, "db"));
    cr_expect(eq(str, (char *)u->redacted, "postgresql://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write"));
    txm__url_free(u);
}

Test(url, query_parameters)
{
    txm_url *u = parse_ok("sqlite:x.db?&a=1&&flag&b=&a=2&");
    cr_assert(eq(sz, u->nparams, 4), "empty segments are skipped");
    cr_expect(eq(str, (char *)txm_url_param_get(u, "a"), "2"), "the last duplicate wins");
    cr_expect(eq(str, (char *)txm_url_param_get(u, "flag"), ""));
    cr_expect(eq(str, (char *)txm_url_param_get(u, "b"), ""));
    cr_expect(eq(ptr, (void *)txm_url_param_get(u, "missing"), NULL));
    cr_expect(eq(ptr, (void *)txm_url_param_get(u, "A"), NULL), "names are case-sensitive");
    cr_expect(eq(ptr, (void *)txm_url_param_get(NULL, "a"), NULL));
    cr_expect(eq(ptr, (void *)txm_url_param_get(u, NULL), NULL));
    txm__url_free(u);

    u = parse_ok("mysql://h/db?");
    cr_expect(eq(sz, u->nparams, 0));
    cr_expect(eq(str, (char *)u->path, "db"));
    txm__url_free(u);

    u = parse_ok("mysql://h?x=1");
    cr_expect(eq(str, (char *)u->host, "h"));
    cr_expect(eq(str, (char *)u->path, ""));
    cr_expect(eq(str, (char *)txm_url_param_get(u, "x"), "1"));
    txm__url_free(u);
}

Test(url, redacts_secret_query_parameters)
{
    txm_url *u = parse_ok("postgresql://h/db?password=hunter2&sslmode=disable&sslpassword=x&PWD=y&api_token=z");
    cr_expect(eq(str, (char *)txm_url_param_get(u, "password"), "hunter2"), "parsed values are not redacted");
    cr_expect(eq(str, (char *)u->redacted,
                 "postgresql://h/db?password=***&sslmode=disable&sslpassword=***&PWD=***&api_token=***"));
    txm__url_free(u);

    u = parse_ok("sqlite:/x.db?key=abc&hexkey=00ff&pass%77ord=hunter2");
    cr_expect(eq(str, (char *)u->redacted, "sqlite:/x.db?key=***&hexkey=***&pass%77ord=***"));
    txm__url_free(u);
}

Test(url, redacts_opaque_forms)
{
    txm_url *u = parse_ok("mysql:bob:hunter2@db/app");
    cr_expect(eq(int, u->hierarchical, 0));
    cr_expect(eq(str, (char *)u->redacted, "mysql:bob:***@db/app"));
    txm__url_free(u);

    /* The scheme was forgotten: "bob" is taken as the scheme, the password is still hidden. */
    u = parse_ok("bob:hunter2@db/app");
    cr_expect(eq(str, (char *)u->redacted, "bob:***@db/app"));
    txm__url_free(u);
}

Test(url, ambiguous_password_is_masked_up_to_the_last_at)
{
    /* A numeric password with an unencoded '/' parses (host "u", port 12); redaction must still
     * hide all of it. */
    txm_url *u = parse_ok("mysql://u:12/ss@h/db");
    cr_expect(eq(int, u->port, 12));
    cr_expect(eq(str, (char *)u->redacted, "mysql://u:***@h/db"));
    txm__url_free(u);
}

/* For every prefix of a URL and for the password with each delimiter inserted at each position,
 * neither `redacted` (on success) nor the error message (on failure) contains any 3-byte piece of
 * the password. */
static void check_never_leaks(const char *url, const char *pw)
{
    txm_url *u = NULL;
    size_t k, plen = strlen(pw);
    const char *text;
    int rc = txm__url_parse(&u, url);
    text = rc == 0 ? u->redacted : txm_error_last()->message;
    for (k = 0; k + 3 <= plen; k++) {
        char piece[4];
        memcpy(piece, pw + k, 3);
        piece[3] = '\0';
        cr_assert(strstr(text, piece) == NULL, "'%s' leaks '%s' in: %s", url, piece, text);
    }
    txm__url_free(u);
}

Test(url, never_leaks_the_password)
{
    static const char *const tails[] = {"@db:5432/app?password=%s&x=1", "@db/app", "@/app?socket=/s", ""};
    static const char delims[] = "/?@#:&=[]%";
    const char *pw = "Qx7zK9w"; /* no 3-byte piece of it occurs in any message */
    char url[256], mutated[64];
    size_t t, len, i, d;
    for (t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        char tail[128];
        snprintf(tail, sizeof tail, tails[t], pw);
        snprintf(url, sizeof url, "mysql://bob:%s%s", pw, tail);
        len = strlen(url);
        for (i = 0; i <= len; i++) {
            char prefix[256];
            memcpy(prefix, url, i);
            prefix[i] = '\0';
            if (i > 0)
                check_never_leaks(prefix, pw);
        }
        /* One delimiter inside the password, at every position (when a host follows: without
         * one, "bob:hun@ter2" really is user bob, password hun, host ter2). */
        for (d = 0; t < 3 && d < sizeof delims - 1; d++) {
            for (i = 0; i <= strlen(pw); i++) {
                snprintf(mutated, sizeof mutated, "%.*s%c%s", (int)i, pw, delims[d], pw + i);
                snprintf(url, sizeof url, "mysql://bob:%s%s", mutated, tail);
                check_never_leaks(url, pw);
                snprintf(url, sizeof url, "mysql:bob:%s%s", mutated, "@db/app");
                check_never_leaks(url, pw);
            }
        }
    }
}

Test(url, errors_name_the_problem)
{
    parse_fails(NULL, NULL, "NULL");
    parse_fails("", NULL, "empty");
    parse_fails("://h/db", NULL, "scheme");
    parse_fails(":memory:", NULL, "scheme");
    parse_fails("1db://h", NULL, "scheme");
    parse_fails("no-scheme-at-all", NULL, "scheme");
    parse_fails("mysql://u:hunter2@h:99999/db", "hunter2", "port");
    parse_fails("mysql://u:hunter2@h:0/db", "hunter2", "port");
    parse_fails("mysql://u:hunter2@h:54x/db", "hunter2", "port");
    parse_fails("mysql://u:hunter2@h:-1/db", "hunter2", "port");
    parse_fails("postgresql://::1:5432/db", NULL, "brackets");
    parse_fails("mysql://u:hunter2/db", "hunter2", "port"); /* '@host' missing: the password is in the port position */
    parse_fails("mysql://u:hun%zzter2@h/db", "hun", "password");
    parse_fails("mysql://u:hunter2@h/d%4", "hunter2", "path");
    parse_fails("mysql://u:hunter2@h/db?x=%", "hunter2", "query parameter value");
    parse_fails("mysql://u%2:hunter2@h/db", "hunter2", "user name");
    parse_fails("mysql://u:hunter2@h%G0/db", "hunter2", "host");
    parse_fails("mysql://u:hunter2@h/db%00", "hunter2", "%00");
    parse_fails("sqlite:x.db\n", NULL, "control character");
    parse_fails("mysql://u:hunt\ter2@h/db", "hunt", "control character");
    parse_fails("postgresql://u:hunter2@[::1/db", "hunter2", "bracket");
    parse_fails("postgresql://u:hunter2@[::1]x/db", "hunter2", "bracket");
    parse_fails("sqlite:x.db?=v", NULL, "empty name");
}

Test(url, bad_escape_message_gives_the_offset)
{
    txm_url *u = NULL;
    cr_assert(eq(int, txm__url_parse(&u, "mysql://u:ab%zz@h/db"), TXM_EINVALID));
    cr_expect(strstr(txm_error_last()->message, "offset 12") != NULL, "%s", txm_error_last()->message);
}

Test(url, out_of_memory)
{
    txm_url *u = (txm_url *)(void *)&u;
    txm__alloc_fail_after(1, false);
    cr_assert(eq(int, txm__url_parse(&u, "mysql://u:pw@h/db"), TXM_ENOMEM));
    cr_expect(eq(ptr, u, NULL));
    cr_expect(eq(int, txm_error_last()->code, TXM_ENOMEM));
    u = parse_ok("mysql://u:pw@h/db");
    txm__url_free(u);
}

Test(url, free_accepts_null)
{
    txm__url_free(NULL);
}

Test(url, scheme_helper)
{
    char buf[16];
    cr_expect(eq(int, txm__url_scheme("PostgreSQL://h/db", buf, sizeof buf), 0));
    cr_expect(eq(str, buf, "postgresql"));
    cr_expect(eq(int, txm__url_scheme("sqlite::memory:", buf, sizeof buf), 0));
    cr_expect(eq(str, buf, "sqlite"));
    cr_expect(eq(int, txm__url_scheme("svn+ssh.x-y:z", buf, sizeof buf), 0));
    cr_expect(eq(str, buf, "svn+ssh.x-y"));
    cr_expect(eq(int, txm__url_scheme("averyveryverylongscheme://h", buf, sizeof buf), TXM_EINVALID));
    cr_expect(eq(str, buf, ""), "buf is emptied on failure");
    cr_expect(eq(int, txm__url_scheme("noscheme", buf, sizeof buf), TXM_EINVALID));
    cr_expect(eq(int, txm__url_scheme(":x", buf, sizeof buf), TXM_EINVALID));
    cr_expect(eq(int, txm__url_scheme(NULL, buf, sizeof buf), TXM_EINVALID));
    cr_expect(eq(int, txm__url_scheme("a:b", NULL, 0), TXM_EINVALID));
}

/* txm's own parameter: read by the core and removed from the URL the driver gets. */
static void core_case(const char *in, const char *want_full, int want_retries)
{
    txm_url *u = NULL;
    int r = -2, rc = txm__url_parse_core(&u, in, &r);
    cr_assert(eq(int, rc, 0), "'%s': %s", in, txm_error_last()->message);
    cr_expect(eq(str, (char *)u->full, (char *)want_full), "'%s' stripped", in);
    cr_expect(eq(int, r, want_retries), "'%s'", in);
    cr_expect(eq(ptr, (void *)txm_url_param_get(u, "txm_autocommit_retries"), NULL));
    txm__url_free(u);
}

Test(url, core_parameter_is_read_and_removed)
{
    core_case("sqlite::memory:", "sqlite::memory:", -1);
    core_case("sqlite::memory:?txm_autocommit_retries=3", "sqlite::memory:", 3);
    core_case("sqlite:/tmp/a.db?busy_timeout=5&txm_autocommit_retries=0", "sqlite:/tmp/a.db?busy_timeout=5", 0);
    core_case("postgresql://u:p@h:5/db?txm_autocommit_retries=100&sslmode=disable&connect_timeout=3",
              "postgresql://u:p@h:5/db?sslmode=disable&connect_timeout=3", 100);
    core_case("mysql://u:p@h/db?charset=utf8mb4&txm_autocommit_retries=2&connect_timeout=3",
              "mysql://u:p@h/db?charset=utf8mb4&connect_timeout=3", 2);
    core_case("fault+sqlite::memory:?fault=none&txm_autocommit_retries=1", "fault+sqlite::memory:?fault=none", 1);
    /* a similar name is not ours */
    core_case("sqlite::memory:?txm_autocommit_retries_x=1", "sqlite::memory:?txm_autocommit_retries_x=1", -1);
}

static void core_fails(const char *in, const char *must_mention)
{
    txm_url *u = (txm_url *)(void *)&u;
    int r = -2, rc = txm__url_parse_core(&u, in, &r);
    cr_assert(eq(int, rc, TXM_EINVALID), "'%s' should be invalid", in);
    cr_assert(eq(ptr, u, NULL));
    cr_expect(strstr(txm_error_last()->message, must_mention) != NULL, "%s", txm_error_last()->message);
    cr_expect(strstr(txm_error_last()->message, "s3cret") == NULL, "leaks: %s", txm_error_last()->message);
}

Test(url, core_parameter_errors)
{
    core_fails("postgresql://u:s3cret@h/db?txm_autocommit_retries=", "txm_autocommit_retries");
    core_fails("postgresql://u:s3cret@h/db?txm_autocommit_retries=abc", "0 to 100");
    core_fails("postgresql://u:s3cret@h/db?txm_autocommit_retries=-1", "txm_autocommit_retries");
    core_fails("postgresql://u:s3cret@h/db?txm_autocommit_retries=101", "0 to 100");
    core_fails("postgresql://u:s3cret@h/db?txm_autocommit_retries=99999999999999999999", "0 to 100");
    core_fails("postgresql://u:s3cret@h/db?txm_autocommit_retries=1&txm_autocommit_retries=2", "2 times");
    core_fails("postgresql://u:s3cret@h/db?txm%5Fautocommit_retries=1", "plainly");
}
