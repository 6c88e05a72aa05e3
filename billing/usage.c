/* Usage snapshots with FK-null retry. (stub: being built) */
#include "internal.h"
int bl_usage_create(const txm_billing *b, txm_conn *c) { (void)b; (void)c; return 0; }
int bl_usage_drop(const txm_billing *b, txm_conn *c) { (void)b; (void)c; return 0; }
