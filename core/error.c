/* Error table, per-thread last error, and the error helpers used by the core and drivers. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local txm_err_rec tls_err;
static _Thread_local txm_err_rec tls_cause;
static _Thread_local bool tls_ready;
static _Thread_local unsigned long tls_seq;
_Thread_local const txm_url *txm__tls_scope; /* see txm__scrub_scope */

/* A driver-supplied field into the record, scrubbed in scope. A source as long as the field may
 * have been cut by the driver: its tail is checked for the start of a secret. */
static void put_field(char *dst, const char *src, size_t size)
{
    if (txm__tls_scope)
        txm__scrub(txm__tls_scope, dst, size, src, src && strlen(src) + 4 >= size);
    else
        txm__strlcpy(dst, src, size);
}

void txm__strlcpy(char *dst, const char *src, size_t size)
{
    size_t n;
    if (size == 0)
        return;
    if (!src)
        src = "";
    n = strlen(src);
    if (n >= size) {
        n = size - 1;
        /* Do not cut a UTF-8 sequence in half. */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void rec_point(txm_err_rec *r)
{
    r->pub.message = r->message;
    r->pub.sqlstate = r->sqlstate;
    r->pub.constraint_name = r->constraint_name;
    r->pub.table_name = r->table_name;
    r->pub.column_name = r->column_name;
    r->pub.schema_name = r->schema_name;
    r->pub.detail = r->detail;
}

void txm__err_init(txm_err_rec *r)
{
    memset(r, 0, sizeof *r);
    rec_point(r);
    r->pub.code = TXM_OK;
}

void txm__err_copy(txm_err_rec *dst, const txm_error *src)
{
    txm__err_init(dst);
    if (!src)
        return;
    dst->pub.code = src->code;
    dst->pub.native_code = src->native_code;
    dst->pub.flags = src->flags;
    txm__strlcpy(dst->message, src->message, sizeof dst->message);
    txm__strlcpy(dst->sqlstate, src->sqlstate, sizeof dst->sqlstate);
    txm__strlcpy(dst->constraint_name, src->constraint_name, sizeof dst->constraint_name);
    txm__strlcpy(dst->table_name, src->table_name, sizeof dst->table_name);
    txm__strlcpy(dst->column_name, src->column_name, sizeof dst->column_name);
    txm__strlcpy(dst->schema_name, src->schema_name, sizeof dst->schema_name);
    txm__strlcpy(dst->detail, src->detail, sizeof dst->detail);
}

txm_err_rec *txm__err_tls(void)
{
    if (!tls_ready) {
        txm__err_init(&tls_err);
        txm__err_init(&tls_cause);
        txm__strlcpy(tls_err.message, "no error", sizeof tls_err.message);
        tls_ready = true;
    }
    return &tls_err;
}

txm_err_rec *txm__err_tls_cause(void)
{
    txm__err_tls();
    return &tls_cause;
}

unsigned long txm__err_seq(void) { return tls_seq; }

const txm_error *txm_error_last(void) { return &txm__err_tls()->pub; }

void txm_error_clear(void)
{
    txm_err_rec *r = txm__err_tls();
    txm__err_init(r);
    txm__strlcpy(r->message, "no error", sizeof r->message);
}

int txm__verr(int code, const char *fmt, va_list ap)
{
    txm_err_rec *r = txm__err_tls();
    txm__err_init(r);
    r->pub.code = code;
    if (fmt && txm__tls_scope) {
        /* Formatted in full first: a secret cut by the message bound would escape a scrub of the
         * bounded text (only its tail is checked). */
        char tmp[TXM_ERR_MSG_MAX * 4];
        int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
        txm__scrub(txm__tls_scope, r->message, sizeof r->message, w < 0 ? "" : tmp, w < 0 || (size_t)w >= sizeof tmp);
    } else if (fmt) {
        vsnprintf(r->message, sizeof r->message, fmt, ap);
    } else
        txm__strlcpy(r->message, txm_strerror(code), sizeof r->message);
    tls_seq++;
    return code;
}

int txm__err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    txm__verr(code, fmt, ap);
    va_end(ap);
    return code;
}

int txm_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    txm__verr(code, fmt, ap);
    va_end(ap);
    return code;
}

int txm__err_with_cause(int code, const txm_error *cause, const char *fmt, ...)
{
    va_list ap;
    txm_err_rec copy;
    /* `cause` may point into the thread record itself: copy it first. */
    txm__err_copy(&copy, cause);
    va_start(ap, fmt);
    txm__verr(code, fmt, ap);
    va_end(ap);
    if (cause) {
        tls_cause = copy;
        rec_point(&tls_cause);
        tls_err.pub.cause = &tls_cause.pub;
        /* The aborted-transaction error inherits the cause's TX_LOST flag. */
        tls_err.pub.flags |= copy.pub.flags & TXM_ERRF_TX_LOST;
    }
    return code;
}

int txm_driver_error(int code, const txm_error_detail *d, const char *fmt, ...)
{
    va_list ap;
    txm_err_rec *r;
    va_start(ap, fmt);
    txm__verr(code, fmt, ap);
    va_end(ap);
    r = txm__err_tls();
    if (d) {
        txm__strlcpy(r->sqlstate, d->sqlstate, sizeof r->sqlstate);
        r->pub.native_code = d->native_code;
        put_field(r->constraint_name, d->constraint_name, sizeof r->constraint_name);
        put_field(r->table_name, d->table_name, sizeof r->table_name);
        put_field(r->column_name, d->column_name, sizeof r->column_name);
        put_field(r->schema_name, d->schema_name, sizeof r->schema_name);
        put_field(r->detail, d->detail, sizeof r->detail);
        r->pub.flags = d->flags;
    }
    return code;
}

const char *txm_err_name(int code)
{
    switch (code) {
#define TXM_ERR_NAME_(name, value, text) \
    case value:                          \
        return "TXM_" #name;
        TXM_ERRNO_MAP(TXM_ERR_NAME_)
#undef TXM_ERR_NAME_
    default:
        return "TXM_E?";
    }
}

const char *txm_strerror(int code)
{
    switch (code) {
#define TXM_ERR_STR_(name, value, text) \
    case value:                         \
        return text;
        TXM_ERRNO_MAP(TXM_ERR_STR_)
#undef TXM_ERR_STR_
    default:
        return "unknown error code";
    }
}

int txm_err_is_constraint(int code)
{
    return code == TXM_EUNIQUE || code == TXM_EFOREIGN_KEY || code == TXM_ENOT_NULL || code == TXM_ECHECK ||
           code == TXM_EEXCLUSION;
}

int txm_err_is_transient(const txm_error *err)
{
    if (!err)
        return 0;
    if (err->code == TXM_EDEADLOCK || err->code == TXM_ESERIALIZATION)
        return 1;
    if (err->code == TXM_ETX_ABORTED && err->cause)
        return err->cause->code == TXM_EDEADLOCK || err->cause->code == TXM_ESERIALIZATION;
    return 0;
}

const char *txm_savepoint_name(char *buf, size_t size, unsigned level)
{
    if (!buf || size == 0)
        return ""; /* nowhere to write: a driver bug, but not a crash */
    snprintf(buf, size, "txm_sp_%u", level);
    return buf;
}

const char *txm_version(void) { return TXM_VERSION_STRING; }
