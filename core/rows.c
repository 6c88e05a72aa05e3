/* Buffered result sets. A driver fills a sink (txm_sink_columns, txm_sink_row); the core turns it
 * into txm_rows. Cells are stored in one growing array; text/blob bytes in separate chunks. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cell {
    txm_type type;
    char *num_text; /* INT/REAL formatted on first txm_rows_get_text, else NULL */
    union {
        int64_t i;
        double d;
        struct {
            char *ptr; /* NUL-terminated copy */
            size_t len;
        } buf;
    } u;
} cell;

struct txm_sink {
    size_t ncols;
    char **names;
    cell *cells;
    size_t nrows;
    size_t cap_cells;
    bool failed;
};

struct txm_rows {
    txm_sink s;
    size_t cur; /* 1-based index of the current row; 0 = before first */
};

txm_sink *txm__sink_new(void) { return txm__calloc(1, sizeof(txm_sink)); }

static void sink_clear(txm_sink *s)
{
    size_t i, n = s->nrows * s->ncols;
    for (i = 0; i < n; i++) {
        if (s->cells[i].type == TXM_T_TEXT || s->cells[i].type == TXM_T_BLOB)
            txm__free(s->cells[i].u.buf.ptr);
        txm__free(s->cells[i].num_text);
    }
    txm__free(s->cells);
    if (s->names) {
        for (i = 0; i < s->ncols; i++)
            txm__free(s->names[i]);
        txm__free(s->names);
    }
}

void txm__sink_free(txm_sink *s)
{
    if (!s)
        return;
    sink_clear(s);
    txm__free(s);
}

int txm_sink_columns(txm_sink *s, size_t ncols, const char *const *names)
{
    size_t i;
    if (!s)
        return txm__err(TXM_EINVALID, "txm_sink_columns: sink is NULL");
    if (s->names || s->nrows)
        return txm__err(TXM_EMISUSE, "txm_sink_columns: columns already set");
    s->names = txm__calloc(ncols ? ncols : 1, sizeof(char *));
    if (!s->names) {
        s->failed = true;
        return txm__err(TXM_ENOMEM, "out of memory buffering a result");
    }
    s->ncols = ncols;
    for (i = 0; i < ncols; i++) {
        s->names[i] = txm__strdup(names && names[i] ? names[i] : "");
        if (!s->names[i]) {
            s->failed = true;
            return txm__err(TXM_ENOMEM, "out of memory buffering a result");
        }
    }
    return 0;
}

int txm_sink_row(txm_sink *s, const txm_value *cells)
{
    size_t i, base;
    if (!s)
        return txm__err(TXM_EINVALID, "txm_sink_row: sink is NULL");
    if (!s->names)
        return txm__err(TXM_EMISUSE, "txm_sink_row: txm_sink_columns was not called");
    if (s->ncols == 0) {
        s->nrows++;
        return 0;
    }
    if (!cells)
        return txm__err(TXM_EINVALID, "txm_sink_row: cells is NULL (the row has %zu columns)", s->ncols);
    if ((s->nrows + 1) * s->ncols > s->cap_cells) {
        size_t cap = s->cap_cells ? s->cap_cells * 2 : s->ncols * 16;
        cell *n;
        while (cap < (s->nrows + 1) * s->ncols)
            cap *= 2;
        n = txm__realloc(s->cells, cap * sizeof(cell));
        if (!n) {
            s->failed = true;
            return txm__err(TXM_ENOMEM, "out of memory buffering a result");
        }
        s->cells = n;
        s->cap_cells = cap;
    }
    base = s->nrows * s->ncols;
    for (i = 0; i < s->ncols; i++) {
        cell *c = &s->cells[base + i];
        const txm_value *v = &cells[i];
        c->type = v->type;
        c->num_text = NULL;
        switch (v->type) {
        case TXM_T_INT:
            c->u.i = v->u.i;
            break;
        case TXM_T_REAL:
            c->u.d = v->u.d;
            break;
        case TXM_T_TEXT:
        case TXM_T_BLOB:
            c->u.buf.len = v->u.buf.len;
            c->u.buf.ptr = txm__malloc(v->u.buf.len + 1);
            if (!c->u.buf.ptr) {
                size_t j;
                for (j = 0; j < i; j++) {
                    cell *p = &s->cells[base + j];
                    if (p->type == TXM_T_TEXT || p->type == TXM_T_BLOB)
                        txm__free(p->u.buf.ptr);
                }
                s->failed = true;
                return txm__err(TXM_ENOMEM, "out of memory buffering a result");
            }
            if (v->u.buf.len)
                memcpy(c->u.buf.ptr, v->u.buf.ptr, v->u.buf.len);
            c->u.buf.ptr[v->u.buf.len] = '\0';
            break;
        default:
            c->type = TXM_T_NULL;
            break;
        }
    }
    s->nrows++;
    return 0;
}

txm_rows *txm__rows_new(void) { return txm__calloc(1, sizeof(txm_rows)); }

txm_sink *txm__rows_sink(txm_rows *r) { return &r->s; }

txm_rows *txm__sink_to_rows(txm_sink *s)
{
    txm_rows *r = txm__calloc(1, sizeof *r);
    if (!r) {
        txm__sink_free(s);
        return NULL;
    }
    r->s = *s;
    txm__free(s);
    return r;
}

static const cell *cur_cell(const txm_rows *r, size_t col)
{
    if (!r || r->cur == 0 || r->cur > r->s.nrows || col >= r->s.ncols)
        return NULL;
    return &r->s.cells[(r->cur - 1) * r->s.ncols + col];
}

int txm_rows_next(txm_rows *r)
{
    if (!r || r->cur >= r->s.nrows) {
        if (r)
            r->cur = r->s.nrows + 1;
        return 0;
    }
    r->cur++;
    return 1;
}

size_t txm_rows_count(const txm_rows *r) { return r ? r->s.nrows : 0; }
size_t txm_rows_columns(const txm_rows *r) { return r ? r->s.ncols : 0; }

const char *txm_rows_column_name(const txm_rows *r, size_t col)
{
    if (!r || col >= r->s.ncols)
        return NULL;
    return r->s.names[col];
}

int txm_rows_column_index(const txm_rows *r, const char *name)
{
    size_t i;
    if (!r || !name)
        return -1;
    for (i = 0; i < r->s.ncols; i++) {
        if (strcmp(r->s.names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

txm_type txm_rows_type(const txm_rows *r, size_t col)
{
    const cell *c = cur_cell(r, col);
    return c ? c->type : TXM_T_NULL;
}

int txm_rows_is_null(const txm_rows *r, size_t col)
{
    const cell *c = cur_cell(r, col);
    return !c || c->type == TXM_T_NULL;
}

int64_t txm_rows_get_i64(const txm_rows *r, size_t col)
{
    const cell *c = cur_cell(r, col);
    if (!c)
        return 0;
    switch (c->type) {
    case TXM_T_INT:
        return c->u.i;
    case TXM_T_REAL:
        return (int64_t)c->u.d;
    case TXM_T_TEXT: {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(c->u.buf.ptr, &end, 10);
        if (errno || end == c->u.buf.ptr)
            return 0;
        return (int64_t)v;
    }
    default:
        return 0;
    }
}

double txm_rows_get_double(const txm_rows *r, size_t col)
{
    const cell *c = cur_cell(r, col);
    if (!c)
        return 0.0;
    switch (c->type) {
    case TXM_T_INT:
        return (double)c->u.i;
    case TXM_T_REAL:
        return c->u.d;
    case TXM_T_TEXT:
        return txm__strtod(c->u.buf.ptr, NULL);
    default:
        return 0.0;
    }
}

const char *txm_rows_get_text(const txm_rows *r, size_t col, size_t *len_out)
{
    cell *c = (cell *)cur_cell(r, col);
    if (len_out)
        *len_out = 0;
    if (!c || c->type == TXM_T_NULL)
        return NULL;
    if (c->type == TXM_T_INT || c->type == TXM_T_REAL) {
        /* Numbers are formatted once, on demand, and live as long as the rows. */
        if (!c->num_text) {
            c->num_text = txm__malloc(40);
            if (!c->num_text)
                return NULL;
            if (c->type == TXM_T_INT)
                snprintf(c->num_text, 40, "%lld", (long long)c->u.i);
            else
                txm__dtoa(c->num_text, 40, c->u.d);
        }
        if (len_out)
            *len_out = strlen(c->num_text);
        return c->num_text;
    }
    if (len_out)
        *len_out = c->u.buf.len;
    return c->u.buf.ptr;
}

void txm_rows_free(txm_rows *r)
{
    if (!r)
        return;
    sink_clear(&r->s);
    txm__free(r);
}
