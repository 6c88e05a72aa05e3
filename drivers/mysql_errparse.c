/*
 * MySQL / MariaDB error normalisation: one classification table and a strict parser for the names
 * that the server only reports inside its (English) message text. See mysql_errparse.h.
 */
#include "mysql_errparse.h"

#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * Classification. One row per error number: flavours it applies to, txm category, effect on the
 * open transaction. Numbers below ~1900 are shared by MySQL and MariaDB; above that they collide,
 * so those rows name their flavour. Client-library errors (2xxx) are the same everywhere.
 * ---------------------------------------------------------------------------------------------- */
#define ANY TXM_MY_ANY
#define MDB TXM_MY_MARIADB
#define MYS TXM_MY_MYSQL
#define KEEP TXM_MY_TX_KEEP
#define LOST TXM_MY_TX_LOST
#define PROBE TXM_MY_TX_PROBE

#define TXM_MYSQL_ERROR_TABLE(X)                                                                   \
    /* unique */                                                                                   \
    X(1022, ANY, TXM_EUNIQUE, KEEP)        /* ER_DUP_KEY */                                        \
    X(1062, ANY, TXM_EUNIQUE, KEEP)        /* ER_DUP_ENTRY */                                      \
    X(1169, ANY, TXM_EUNIQUE, KEEP)        /* ER_DUP_UNIQUE */                                     \
    X(1557, ANY, TXM_EUNIQUE, KEEP)        /* ER_FOREIGN_DUPLICATE_KEY */                          \
    X(1569, ANY, TXM_EUNIQUE, KEEP)        /* ER_DUP_ENTRY_AUTOINCREMENT_CASE */                   \
    X(1586, ANY, TXM_EUNIQUE, KEEP)        /* ER_DUP_ENTRY_WITH_KEY_NAME */                        \
    X(1859, ANY, TXM_EUNIQUE, KEEP)        /* ER_DUP_UNKNOWN_IN_INDEX */                           \
    /* foreign key */                                                                              \
    X(1216, ANY, TXM_EFOREIGN_KEY, KEEP)   /* ER_NO_REFERENCED_ROW (legacy) */                     \
    X(1217, ANY, TXM_EFOREIGN_KEY, KEEP)   /* ER_ROW_IS_REFERENCED (legacy) */                     \
    X(1451, ANY, TXM_EFOREIGN_KEY, KEEP)   /* ER_ROW_IS_REFERENCED_2: parent still referenced */   \
    X(1452, ANY, TXM_EFOREIGN_KEY, KEEP)   /* ER_NO_REFERENCED_ROW_2: child without parent */      \
    /* not null */                                                                                 \
    X(1048, ANY, TXM_ENOT_NULL, KEEP)      /* ER_BAD_NULL_ERROR */                                 \
    X(1263, ANY, TXM_ENOT_NULL, KEEP)      /* ER_WARN_NULL_TO_NOTNULL (strict multi-row) */        \
    X(1364, ANY, TXM_ENOT_NULL, KEEP)      /* ER_NO_DEFAULT_FOR_FIELD (strict) */                  \
    /* check (SQLSTATE HY000 on MySQL!) */                                                         \
    X(3819, MYS, TXM_ECHECK, KEEP)         /* ER_CHECK_CONSTRAINT_VIOLATED */                      \
    X(4025, MDB, TXM_ECHECK, KEEP)         /* ER_CONSTRAINT_FAILED */                              \
    /* deadlock: InnoDB rolls the transaction back, GET_LOCK/MDL deadlocks do not -> probe */      \
    X(1213, ANY, TXM_EDEADLOCK, PROBE)     /* ER_LOCK_DEADLOCK */                                  \
    X(3058, MYS, TXM_EDEADLOCK, KEEP)      /* ER_USER_LOCK_DEADLOCK (GET_LOCK) */                  \
    X(3101, MYS, TXM_ESERIALIZATION, LOST) /* ER_TRANSACTION_ROLLBACK_DURING_COMMIT (GR) */        \
    /* lock timeout: statement only unless innodb_rollback_on_timeout (driver decides) */          \
    X(1205, ANY, TXM_ELOCK_TIMEOUT, PROBE) /* ER_LOCK_WAIT_TIMEOUT (also MariaDB NOWAIT) */        \
    X(3572, MYS, TXM_ELOCK_TIMEOUT, KEEP)  /* ER_LOCK_NOWAIT */                                    \
    /* canceled */                                                                                 \
    X(1317, ANY, TXM_ECANCELED, KEEP)      /* ER_QUERY_INTERRUPTED (KILL QUERY) */                 \
    X(1969, MDB, TXM_ECANCELED, KEEP)      /* ER_STATEMENT_TIMEOUT (max_statement_time) */         \
    X(3024, MYS, TXM_ECANCELED, KEEP)      /* ER_QUERY_TIMEOUT (max_execution_time) */             \
    /* read only (1290 is decided by the option it names, see classify) */                         \
    X(1036, ANY, TXM_EREAD_ONLY, KEEP)     /* ER_OPEN_AS_READONLY */                               \
    X(1207, ANY, TXM_EREAD_ONLY, KEEP)     /* ER_READ_ONLY_TRANSACTION */                          \
    X(1792, ANY, TXM_EREAD_ONLY, KEEP)     /* ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION */          \
    X(1836, ANY, TXM_EREAD_ONLY, KEEP)     /* ER_READ_ONLY_MODE */                                 \
    X(1874, ANY, TXM_EREAD_ONLY, KEEP)     /* ER_INNODB_READ_ONLY */                               \
    /* connection (server side) */                                                                 \
    X(1040, ANY, TXM_ECONNECTION, LOST)    /* ER_CON_COUNT_ERROR */                                \
    X(1043, ANY, TXM_ECONNECTION, LOST)    /* ER_HANDSHAKE_ERROR */                                \
    X(1047, ANY, TXM_ECONNECTION, LOST)    /* Galera: WSREP has not yet prepared node */           \
    X(1053, ANY, TXM_ECONNECTION, LOST)    /* ER_SERVER_SHUTDOWN */                                \
    X(1129, ANY, TXM_ECONNECTION, LOST)    /* ER_HOST_IS_BLOCKED */                                \
    X(1152, ANY, TXM_ECONNECTION, LOST)    /* ER_ABORTING_CONNECTION */                            \
    X(1184, ANY, TXM_ECONNECTION, LOST)    /* ER_NEW_ABORTING_CONNECTION */                        \
    X(1927, MDB, TXM_ECONNECTION, LOST)    /* ER_CONNECTION_KILLED */                              \
    X(3032, MYS, TXM_ECONNECTION, LOST)    /* ER_SERVER_OFFLINE_MODE */                            \
    X(4031, MYS, TXM_ECONNECTION, LOST)    /* ER_CLIENT_INTERACTION_TIMEOUT (idle disconnect) */   \
    /* connection (client library) */                                                              \
    X(2001, ANY, TXM_ECONNECTION, LOST)    /* CR_SOCKET_CREATE_ERROR */                            \
    X(2002, ANY, TXM_ECONNECTION, LOST)    /* CR_CONNECTION_ERROR */                               \
    X(2003, ANY, TXM_ECONNECTION, LOST)    /* CR_CONN_HOST_ERROR */                                \
    X(2004, ANY, TXM_ECONNECTION, LOST)    /* CR_IPSOCK_ERROR */                                   \
    X(2005, ANY, TXM_ECONNECTION, LOST)    /* CR_UNKNOWN_HOST */                                   \
    X(2006, ANY, TXM_ECONNECTION, LOST)    /* CR_SERVER_GONE_ERROR */                              \
    X(2009, ANY, TXM_ECONNECTION, LOST)    /* CR_WRONG_HOST_INFO */                                \
    X(2012, ANY, TXM_ECONNECTION, LOST)    /* CR_SERVER_HANDSHAKE_ERR */                           \
    X(2013, ANY, TXM_ECONNECTION, LOST)    /* CR_SERVER_LOST */                                    \
    X(2026, ANY, TXM_ECONNECTION, LOST)    /* CR_SSL_CONNECTION_ERROR */                           \
    X(2047, ANY, TXM_ECONNECTION, LOST)    /* CR_CONN_UNKNOWN_PROTOCOL */                          \
    X(2048, ANY, TXM_ECONNECTION, LOST)    /* CR_INVALID_CONN_HANDLE */                            \
    X(2055, ANY, TXM_ECONNECTION, LOST)    /* CR_SERVER_LOST_EXTENDED */                           \
    X(2008, ANY, TXM_ENOMEM, KEEP)         /* CR_OUT_OF_MEMORY */                                  \
    X(2059, ANY, TXM_EAUTH, LOST)          /* CR_AUTH_PLUGIN_CANNOT_LOAD */                        \
    X(2061, ANY, TXM_EAUTH, LOST)          /* CR_AUTH_PLUGIN_ERR */                                \
    /* authentication / authorization */                                                           \
    X(1044, ANY, TXM_EAUTH, KEEP)          /* ER_DBACCESS_DENIED_ERROR */                          \
    X(1045, ANY, TXM_EAUTH, KEEP)          /* ER_ACCESS_DENIED_ERROR */                            \
    X(1095, ANY, TXM_EAUTH, KEEP)          /* ER_KILL_DENIED_ERROR */                              \
    X(1130, ANY, TXM_EAUTH, KEEP)          /* ER_HOST_NOT_PRIVILEGED */                            \
    X(1142, ANY, TXM_EAUTH, KEEP)          /* ER_TABLEACCESS_DENIED_ERROR */                       \
    X(1143, ANY, TXM_EAUTH, KEEP)          /* ER_COLUMNACCESS_DENIED_ERROR */                      \
    X(1211, ANY, TXM_EAUTH, KEEP)          /* ER_NO_PERMISSION_TO_CREATE_USER */                   \
    X(1227, ANY, TXM_EAUTH, KEEP)          /* ER_SPECIFIC_ACCESS_DENIED_ERROR */                   \
    X(1251, ANY, TXM_EAUTH, KEEP)          /* ER_NOT_SUPPORTED_AUTH_MODE */                        \
    X(1370, ANY, TXM_EAUTH, KEEP)          /* ER_PROCACCESS_DENIED_ERROR */                        \
    X(1698, ANY, TXM_EAUTH, KEEP)          /* ER_ACCESS_DENIED_NO_PASSWORD_ERROR */                \
    X(1820, ANY, TXM_EAUTH, KEEP)          /* ER_MUST_CHANGE_PASSWORD */                           \
    X(1862, ANY, TXM_EAUTH, KEEP)          /* ER_MUST_CHANGE_PASSWORD_LOGIN */                     \
    X(1979, MDB, TXM_EAUTH, KEEP)          /* ER_KILL_QUERY_DENIED_ERROR */                        \
    X(3118, MYS, TXM_EAUTH, KEEP)          /* ER_ACCOUNT_HAS_BEEN_LOCKED */                        \
    X(4151, MDB, TXM_EAUTH, KEEP)          /* ER_ACCOUNT_HAS_BEEN_LOCKED */                        \
    /* syntax / undefined object (most of these are also caught by SQLSTATE class 42) */           \
    X(1049, ANY, TXM_ESYNTAX, KEEP)        /* ER_BAD_DB_ERROR */                                   \
    X(1052, ANY, TXM_ESYNTAX, KEEP)        /* ER_NON_UNIQ_ERROR (SQLSTATE 23000!) */               \
    X(1054, ANY, TXM_ESYNTAX, KEEP)        /* ER_BAD_FIELD_ERROR */                                \
    X(1064, ANY, TXM_ESYNTAX, KEEP)        /* ER_PARSE_ERROR */                                    \
    X(1146, ANY, TXM_ESYNTAX, KEEP)        /* ER_NO_SUCH_TABLE */                                  \
    X(1149, ANY, TXM_ESYNTAX, KEEP)        /* ER_SYNTAX_ERROR */                                   \
    X(1305, ANY, TXM_ESYNTAX, KEEP)        /* ER_SP_DOES_NOT_EXIST (also "SAVEPOINT x does not exist") */ \
    /* data */                                                                                     \
    X(1264, ANY, TXM_EDATA, KEEP)          /* ER_WARN_DATA_OUT_OF_RANGE */                         \
    X(1265, ANY, TXM_EDATA, KEEP)          /* WARN_DATA_TRUNCATED (SQLSTATE 01000) */              \
    X(1292, ANY, TXM_EDATA, KEEP)          /* ER_TRUNCATED_WRONG_VALUE */                          \
    X(1300, ANY, TXM_EDATA, KEEP)          /* ER_INVALID_CHARACTER_STRING */                       \
    X(1365, ANY, TXM_EDATA, KEEP)          /* ER_DIVISION_BY_ZERO */                               \
    X(1366, ANY, TXM_EDATA, KEEP)          /* ER_TRUNCATED_WRONG_VALUE_FOR_FIELD */                \
    X(1367, ANY, TXM_EDATA, KEEP)          /* ER_ILLEGAL_VALUE_FOR_TYPE */                         \
    X(1406, ANY, TXM_EDATA, KEEP)          /* ER_DATA_TOO_LONG */                                  \
    X(1411, ANY, TXM_EDATA, KEEP)          /* ER_WRONG_VALUE_FOR_TYPE */                           \
    X(1525, ANY, TXM_EDATA, KEEP)          /* ER_WRONG_VALUE */                                    \
    X(1690, ANY, TXM_EDATA, KEEP)          /* ER_DATA_OUT_OF_RANGE */                              \
    /* errors after which the engine may have rolled the whole transaction back */                 \
    X(1180, ANY, TXM_ERROR, PROBE)         /* ER_ERROR_DURING_COMMIT */                            \
    X(1206, ANY, TXM_ERROR, PROBE)         /* ER_LOCK_TABLE_FULL (InnoDB rolls back) */            \
    X(1637, ANY, TXM_ERROR, PROBE)         /* ER_TOO_MANY_CONCURRENT_TRXS */

typedef struct my_err_row {
    unsigned short native;
    unsigned char flavours;
    signed char code;
    unsigned char effect;
} my_err_row;

static const my_err_row my_err_table[] = {
#define TXM_MY_ROW_(n, fl, code, eff) {(n), (fl), (code), (eff)},
    TXM_MYSQL_ERROR_TABLE(TXM_MY_ROW_)
#undef TXM_MY_ROW_
};

#undef ANY
#undef MDB
#undef MYS
#undef KEEP
#undef LOST
#undef PROBE

static const my_err_row *my_err_find(unsigned native, unsigned flavour)
{
    unsigned fl = flavour & TXM_MY_ANY;
    if (!fl)
        fl = TXM_MY_ANY; /* unknown flavour: only rows valid on both can match exactly */
    for (size_t i = 0; i < sizeof my_err_table / sizeof my_err_table[0]; i++) {
        const my_err_row *r = &my_err_table[i];
        if (r->native != native)
            continue;
        if ((r->flavours & fl) == fl)
            return r;
    }
    return NULL;
}

/* Finds `needle` (n bytes) in hay[0..len); NULL if absent. memmem is not C11. */
static const char *find_bytes(const char *hay, size_t len, const char *needle, size_t n)
{
    if (n == 0 || len < n)
        return n == 0 ? hay : NULL;
    for (size_t i = 0; i + n <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

int txm__mysql_classify(unsigned native, const char *sqlstate, const char *msg, unsigned flavour,
                        txm_my_tx_effect *effect)
{
    txm_my_tx_effect eff = TXM_MY_TX_PROBE;
    int code = TXM_ERROR;
    const my_err_row *r = my_err_find(native, flavour);

    if (r) {
        code = r->code;
        eff = (txm_my_tx_effect)r->effect;
        /* Galera reports a certification conflict (another node committed first) as 1213. */
        if (native == 1213 && (flavour & TXM_MY_WSREP))
            code = TXM_ESERIALIZATION;
    } else if (native == 1290) {
        /* ER_OPTION_PREVENTS_STATEMENT quotes the option (never translated): --read-only,
         * --super-read-only, --transaction-read-only. Other options are not read-only refusals. */
        size_t len = msg ? strlen(msg) : 0;
        code = (msg && (find_bytes(msg, len, "read-only", 9) || find_bytes(msg, len, "read_only", 9)))
                   ? TXM_EREAD_ONLY
                   : TXM_ERROR;
        eff = TXM_MY_TX_KEEP;
    } else if (sqlstate && sqlstate[0] && sqlstate[1]) {
        char c0 = sqlstate[0], c1 = sqlstate[1];
        if (c0 == '4' && c1 == '2') {
            code = TXM_ESYNTAX;
            eff = TXM_MY_TX_KEEP;
        } else if (c0 == '2' && c1 == '2') {
            code = TXM_EDATA;
            eff = TXM_MY_TX_KEEP;
        } else if (c0 == '2' && c1 == '8') {
            code = TXM_EAUTH;
            eff = TXM_MY_TX_KEEP;
        } else if (c0 == '0' && c1 == '8') {
            code = TXM_ECONNECTION;
            eff = TXM_MY_TX_LOST;
        } else if ((c0 == '2' && (c1 == '1' || c1 == '3' || c1 == '5')) || (c0 == '0' && c1 == 'A') ||
                   (c0 == '4' && c1 == '4') || (c0 == '3' && (c1 == 'D' || c1 == 'F'))) {
            /* cardinality, unknown integrity, invalid tx state, not supported, check option,
             * invalid catalog/schema: statement-level, and never guessed to be a constraint */
            eff = TXM_MY_TX_KEEP;
        }
    }
    if (effect)
        *effect = eff;
    return code;
}

int txm__mysql_is_connection_lost(unsigned native, unsigned flavour)
{
    const my_err_row *r = my_err_find(native, flavour);
    return r && r->code == TXM_ECONNECTION;
}

/* ------------------------------------------------------------------------------------------------
 * Name parser. A cursor over msg[0..len); every step either matches exactly or fails.
 * ---------------------------------------------------------------------------------------------- */
typedef struct cur {
    const char *p;
    const char *end;
} cur;

static int cur_lit(cur *c, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* Copies p[0..n) into dst (size TXM_MY_NAME_MAX). Empty or too long: dst = "", returns 0. */
static int put_name(char *dst, const char *p, size_t n)
{
    if (n == 0 || n >= TXM_MY_NAME_MAX || memchr(p, '\0', n)) {
        dst[0] = '\0';
        return 0;
    }
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 1;
}

/* A backquoted identifier `...` with `` standing for one backquote, unescaped into dst. */
static int cur_bq(cur *c, char *dst)
{
    size_t n = 0;
    const char *p = c->p;
    if (p >= c->end || *p != '`')
        return 0;
    p++;
    for (;;) {
        if (p >= c->end)
            return 0;
        if (*p == '`') {
            if (p + 1 < c->end && p[1] == '`') {
                if (n + 1 >= TXM_MY_NAME_MAX)
                    return 0;
                dst[n++] = '`';
                p += 2;
                continue;
            }
            p++;
            break;
        }
        if (*p == '\0' || n + 1 >= TXM_MY_NAME_MAX)
            return 0;
        dst[n++] = *p++;
    }
    if (n == 0)
        return 0;
    dst[n] = '\0';
    c->p = p;
    return 1;
}

/* Parses a backquoted identifier that ends exactly at `end` (backwards), unescaping `` pairs.
 * On success *start is its opening backquote. Inside an identifier a doubled backquote is always
 * an escape, so the first single backquote seen walking left is the opening one. */
static int bq_backward(const char *begin, const char *end, const char **start, char *dst)
{
    char tmp[TXM_MY_NAME_MAX];
    size_t n = 0;
    const char *p;
    if (end - begin < 2 || end[-1] != '`')
        return 0;
    p = end - 2; /* last content byte */
    for (;;) {
        if (p < begin)
            return 0;
        if (*p == '`') {
            if (p > begin && p[-1] == '`') {
                if (n + 1 >= TXM_MY_NAME_MAX)
                    return 0;
                tmp[n++] = '`';
                p -= 2;
                continue;
            }
            break; /* opening quote */
        }
        if (*p == '\0' || n + 1 >= TXM_MY_NAME_MAX)
            return 0;
        tmp[n++] = *p--;
    }
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    dst[n] = '\0';
    *start = p;
    return 1;
}

/* If msg[0..*len) ends with " at row <digits>", drops it and returns 1. */
static int strip_at_row(const char *msg, size_t *len)
{
    static const char tail[] = " at row ";
    size_t n = *len, d = 0;
    while (d < n && msg[n - 1 - d] >= '0' && msg[n - 1 - d] <= '9')
        d++;
    if (d == 0 || n - d < sizeof tail - 1)
        return 0;
    if (memcmp(msg + n - d - (sizeof tail - 1), tail, sizeof tail - 1) != 0)
        return 0;
    *len = n - d - (sizeof tail - 1);
    return 1;
}

/* msg == prefix NAME suffix exactly; NAME may contain anything (the server does not escape it). */
static int parse_wrapped(const char *msg, size_t len, const char *prefix, const char *suffix, char *dst)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (len < pl + sl + 1 || memcmp(msg, prefix, pl) != 0 || memcmp(msg + len - sl, suffix, sl) != 0)
        return 0;
    return put_name(dst, msg + pl, len - pl - sl);
}

/* Finds the LAST occurrence of needle in msg[from..to): the text before it may be user data (the
 * duplicate value), the text after it is server-generated, so the last occurrence is the real one
 * unless the identifier itself contains the needle (then we would cut it: never a spoofed name
 * from user data). */
static const char *find_last(const char *from, const char *to, const char *needle)
{
    size_t n = strlen(needle);
    const char *hit = NULL;
    if (to - from < (ptrdiff_t)n)
        return NULL;
    for (const char *p = from; p + n <= to; p++)
        if (*p == needle[0] && memcmp(p, needle, n) == 0)
            hit = p;
    return hit;
}

/* `prefix` VALUE "' for key '" KEY "'"; with key_direct, `prefix` KEY "'" (1859 has no value). */
static int parse_dup_key(const char *msg, size_t len, const char *prefix, int key_direct, unsigned flavour,
                         txm_my_names *out)
{
    static const char mid[] = "' for key '";
    const char *end = msg + len, *k;
    size_t pl = strlen(prefix);
    char key[TXM_MY_NAME_MAX];

    if (len < pl + 1 || memcmp(msg, prefix, pl) != 0 || end[-1] != '\'')
        return 0;
    if (key_direct) {
        k = msg + pl;
    } else {
        const char *m = find_last(msg + pl, end - 1, mid);
        if (!m)
            return 0;
        k = m + sizeof mid - 1;
    }
    if (!put_name(key, k, (size_t)(end - 1 - k)))
        return 0;
    if (flavour & TXM_MY_DUPKEY_QUALIFIED) {
        /* 'table.key': split only when unambiguous (exactly one dot). */
        const char *dot = strchr(key, '.');
        if (!dot || strchr(dot + 1, '.'))
            return 0;
        if (!put_name(out->table_name, key, (size_t)(dot - key)))
            return 0;
        if (!put_name(out->constraint_name, dot + 1, strlen(dot + 1))) {
            out->table_name[0] = '\0';
            return 0;
        }
        return 1;
    }
    memcpy(out->constraint_name, key, strlen(key) + 1);
    return 1;
}

static int parse_fk(const char *msg, size_t len, const char *prefix, txm_my_names *out)
{
    txm_my_names t;
    char col[TXM_MY_NAME_MAX];
    int ncols = 0;
    cur c = {msg, msg + len};

    memset(&t, 0, sizeof t);
    if (!cur_lit(&c, prefix) || !cur_lit(&c, " (") || !cur_bq(&c, t.schema_name) || !cur_lit(&c, ".") ||
        !cur_bq(&c, t.table_name) || !cur_lit(&c, ", CONSTRAINT ") || !cur_bq(&c, t.constraint_name) ||
        !cur_lit(&c, " FOREIGN KEY ("))
        return 0;
    memcpy(out->schema_name, t.schema_name, sizeof t.schema_name);
    memcpy(out->table_name, t.table_name, sizeof t.table_name);
    memcpy(out->constraint_name, t.constraint_name, sizeof t.constraint_name);
    /* The column only when the key has exactly one and the list is complete (not truncated). */
    for (;;) {
        if (!cur_bq(&c, col))
            return 1;
        ncols++;
        if (cur_lit(&c, ", "))
            continue;
        if (!cur_lit(&c, ") REFERENCES "))
            return 1;
        break;
    }
    if (ncols == 1)
        memcpy(out->column_name, col, sizeof col);
    return 1;
}

static int parse_mariadb_check(const char *msg, size_t len, txm_my_names *out)
{
    txm_my_names t;
    cur c = {msg, msg + len};
    memset(&t, 0, sizeof t);
    if (!cur_lit(&c, "CONSTRAINT ") || !cur_bq(&c, t.constraint_name) || !cur_lit(&c, " failed for ") ||
        !cur_bq(&c, t.schema_name) || !cur_lit(&c, ".") || !cur_bq(&c, t.table_name) || c.p != c.end)
        return 0;
    *out = t;
    return 1;
}

/* 1366: "Incorrect <type> value: '<value>' for column <col> at row N" where <col> is
 * `db`.`tbl`.`col` (MariaDB 10.x) or 'col' (MySQL). Parsed from the end: the value is user data. */
static int parse_incorrect_value(const char *msg, size_t len, txm_my_names *out)
{
    static const char mid[] = " for column ";
    const char *end, *s1, *s2, *s3;
    txm_my_names t;

    if (len < 10 || memcmp(msg, "Incorrect ", 10) != 0 || !strip_at_row(msg, &len))
        return 0;
    end = msg + len;
    memset(&t, 0, sizeof t);
    if (end[-1] == '`') {
        if (!bq_backward(msg, end, &s3, t.column_name) || s3 <= msg || s3[-1] != '.' ||
            !bq_backward(msg, s3 - 1, &s2, t.table_name) || s2 <= msg || s2[-1] != '.' ||
            !bq_backward(msg, s2 - 1, &s1, t.schema_name))
            return 0;
        if ((size_t)(s1 - msg) < sizeof mid - 1 || memcmp(s1 - (sizeof mid - 1), mid, sizeof mid - 1) != 0)
            return 0;
        *out = t;
        return 1;
    }
    if (end[-1] == '\'') {
        const char *m = find_last(msg, end - 1, " for column '");
        if (!m)
            return 0;
        m += sizeof " for column '" - 1;
        return put_name(out->column_name, m, (size_t)(end - 1 - m));
    }
    return 0;
}

int txm__mysql_parse_names(unsigned native, unsigned flavour, const char *msg, size_t len, txm_my_names *out)
{
    size_t rl;
    out->constraint_name[0] = out->table_name[0] = out->schema_name[0] = out->column_name[0] = '\0';
    if (!msg)
        return 0;
    if (memchr(msg, '\0', len))
        len = strlen(msg);

    switch (native) {
    case 1062:
    case 1586:
        return parse_dup_key(msg, len, "Duplicate entry '", 0, flavour, out);
    case 1569:
        return parse_dup_key(msg, len,
                             "ALTER TABLE causes auto_increment resequencing, resulting in duplicate entry '", 0,
                             flavour, out);
    case 1859:
        return parse_dup_key(msg, len, "Duplicate entry for key '", 1, flavour & ~TXM_MY_DUPKEY_QUALIFIED, out);
    case 1451:
        return parse_fk(msg, len, "Cannot delete or update a parent row: a foreign key constraint fails", out);
    case 1452:
        return parse_fk(msg, len, "Cannot add or update a child row: a foreign key constraint fails", out);
    case 4025:
        return (flavour & TXM_MY_MARIADB) ? parse_mariadb_check(msg, len, out) : 0;
    case 3819:
        return (flavour & TXM_MY_MYSQL)
                   ? parse_wrapped(msg, len, "Check constraint '", "' is violated.", out->constraint_name)
                   : 0;
    case 1048:
        return parse_wrapped(msg, len, "Column '", "' cannot be null", out->column_name);
    case 1364:
        return parse_wrapped(msg, len, "Field '", "' doesn't have a default value", out->column_name);
    case 1263:
        rl = len;
        return strip_at_row(msg, &rl) &&
               parse_wrapped(msg, rl, "Column set to default value; NULL supplied to NOT NULL column '", "'",
                             out->column_name);
    case 1406:
        rl = len;
        return strip_at_row(msg, &rl) && parse_wrapped(msg, rl, "Data too long for column '", "'", out->column_name);
    case 1264:
        rl = len;
        return strip_at_row(msg, &rl) &&
               parse_wrapped(msg, rl, "Out of range value for column '", "'", out->column_name);
    case 1366:
        return parse_incorrect_value(msg, len, out);
    default:
        return 0;
    }
}
