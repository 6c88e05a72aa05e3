/* Hook queues. Each transaction level owns an on-commit and an on-rollback list; lists move to the
 * parent when a level is released, and are run or discarded when the outcome is known. Running them
 * is tx.c's job (run_hooks): it needs the connection's state. */
#include "internal.h"

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

void txm__hooks_move(txm_hook_list *dst, txm_hook_list *src)
{
    if (!src->head)
        return; /* dst->tail must never point into src (txm__hooks_append tests this first too) */
    *dst->tail = src->head;
    dst->tail = src->tail;
    dst->count += src->count;
    txm__hooks_init(src);
}

void txm__hooks_free_all(txm_hook_list *l)
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

txm_hook *txm__hooks_pop(txm_hook_list *l)
{
    txm_hook *h = l->head;
    if (!h)
        return NULL;
    l->head = h->next;
    if (!l->head)
        l->tail = &l->head;
    l->count--;
    h->next = NULL;
    return h;
}

void txm__hooks_prepend(txm_hook_list *dst, txm_hook_list *src)
{
    if (!src->head)
        return;
    *src->tail = dst->head;
    if (!dst->head)
        dst->tail = src->tail;
    dst->head = src->head;
    dst->count += src->count;
    txm__hooks_init(src);
}
