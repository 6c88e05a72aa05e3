/*
 * Fuzz target for the mysql driver's constraint-name parser and error classifier
 * (drivers/mysql_errparse.c).
 *
 * Built two ways (tests/mysql/meson.build):
 *  - libFuzzer (clang -fsanitize=fuzzer,address,undefined) when it links: LLVMFuzzerTestOneInput;
 *  - otherwise with -DTXM_FUZZ_STANDALONE: a main() that runs a bounded random-mutation loop over
 *    the built-in seeds (bit flips, byte edits, truncation, splicing) for the given seconds.
 *
 * Input layout: byte 0 picks the error number, byte 1 the flavour bits, the rest is the message.
 * Each input is also tried behind every English template prefix, so the mutations reach deep into
 * each template without needing a corpus.
 *
 * Properties checked (abort on violation):
 *  - every output field is NUL-terminated inside its buffer, and all are "" when nothing parsed;
 *  - names come only from messages that start with the English template of that error number
 *    (a message in another language, or any other text, never yields a name);
 *  - a column/constraint taken from a single-quoted template is a substring of the message;
 *  - the classifier returns a code from the txm table and a valid transaction effect.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "../../drivers/mysql_errparse.h"

static const unsigned numbers[] = {1062, 1586, 1569, 1859, 1451, 1452, 4025, 3819, 1048,
                                   1364, 1263, 1406, 1264, 1366, 1213, 1205, 1290, 4031};

static const unsigned flavour_sets[] = {TXM_MY_MARIADB, TXM_MY_MYSQL, TXM_MY_MYSQL | TXM_MY_DUPKEY_QUALIFIED,
                                        TXM_MY_MARIADB | TXM_MY_WSREP, 0};

typedef struct tmpl {
    unsigned native;
    const char *prefix; /* English template start: names only ever come from messages with it */
} tmpl;

static const tmpl templates[] = {
    {1062, "Duplicate entry '"},
    {1586, "Duplicate entry '"},
    {1569, "ALTER TABLE causes auto_increment resequencing, resulting in duplicate entry '"},
    {1859, "Duplicate entry for key '"},
    {1451, "Cannot delete or update a parent row: a foreign key constraint fails ("},
    {1452, "Cannot add or update a child row: a foreign key constraint fails ("},
    {4025, "CONSTRAINT `"},
    {3819, "Check constraint '"},
    {1048, "Column '"},
    {1364, "Field '"},
    {1263, "Column set to default value; NULL supplied to NOT NULL column '"},
    {1406, "Data too long for column '"},
    {1264, "Out of range value for column '"},
    {1366, "Incorrect "},
};

static const char *prefix_of(unsigned native)
{
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++)
        if (templates[i].native == native)
            return templates[i].prefix;
    return NULL;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_errparse: property violated: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int terminated(const char *f)
{
    return memchr(f, '\0', TXM_MY_NAME_MAX) != NULL;
}

static int contains(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (n > len)
        return 0;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return 1;
    return 0;
}

static void one(unsigned native, unsigned flavour, const char *msg, size_t len)
{
    txm_my_names n;
    txm_my_tx_effect eff;
    const char *pre;
    size_t eff_len = len;
    int r, code;

    memset(&n, 0x5a, sizeof n); /* the parser must overwrite every field */
    r = txm__mysql_parse_names(native, flavour, msg, len, &n);
    CHECK(r == 0 || r == 1);
    CHECK(terminated(n.constraint_name) && terminated(n.table_name) && terminated(n.schema_name) &&
          terminated(n.column_name));
    if (!r)
        CHECK(!n.constraint_name[0] && !n.table_name[0] && !n.schema_name[0] && !n.column_name[0]);
    if (memchr(msg, '\0', len))
        eff_len = strlen(msg);
    if (r) {
        pre = prefix_of(native);
        CHECK(pre != NULL);
        CHECK(eff_len >= strlen(pre) && memcmp(msg, pre, strlen(pre)) == 0);
        if (native == 1048 || native == 1364 || native == 1406 || native == 1264 || native == 1263)
            CHECK(n.column_name[0] && contains(msg, eff_len, n.column_name));
        if (native == 3819)
            CHECK(n.constraint_name[0] && contains(msg, eff_len, n.constraint_name));
        if ((native == 1062 || native == 1586) && !(flavour & TXM_MY_DUPKEY_QUALIFIED))
            CHECK(n.constraint_name[0] && contains(msg, eff_len, n.constraint_name));
    }
    {
        /* the classifier takes NUL-terminated strings */
        char z[2100];
        size_t zl = eff_len < sizeof z - 1 ? eff_len : sizeof z - 1;
        memcpy(z, msg, zl);
        z[zl] = '\0';
        code = txm__mysql_classify(native, z, z, flavour, &eff);
    }
    CHECK(code < 0 && code >= TXM_ERRNO_LAST_);
    CHECK(eff == TXM_MY_TX_KEEP || eff == TXM_MY_TX_LOST || eff == TXM_MY_TX_PROBE);
}

static char scratch[4096];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned native, flavour;
    const char *msg;
    size_t len;
    char *copy;

    if (size < 2)
        return 0;
    native = numbers[data[0] % (sizeof numbers / sizeof numbers[0])];
    flavour = flavour_sets[data[1] % (sizeof flavour_sets / sizeof flavour_sets[0])];
    msg = (const char *)data + 2;
    len = size - 2;
    if (len > 2048)
        return 0;
    /* exact-size heap copy so that ASan catches any read past len */
    copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, msg, len);
    one(native, flavour, copy, len);
    free(copy);

    /* the same bytes behind the template prefix of that number */
    {
        const char *pre = prefix_of(native);
        if (pre) {
            size_t pl = strlen(pre);
            memcpy(scratch, pre, pl);
            memcpy(scratch + pl, msg, len);
            copy = malloc(pl + len);
            if (!copy)
                return 0;
            memcpy(copy, scratch, pl + len);
            one(native, flavour, copy, pl + len);
            free(copy);
        }
    }
    return 0;
}

#ifdef TXM_FUZZ_STANDALONE
/* ---- bounded random-mutation loop (no libFuzzer available) ---------------------------------- */
static const char *const seeds[] = {
    "\x00\x00" "1' for key 'PRIMARY'",
    "\x00\x02" "1' for key 't1.PRIMARY'",
    "\x05\x00" "`txm_test`.`child`, CONSTRAINT `fk_child_parent` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`))",
    "\x04\x00" "`txm_test`.`c2`, CONSTRAINT `fk2` FOREIGN KEY (`a`, `b`) REFERENCES `c3` (`x`, `y`))",
    "\x06\x00" "ck``x` failed for `txm_test`.`ch``ild`",
    "\x07\x01" "t1_chk_1' is violated.",
    "\x08\x00" "note' cannot be null",
    "\x0b\x00" "s' at row 1",
    "\x0d\x00" "integer value: 'x'y for column `a`.`b`.`c` at row 9' for column `txm_test`.`nn`.`c` at row 1",
    "\x0d\x01" "integer value: 'abc' for column 'c1' at row 1",
    "\x00\x00" "Doppelter Eintrag '1' f\xc3\xbcr Schl\xc3\xbcssel 'PRIMARY'",
};

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t seed_len(size_t i)
{
    return 2 + strlen(seeds[i] + 2);
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    unsigned rounds = 1 + (unsigned)(next_rand() % 4);
    for (unsigned r = 0; r < rounds; r++) {
        size_t pos = len ? (size_t)(next_rand() % len) : 0;
        switch (next_rand() % 7) {
        case 0: /* bit flip */
            if (len)
                buf[pos] ^= (uint8_t)(1u << (next_rand() % 8));
            break;
        case 1: /* interesting byte */ {
            static const uint8_t bytes[] = {'`', '\'', '.', ',', ' ', '(', ')', '\0', 0xff, 'a', '0'};
            if (len)
                buf[pos] = bytes[next_rand() % sizeof bytes];
            break;
        }
        case 2: /* insert */
            if (len < cap) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = (uint8_t)next_rand();
                len++;
            }
            break;
        case 3: /* delete */
            if (len) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        case 4: /* truncate */
            len = pos;
            break;
        case 5: /* splice the tail of another seed */ {
            size_t s = (size_t)(next_rand() % (sizeof seeds / sizeof seeds[0]));
            size_t sl = seed_len(s), from = 2 + (size_t)(next_rand() % (sl - 1));
            size_t n = sl > from ? sl - from : 0;
            if (pos + n > cap)
                n = cap - pos;
            memcpy(buf + pos, seeds[s] + from, n);
            len = pos + n;
            break;
        }
        default: /* duplicate a chunk */ {
            size_t n = 1 + (size_t)(next_rand() % 16);
            if (pos + n <= len && len + n <= cap) {
                memmove(buf + pos + n, buf + pos, len - pos);
                len += n;
            }
            break;
        }
        }
    }
    return len;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 10.0;
    uint8_t buf[2048];
    unsigned long long execs = 0;
    time_t start = time(NULL);

    if (argc > 2)
        rng = strtoull(argv[2], NULL, 0) | 1;
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        LLVMFuzzerTestOneInput((const uint8_t *)seeds[i], seed_len(i));
        execs++;
    }
    while (difftime(time(NULL), start) < seconds) {
        for (int k = 0; k < 10000; k++) {
            size_t s = (size_t)(next_rand() % (sizeof seeds / sizeof seeds[0]));
            size_t len = seed_len(s);
            memcpy(buf, seeds[s], len);
            len = mutate(buf, len, sizeof buf);
            LLVMFuzzerTestOneInput(buf, len);
            execs++;
        }
    }
    printf("fuzz_errparse (standalone): %llu executions in %.0f s, no property violated\n", execs, seconds);
    return 0;
}
#endif
