/*
 * MySQL / MariaDB error normalisation for the mysql driver: errno classification (one table,
 * flavour-aware) and the constraint-name parser. No I/O, no allocation, no global state, so it can
 * be unit-tested against captured server messages and fuzzed in isolation.
 */
#ifndef TXM_MYSQL_ERRPARSE_H
#define TXM_MYSQL_ERRPARSE_H

#include "internal.h"

#include <stddef.h>

/* Server flavour bits. Error numbers above ~1900 mean different things on MySQL and MariaDB
 * (4031: MySQL idle disconnect, MariaDB trigger error; 4025: MariaDB CHECK; 3819: MySQL CHECK). */
#define TXM_MY_MARIADB 0x1u
#define TXM_MY_MYSQL 0x2u
#define TXM_MY_ANY (TXM_MY_MARIADB | TXM_MY_MYSQL)
/* Extra bits describing the server, passed with the flavour. */
#define TXM_MY_DUPKEY_QUALIFIED 0x10u /* MySQL >= 8.0.19: 1062 says `for key 'table.key'` */
#define TXM_MY_WSREP 0x20u            /* Galera (wsrep_on): 1213 is a certification conflict */

/* What an error did to the open transaction. */
typedef enum txm_my_tx_effect {
    TXM_MY_TX_KEEP = 0,  /* only the statement was rolled back; the transaction is still open */
    TXM_MY_TX_LOST = 1,  /* the whole transaction is gone (or the connection) */
    TXM_MY_TX_PROBE = 2  /* it depends (e.g. 1213 from GET_LOCK keeps it, from InnoDB does not):
                            ask the server */
} txm_my_tx_effect;

/* Classifies a server or client error number into a TXM_E* category.
 * `sqlstate` (may be NULL or "") is used only for numbers the table does not list, by class
 * (42 syntax, 22 data, 28 auth, 08 connection). `msg` (may be NULL) is consulted only for 1290,
 * where the *option name* it quotes ("--read-only", never translated) tells a read-only server
 * from other refusals. *effect (may be NULL) receives the transaction effect. */
TXM_INTERNAL int txm__mysql_classify(unsigned native, const char *sqlstate, const char *msg, unsigned flavour,
                                     txm_my_tx_effect *effect);

/* Whether the error means the connection is gone (client 2006/2013/2055..., server 1927, 1053,
 * MySQL 4031). */
TXM_INTERNAL int txm__mysql_is_connection_lost(unsigned native, unsigned flavour);

#define TXM_MY_NAME_MAX 260 /* 64 characters of up to 4 bytes, plus NUL */

typedef struct txm_my_names {
    char constraint_name[TXM_MY_NAME_MAX];
    char table_name[TXM_MY_NAME_MAX];
    char schema_name[TXM_MY_NAME_MAX];
    char column_name[TXM_MY_NAME_MAX];
} txm_my_names;

/* Extracts constraint / table / schema / column names from the ENGLISH text of error `native`
 * (msg need not be NUL-terminated; len bytes are read). Every field is "" unless the message
 * matches the server's English template exactly: localized messages (lc_messages), truncated or
 * otherwise unexpected text leave the fields empty - the parser never guesses. Identifiers that
 * do not fit a field leave that field empty. Returns 1 if any field was filled, else 0.
 * Templates: 1062/1586 `Duplicate entry '%s' for key '%s'` (MySQL >= 8.0.19 'table.key'),
 * 1569, 1859; 1451/1452 `... foreign key constraint fails (`db`.`tbl`, CONSTRAINT `fk` FOREIGN
 * KEY (`col`) ...` (the table is the referencing/child table in both directions); MariaDB 4025
 * `CONSTRAINT `c` failed for `db`.`tbl``; MySQL 3819 `Check constraint 'c' is violated.`;
 * 1048 `Column 'c' cannot be null`; 1364, 1263, 1406, 1264 and 1366 name a column. */
TXM_INTERNAL int txm__mysql_parse_names(unsigned native, unsigned flavour, const char *msg, size_t len,
                                        txm_my_names *out);

#endif /* TXM_MYSQL_ERRPARSE_H */
