/* Cancelable imports. (stub: being built) */
#include "internal.h"
int bl_import_create(const txm_billing *b, txm_conn *c) { (void)b; (void)c; return 0; }
int bl_import_drop(const txm_billing *b, txm_conn *c) { (void)b; (void)c; return 0; }
