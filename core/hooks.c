/* Hook queues. Each transaction level owns an on-commit and an on-rollback list; lists move to the
 * parent when a level is released, and are run or discarded when the outcome is known. */
#include "internal.h"

#include <stdio.h>

void txm__hooks_init(txm_hook_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
    l->count = 0;
}

int txm__hooks_push(txm_hook_list *l, txm_hook_cb fn, void *payload, void (*free_payload)(void *))
{
    txm_hook *h = txm__malloc(sizeof *h);
    if (!h)
        return txm__err(TXM_ENOMEM, "out of memory registering a hook (the hook will not run)");
    h->next = NULL;
    h->fn = fn;
    h->payload = payload;
    h->free_payload = free_payload;
    *l->tail = h;
    l->tail = &h->next;
    l->count++;
    return 0;
}

void txm__hooks_append(txm_hook_list *dst, txm_hook_list *src)
{
    if (!src->head)
        return;
    *dst->tail = src->head;
    dst->tail = src->tail;
    dst->count += src->count;
    txm__hooks_init(src);
}

void txm__hooks_discard(txm_hook_list *l)
{
    txm_hook *h = l->head;
    txm__hooks_init(l);
    while (h) {
        txm_hook *next = h->next;
        if (h->free_payload)
            h->free_payload(h->payload);
        txm__free(h);
        h = next;
    }
}

size_t txm__hooks_run(txm_hook_list *l, txm_conn *c, txm_err_rec *first_err)
{
    size_t failed = 0, index = 0;
    txm_hook *h = l->head;
    txm__hooks_init(l); /* detached: hooks may register new hooks on c */
    while (h) {
        txm_hook *next = h->next;
        unsigned long seq = txm__err_seq();
        int rc;
        index++;
        rc = h->fn(c, h->payload);
        if (c)
            c->stats.hooks_run++;
        if (rc != 0) {
            if (c)
                c->stats.hooks_failed++;
            if (failed == 0 && first_err) {
                if (txm__err_seq() != seq) {
                    txm__err_copy(first_err, txm_error_last());
                } else {
                    txm__err_init(first_err);
                    first_err->pub.code = rc < 0 ? rc : TXM_ERROR;
                    snprintf(first_err->message, sizeof first_err->message, "hook #%zu returned %d", index, rc);
                }
            }
            failed++;
        }
        if (h->free_payload)
            h->free_payload(h->payload);
        txm__free(h);
        h = next;
    }
    return failed;
}
