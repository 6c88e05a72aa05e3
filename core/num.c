/* Locale-independent number formatting and parsing. SQL and the wire protocols always use '.' as
 * the decimal separator, whatever LC_NUMERIC the application set with setlocale(). */
#include "internal.h"

#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static locale_t c_numeric;
static pthread_once_t c_numeric_once = PTHREAD_ONCE_INIT;

static void make_c_numeric(void) { c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* Switches the calling thread to the C numeric locale; returns the previous one (0 if none). */
static locale_t enter_c(void)
{
    pthread_once(&c_numeric_once, make_c_numeric);
    return c_numeric ? uselocale(c_numeric) : (locale_t)0;
}

static void leave_c(locale_t old)
{
    if (old)
        uselocale(old);
}

int txm__dtoa(char *buf, size_t size, double d)
{
    locale_t old = enter_c();
    int n = snprintf(buf, size, "%.17g", d);
    leave_c(old);
    return n;
}

double txm__strtod(const char *s, char **end)
{
    locale_t old = enter_c();
    double d = strtod(s, end);
    leave_c(old);
    return d;
}
