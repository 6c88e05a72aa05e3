/*
 * Unit tests of the mysql driver's error normalisation (drivers/mysql_errparse.c): no server.
 *
 * The MariaDB messages below were captured verbatim from MariaDB 10.11.19 (Debian 12) with
 * lc_messages = en_US, de_DE and fr_FR. The MySQL ones follow the English templates of MySQL 8.0's
 * share/messages_to_clients.txt (ER_DUP_ENTRY with the 8.0.19 'table.key' form,
 * ER_CHECK_CONSTRAINT_VIOLATED "Check constraint '%-.192s' is violated.", ER_ROW_IS_REFERENCED_2,
 * ER_TRUNCATED_WRONG_VALUE_FOR_FIELD "... for column '%.192s' at row %ld").
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "../../drivers/mysql_errparse.h"

#define MDB TXM_MY_MARIADB
#define MY5 TXM_MY_MYSQL
#define MY8 (TXM_MY_MYSQL | TXM_MY_DUPKEY_QUALIFIED)

typedef struct name_case {
    unsigned native;
    unsigned flavour;
    const char *msg;
    int parsed;
    const char *constraint_name, *table_name, *schema_name, *column_name;
} name_case;

static const name_case english[] = {
    /* ---- MariaDB 10.11, captured ---- */
    {1062, MDB, "Duplicate entry '1' for key 'PRIMARY'", 1, "PRIMARY", "", "", ""},
    {1062, MDB, "Duplicate entry 'a' for key 'uq_parent_code'", 1, "uq_parent_code", "", "", ""},
    /* a key name with a quote is not escaped by the server: the name is what precedes the final ' */
    {1062, MDB, "Duplicate entry '2' for key 'k'ey'", 1, "k'ey", "", "", ""},
    /* user data that imitates the suffix cannot spoof the key name (the last occurrence wins) */
    {1062, MDB, "Duplicate entry 'x' for key 'evil' for key 'uq_real'", 1, "uq_real", "", "", ""},
    {1452, MDB,
     "Cannot add or update a child row: a foreign key constraint fails (`txm_test`.`child`, CONSTRAINT "
     "`fk_child_parent` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`))",
     1, "fk_child_parent", "child", "txm_test", "pid"},
    /* 1451: the table is the referencing (child) table, as PostgreSQL reports it */
    {1451, MDB,
     "Cannot delete or update a parent row: a foreign key constraint fails (`txm_test`.`child`, CONSTRAINT "
     "`fk_child_parent` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`))",
     1, "fk_child_parent", "child", "txm_test", "pid"},
    {1452, MDB,
     "Cannot add or update a child row: a foreign key constraint fails (`txm_test`.`ch``ild`, CONSTRAINT `f``k` "
     "FOREIGN KEY (`a`) REFERENCES `p``ar` (`id`))",
     1, "f`k", "ch`ild", "txm_test", "a"},
    /* two-column key: no single column to name */
    {1452, MDB,
     "Cannot add or update a child row: a foreign key constraint fails (`txm_test`.`c2`, CONSTRAINT `fk2` FOREIGN "
     "KEY (`a`, `b`) REFERENCES `c3` (`x`, `y`) ON DELETE CASCADE)",
     1, "fk2", "c2", "txm_test", ""},
    {4025, MDB, "CONSTRAINT `chk_child_id` failed for `txm_test`.`child`", 1, "chk_child_id", "child", "txm_test",
     ""},
    {4025, MDB, "CONSTRAINT `ch'k` failed for `txm_test`.`we``ird tbl`", 1, "ch'k", "we`ird tbl", "txm_test", ""},
    {4025, MDB, "CONSTRAINT `ck``x` failed for `txm_test`.`ch``ild`", 1, "ck`x", "ch`ild", "txm_test", ""},
    /* column-level CHECK: MariaDB names it table.column */
    {4025, MDB, "CONSTRAINT `c4.v` failed for `txm_test`.`c4`", 1, "c4.v", "c4", "txm_test", ""},
    {1048, MDB, "Column 'note' cannot be null", 1, "", "", "", "note"},
    {1364, MDB, "Field 'c' doesn't have a default value", 1, "", "", "", "c"},
    {1406, MDB, "Data too long for column 's' at row 1", 1, "", "", "", "s"},
    {1264, MDB, "Out of range value for column 't' at row 1", 1, "", "", "", "t"},
    {1366, MDB, "Incorrect integer value: 'abc' for column `txm_test`.`parent`.`id` at row 1", 1, "", "parent",
     "txm_test", "id"},
    /* the value is user data and may imitate the suffix: parsed from the end */
    {1366, MDB,
     "Incorrect integer value: 'x'y for column `a`.`b`.`c` at row 9' for column `txm_test`.`nn`.`c` at row 1", 1,
     "", "nn", "txm_test", "c"},
    /* MariaDB does NOT double backquotes in this message: ambiguous, so nothing */
    {1366, MDB, "Incorrect integer value: 'zz' for column `txm_test`.`odd`t`.`c`ol` at row 1", 0, "", "", "", ""},
    {1263, MDB, "Column set to default value; NULL supplied to NOT NULL column 'c' at row 2", 1, "", "", "", "c"},
    {1859, MDB, "Duplicate entry for key 'uq_x'", 1, "uq_x", "", "", ""},
    /* ---- MySQL 8.0 (templates from share/messages_to_clients.txt) ---- */
    {1062, MY8, "Duplicate entry '1' for key 't1.PRIMARY'", 1, "PRIMARY", "t1", "", ""},
    {1062, MY8, "Duplicate entry 'a@b' for key 'users.uq_users_email'", 1, "uq_users_email", "users", "", ""},
    /* more than one dot: table and key cannot be told apart */
    {1062, MY8, "Duplicate entry '1' for key 'a.b.c'", 0, "", "", "", ""},
    {1062, MY5, "Duplicate entry '1' for key 'PRIMARY'", 1, "PRIMARY", "", "", ""},
    {3819, MY8, "Check constraint 't1_chk_1' is violated.", 1, "t1_chk_1", "", "", ""},
    {1451, MY8,
     "Cannot delete or update a parent row: a foreign key constraint fails (`test`.`child`, CONSTRAINT "
     "`child_ibfk_1` FOREIGN KEY (`parent_id`) REFERENCES `parent` (`id`))",
     1, "child_ibfk_1", "child", "test", "parent_id"},
    {1366, MY8, "Incorrect integer value: 'abc' for column 'c1' at row 1", 1, "", "", "", "c1"},
    /* ---- flavour-specific numbers are not parsed on the other flavour ---- */
    {4025, MY8, "CONSTRAINT `chk_child_id` failed for `txm_test`.`child`", 0, "", "", "", ""},
    {3819, MDB, "Check constraint 't1_chk_1' is violated.", 0, "", "", "", ""},
    /* ---- malformed / truncated: nothing ---- */
    {1452, MDB, "Cannot add or update a child row: a foreign key constraint fails", 0, "", "", "", ""},
    {1452, MDB, "Cannot add or update a child row: a foreign key constraint fails (`txm_test`.`chi", 0, "", "", "",
     ""},
    /* truncated after the key columns began: names known, column not */
    {1452, MDB,
     "Cannot add or update a child row: a foreign key constraint fails (`txm_test`.`child`, CONSTRAINT `fk` FOREIGN "
     "KEY (`pi",
     1, "fk", "child", "txm_test", ""},
    {1062, MDB, "Duplicate entry '1' for key 'PRIMARY", 0, "", "", "", ""},
    {1062, MDB, "Duplicate entry '1' for key ''", 0, "", "", "", ""},
    {4025, MDB, "CONSTRAINT `` failed for `txm_test`.`child`", 0, "", "", "", ""},
    {4025, MDB, "CONSTRAINT `x` failed for `txm_test`.`child` and more", 0, "", "", "", ""},
    {1048, MDB, "", 0, "", "", "", ""},
    {1213, MDB, "Deadlock found when trying to get lock; try restarting transaction", 0, "", "", "", ""},
};

/* The same errors with lc_messages = de_DE / fr_FR (captured): the parser must not guess. */
static const name_case localized[] = {
    {1062, MDB, "Doppelter Eintrag '1' f\xc3\xbcr Schl\xc3\xbcssel 'PRIMARY'", 0, "", "", "", ""},
    {1062, MDB, "Doppelter Eintrag 'a' f\xc3\xbcr Schl\xc3\xbcssel 'uq_parent_code'", 0, "", "", "", ""},
    {1452, MDB,
     "Kann Kind-Zeile nicht hinzuf\xc3\xbcgen oder aktualisieren: eine Fremdschl\xc3\xbcsselbedingung schl\xc3\xa4gt "
     "fehl (`txm_test`.`child`, CONSTRAINT `fk_child_parent` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`))",
     0, "", "", "", ""},
    {4025, MDB, "CONSTRAINT `chk_child_id` fehlgeschlagen: `txm_test`.`child`", 0, "", "", "", ""},
    {1048, MDB, "Feld 'note' darf nicht NULL sein", 0, "", "", "", ""},
    {1048, MDB, "Le champ 'c' ne peut \xc3\xaatre vide (null)", 0, "", "", "", ""},
    {1364, MDB, "Feld 'c' hat keinen Vorgabewert", 0, "", "", "", ""},
    {1406, MDB, "Daten zu lang f\xc3\xbcr Feld 's' in Zeile 1", 0, "", "", "", ""},
    {1366, MDB, "Falscher integer-Wert: 'zz' f\xc3\xbcr Feld '`txm_test`.`odd`t`.`c`ol` in Zeile 1", 0, "", "", "", ""},
};

static void check_names(const name_case *k, size_t i, const char *set)
{
    txm_my_names n;
    int r = txm__mysql_parse_names(k->native, k->flavour, k->msg, strlen(k->msg), &n);
    cr_expect(r == k->parsed, "%s[%zu] %u \"%s\": parsed=%d, want %d", set, i, k->native, k->msg, r, k->parsed);
    cr_expect(strcmp(n.constraint_name, k->constraint_name) == 0, "%s[%zu] \"%s\": constraint \"%s\", want \"%s\"",
              set, i, k->msg, n.constraint_name, k->constraint_name);
    cr_expect(strcmp(n.table_name, k->table_name) == 0, "%s[%zu] \"%s\": table \"%s\", want \"%s\"", set, i, k->msg,
              n.table_name, k->table_name);
    cr_expect(strcmp(n.schema_name, k->schema_name) == 0, "%s[%zu] \"%s\": schema \"%s\", want \"%s\"", set, i,
              k->msg, n.schema_name, k->schema_name);
    cr_expect(strcmp(n.column_name, k->column_name) == 0, "%s[%zu] \"%s\": column \"%s\", want \"%s\"", set, i,
              k->msg, n.column_name, k->column_name);
}

Test(errparse, english_templates_give_names)
{
    for (size_t i = 0; i < sizeof english / sizeof english[0]; i++)
        check_names(&english[i], i, "english");
}

Test(errparse, localized_messages_leave_names_empty)
{
    for (size_t i = 0; i < sizeof localized / sizeof localized[0]; i++)
        check_names(&localized[i], i, "localized");
}

Test(errparse, reads_only_len_bytes_and_stops_at_nul)
{
    txm_my_names n;
    const char *m = "Column 'abc' cannot be nullXXXX";
    cr_assert(txm__mysql_parse_names(1048, MDB, m, strlen(m) - 4, &n) == 1);
    cr_assert_str_eq(n.column_name, "abc");
    cr_assert(txm__mysql_parse_names(1048, MDB, m, strlen(m), &n) == 0);
    cr_assert(txm__mysql_parse_names(1048, MDB, "Column 'x' cannot be null\0junk", 30, &n) == 1);
    cr_assert_str_eq(n.column_name, "x");
    cr_assert(txm__mysql_parse_names(1048, MDB, NULL, 0, &n) == 0);
}

Test(errparse, identifier_longer_than_a_field_is_left_empty)
{
    char msg[1024], key[400];
    txm_my_names n;
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    snprintf(msg, sizeof msg, "Duplicate entry '1' for key '%s'", key);
    cr_assert(txm__mysql_parse_names(1062, MDB, msg, strlen(msg), &n) == 0);
    cr_assert_str_eq(n.constraint_name, "");
    key[TXM_MY_NAME_MAX - 1] = '\0'; /* exactly the largest that fits */
    snprintf(msg, sizeof msg, "Duplicate entry '1' for key '%s'", key);
    cr_assert(txm__mysql_parse_names(1062, MDB, msg, strlen(msg), &n) == 1);
    cr_assert(strlen(n.constraint_name) == TXM_MY_NAME_MAX - 1);
}

/* ---- classification ------------------------------------------------------------------------ */

typedef struct class_case {
    unsigned native;
    unsigned flavour;
    const char *sqlstate;
    const char *msg;
    int code;
    txm_my_tx_effect effect;
} class_case;

static const class_case classes[] = {
    {1062, MDB, "23000", NULL, TXM_EUNIQUE, TXM_MY_TX_KEEP},
    {1062, MY8, "23000", NULL, TXM_EUNIQUE, TXM_MY_TX_KEEP},
    {1586, MY8, "23000", NULL, TXM_EUNIQUE, TXM_MY_TX_KEEP},
    {1451, MDB, "23000", NULL, TXM_EFOREIGN_KEY, TXM_MY_TX_KEEP},
    {1452, MDB, "23000", NULL, TXM_EFOREIGN_KEY, TXM_MY_TX_KEEP},
    {1216, MY5, "23000", NULL, TXM_EFOREIGN_KEY, TXM_MY_TX_KEEP},
    {1048, MDB, "23000", NULL, TXM_ENOT_NULL, TXM_MY_TX_KEEP},
    {4025, MDB, "23000", NULL, TXM_ECHECK, TXM_MY_TX_KEEP},
    {3819, MY8, "HY000", NULL, TXM_ECHECK, TXM_MY_TX_KEEP},
    /* the numbers collide above ~1900 */
    {4025, MY8, "HY000", NULL, TXM_ERROR, TXM_MY_TX_PROBE},
    {3819, MDB, "HY000", NULL, TXM_ERROR, TXM_MY_TX_PROBE},
    {4031, MY8, "HY000", NULL, TXM_ECONNECTION, TXM_MY_TX_LOST},      /* MySQL: idle disconnect */
    {4031, MDB, "HY000", NULL, TXM_ERROR, TXM_MY_TX_PROBE},           /* MariaDB: trigger error */
    {1969, MDB, "70100", NULL, TXM_ECANCELED, TXM_MY_TX_KEEP},        /* max_statement_time */
    {3024, MY8, "HY000", NULL, TXM_ECANCELED, TXM_MY_TX_KEEP},        /* max_execution_time */
    {3572, MY8, "HY000", NULL, TXM_ELOCK_TIMEOUT, TXM_MY_TX_KEEP},    /* NOWAIT */
    {1927, MDB, "70100", NULL, TXM_ECONNECTION, TXM_MY_TX_LOST},
    {1317, MDB, "70100", NULL, TXM_ECANCELED, TXM_MY_TX_KEEP},
    /* transaction effect decided by asking the server */
    {1213, MDB, "40001", NULL, TXM_EDEADLOCK, TXM_MY_TX_PROBE},
    {1213, MDB | TXM_MY_WSREP, "40001", NULL, TXM_ESERIALIZATION, TXM_MY_TX_PROBE},
    {1205, MDB, "HY000", NULL, TXM_ELOCK_TIMEOUT, TXM_MY_TX_PROBE},
    {3058, MY8, "HY000", NULL, TXM_EDEADLOCK, TXM_MY_TX_KEEP},
    {3101, MY8, "40000", NULL, TXM_ESERIALIZATION, TXM_MY_TX_LOST},
    {1792, MDB, "25006", NULL, TXM_EREAD_ONLY, TXM_MY_TX_KEEP},
    {1290, MDB, "HY000", "The MariaDB server is running with the --read-only option so it cannot execute this statement",
     TXM_EREAD_ONLY, TXM_MY_TX_KEEP},
    {1290, MDB, "HY000", "Der MariaDB-Server l\xc3\xa4uft mit der Option --read-only und kann diese Anweisung deswegen nicht ausf\xc3\xbchren",
     TXM_EREAD_ONLY, TXM_MY_TX_KEEP},
    {1290, MDB, "HY000", "The MariaDB server is running with the --skip-grant-tables option so it cannot execute this statement",
     TXM_ERROR, TXM_MY_TX_KEEP},
    {1064, MDB, "42000", NULL, TXM_ESYNTAX, TXM_MY_TX_KEEP},
    {1146, MDB, "42S02", NULL, TXM_ESYNTAX, TXM_MY_TX_KEEP},
    {1305, MDB, "42000", NULL, TXM_ESYNTAX, TXM_MY_TX_KEEP},
    {1366, MDB, "22007", NULL, TXM_EDATA, TXM_MY_TX_KEEP},
    {1264, MDB, "22003", NULL, TXM_EDATA, TXM_MY_TX_KEEP},
    {1265, MDB, "01000", NULL, TXM_EDATA, TXM_MY_TX_KEEP},
    {1045, MDB, "28000", NULL, TXM_EAUTH, TXM_MY_TX_KEEP},
    {1142, MDB, "42000", NULL, TXM_EAUTH, TXM_MY_TX_KEEP},
    {2006, MDB, "HY000", NULL, TXM_ECONNECTION, TXM_MY_TX_LOST},
    {2013, MY8, "HY000", NULL, TXM_ECONNECTION, TXM_MY_TX_LOST},
    {2055, MDB, "HY000", NULL, TXM_ECONNECTION, TXM_MY_TX_LOST},
    {2008, MDB, "HY000", NULL, TXM_ENOMEM, TXM_MY_TX_KEEP},
    /* not in the table: SQLSTATE class decides, never the message */
    {1054, MDB, "42S22", NULL, TXM_ESYNTAX, TXM_MY_TX_KEEP},
    {9999, MDB, "42000", NULL, TXM_ESYNTAX, TXM_MY_TX_KEEP},
    {9999, MDB, "22012", NULL, TXM_EDATA, TXM_MY_TX_KEEP},
    {9999, MDB, "08S01", NULL, TXM_ECONNECTION, TXM_MY_TX_LOST},
    {9999, MDB, "23000", "Duplicate entry '1' for key 'PRIMARY'", TXM_ERROR, TXM_MY_TX_KEEP},
    {9999, MDB, "HY000", NULL, TXM_ERROR, TXM_MY_TX_PROBE},
    {9999, MDB, NULL, NULL, TXM_ERROR, TXM_MY_TX_PROBE},
};

Test(classify, table_and_flavours)
{
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        const class_case *k = &classes[i];
        txm_my_tx_effect eff = (txm_my_tx_effect)-1;
        int code = txm__mysql_classify(k->native, k->sqlstate, k->msg, k->flavour, &eff);
        cr_expect(code == k->code, "[%zu] %u/%s flavour %#x: %s, want %s", i, k->native, k->sqlstate ? k->sqlstate : "-",
                  k->flavour, txm_err_name(code), txm_err_name(k->code));
        cr_expect(eff == k->effect, "[%zu] %u flavour %#x: effect %d, want %d", i, k->native, k->flavour, (int)eff,
                  (int)k->effect);
    }
}

Test(classify, every_number_maps_to_a_known_code)
{
    static const char *states[] = {NULL, "", "4", "42000", "HY000", "08S01", "22003", "28000", "40001", "\xff\xff"};
    static const unsigned flavours[] = {0, MDB, MY5, MY8, MDB | TXM_MY_WSREP};
    for (unsigned n = 0; n < 70000; n += (n < 5000 ? 1 : 7)) {
        for (size_t f = 0; f < sizeof flavours / sizeof flavours[0]; f++) {
            for (size_t s = 0; s < sizeof states / sizeof states[0]; s++) {
                txm_my_tx_effect eff;
                int code = txm__mysql_classify(n, states[s], "x", flavours[f], &eff);
                if (code > 0 || code < TXM_ERRNO_LAST_ || code == TXM_OK || strcmp(txm_err_name(code), "TXM_E?") == 0)
                    cr_assert_fail("%u flavour %#x: code %d out of the table", n, flavours[f], code);
                if (eff != TXM_MY_TX_KEEP && eff != TXM_MY_TX_LOST && eff != TXM_MY_TX_PROBE)
                    cr_assert_fail("%u: effect %d", n, (int)eff);
            }
        }
    }
}

Test(classify, connection_lost_numbers)
{
    cr_assert(txm__mysql_is_connection_lost(2013, MDB));
    cr_assert(txm__mysql_is_connection_lost(2006, MY8));
    cr_assert(txm__mysql_is_connection_lost(1927, MDB));
    cr_assert(!txm__mysql_is_connection_lost(1927, MY8));
    cr_assert(txm__mysql_is_connection_lost(4031, MY8));
    cr_assert(!txm__mysql_is_connection_lost(4031, MDB));
    cr_assert(!txm__mysql_is_connection_lost(1062, MDB));
}
