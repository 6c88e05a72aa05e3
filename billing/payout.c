/* Payouts and the outbox. (stub: being built) */
#include "internal.h"
int bl_payout_create(const txm_billing *b, txm_conn *c) { (void)b; (void)c; return 0; }
int bl_payout_drop(const txm_billing *b, txm_conn *c) { (void)b; (void)c; return 0; }
