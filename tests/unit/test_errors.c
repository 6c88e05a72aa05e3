/* Error table, per-thread last error, classification helpers (core/error.c). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

typedef struct entry {
    int code;
    const char *name;
    const char *text;
} entry;

static const entry table[] = {
#define ENTRY_(name, value, text) {value, "TXM_" #name, text},
    TXM_ERRNO_MAP(ENTRY_)
#undef ENTRY_
};
#define NTABLE (sizeof table / sizeof table[0])

Test(errors, every_code_has_a_distinct_name_and_a_description)
{
    size_t i, j;
    int min = 0;
    for (i = 0; i < NTABLE; i++) {
        const char *name = txm_err_name(table[i].code);
        const char *text = txm_strerror(table[i].code);
        cr_assert(not(eq(ptr, (void *)name, NULL)));
        cr_assert(not(eq(ptr, (void *)text, NULL)));
        cr_expect(eq(int, strncmp(name, "TXM_", 4), 0), "%s", name);
        cr_expect(eq(str, (char *)name, (char *)table[i].name));
        cr_expect(gt(sz, strlen(text), 0), "%s has an empty description", name);
        cr_expect(eq(str, (char *)text, (char *)table[i].text));
        cr_expect(strcmp(text, "unknown error code") != 0);
        for (j = 0; j < i; j++) {
            cr_expect(not(eq(int, table[i].code, table[j].code)), "%s and %s share a code", name, table[j].name);
            cr_expect(strcmp(name, txm_err_name(table[j].code)) != 0, "duplicate name %s", name);
        }
        if (table[i].code < min)
            min = table[i].code;
    }
    cr_expect(eq(int, min, TXM_ERRNO_LAST_), "TXM_ERRNO_LAST_ must be the most negative code");
}

Test(errors, codes_are_contiguous)
{
    /* Every value from 0 down to TXM_ERRNO_LAST_ is in the table (append-only, no holes). */
    int c;
    for (c = 0; c >= TXM_ERRNO_LAST_; c--)
        cr_expect(strcmp(txm_err_name(c), "TXM_E?") != 0, "code %d has no name", c);
}

Test(errors, out_of_range_codes)
{
    static const int bad[] = {1, 2, TXM_ERRNO_LAST_ - 1, -1000, INT_MIN, INT_MAX};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect(eq(str, (char *)txm_err_name(bad[i]), "TXM_E?"), "code %d", bad[i]);
        cr_expect(eq(str, (char *)txm_strerror(bad[i]), "unknown error code"), "code %d", bad[i]);
    }
}

static void check_fields_non_null(const txm_error *e)
{
    cr_assert(not(eq(ptr, (void *)e, NULL)));
    cr_expect(e->message && e->sqlstate && e->constraint_name && e->table_name && e->column_name && e->schema_name &&
              e->detail);
}

static void *fresh_thread(void *arg)
{
    const txm_error *e = txm_error_last();
    int *ok = arg;
    *ok = e != NULL && e->code == TXM_OK && e->message != NULL && e->sqlstate != NULL && e->cause == NULL &&
          e->detail != NULL && e->constraint_name != NULL;
    return NULL;
}

Test(errors, last_error_is_never_null_even_on_a_fresh_thread)
{
    pthread_t th;
    int ok = 0;
    check_fields_non_null(txm_error_last());
    cr_expect(eq(int, txm_error_last()->code, TXM_OK));
    /* The other thread does not see this thread's error. */
    txm_error_set(TXM_EUNIQUE, "main thread error");
    cr_assert(eq(int, pthread_create(&th, NULL, fresh_thread, &ok), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));
    cr_expect(eq(int, ok, 1));
    cr_expect(eq(int, txm_error_last()->code, TXM_EUNIQUE));
}

Test(errors, set_and_clear)
{
    const txm_error *e;
    cr_assert(eq(int, txm_error_set(TXM_ERROR, "boom %d", 42), TXM_ERROR));
    e = txm_error_last();
    cr_expect(eq(int, e->code, TXM_ERROR));
    cr_expect(eq(str, (char *)e->message, "boom 42"));
    cr_expect(eq(str, (char *)e->sqlstate, ""));
    cr_expect(eq(str, (char *)e->constraint_name, ""));
    cr_expect(eq(ptr, (void *)e->cause, NULL));
    check_fields_non_null(e);
    txm_error_clear();
    cr_expect(eq(int, txm_error_last()->code, TXM_OK));
    check_fields_non_null(txm_error_last());
}

Test(errors, long_messages_are_truncated)
{
    static char big[4 * TXM_ERR_MSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    txm_error_set(TXM_EDATA, "%s", big);
    cr_expect(lt(sz, strlen(txm_error_last()->message), (size_t)TXM_ERR_MSG_MAX));
    cr_expect(gt(sz, strlen(txm_error_last()->message), (size_t)TXM_ERR_MSG_MAX / 2));
    cr_expect(eq(int, txm_error_last()->code, TXM_EDATA));
}

Test(errors, is_constraint)
{
    size_t i;
    for (i = 0; i < NTABLE; i++) {
        int c = table[i].code;
        int expect = c == TXM_EUNIQUE || c == TXM_EFOREIGN_KEY || c == TXM_ENOT_NULL || c == TXM_ECHECK ||
                     c == TXM_EEXCLUSION;
        cr_expect(eq(int, !!txm_err_is_constraint(c), expect), "%s", table[i].name);
    }
    cr_expect(eq(int, txm_err_is_constraint(INT_MIN), 0));
    cr_expect(eq(int, txm_err_is_constraint(1), 0));
}

Test(errors, is_transient)
{
    txm_error cause, e;
    size_t i;
    memset(&cause, 0, sizeof cause);
    memset(&e, 0, sizeof e);
    for (i = 0; i < NTABLE; i++) {
        e.code = table[i].code;
        e.cause = NULL;
        cr_expect(eq(int, !!txm_err_is_transient(&e), e.code == TXM_EDEADLOCK || e.code == TXM_ESERIALIZATION),
                  "%s without a cause", table[i].name);
    }
    e.code = TXM_ETX_ABORTED;
    e.cause = &cause;
    cause.code = TXM_EDEADLOCK;
    cr_expect(eq(int, !!txm_err_is_transient(&e), 1), "TX_ABORTED caused by a deadlock is transient");
    cause.code = TXM_ESERIALIZATION;
    cr_expect(eq(int, !!txm_err_is_transient(&e), 1));
    cause.code = TXM_EUNIQUE;
    cr_expect(eq(int, !!txm_err_is_transient(&e), 0), "TX_ABORTED caused by a unique violation is not");
    cause.code = TXM_ELOCK_TIMEOUT;
    cr_expect(eq(int, !!txm_err_is_transient(&e), 0));
    e.code = TXM_ERROR; /* a cause only matters for TX_ABORTED */
    cause.code = TXM_EDEADLOCK;
    cr_expect(eq(int, !!txm_err_is_transient(&e), 0));
    cr_expect(eq(int, txm_err_is_transient(NULL), 0));
}

Test(errors, cause_may_alias_the_thread_record)
{
    const txm_error *e;
    txm_error_set(TXM_EDEADLOCK, "deadlock detected");
    txm__err_with_cause(TXM_ETX_ABORTED, txm_error_last(), "transaction aborted");
    e = txm_error_last();
    cr_assert(eq(int, e->code, TXM_ETX_ABORTED));
    cr_assert(not(eq(ptr, (void *)e->cause, NULL)));
    cr_expect(eq(int, e->cause->code, TXM_EDEADLOCK));
    cr_expect(eq(str, (char *)e->cause->message, "deadlock detected"));
    cr_expect(eq(str, (char *)e->message, "transaction aborted"));
    cr_expect(eq(int, !!txm_err_is_transient(e), 1));
}
