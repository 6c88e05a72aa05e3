/* Scripted fake driver for core state-machine tests only (see fake_driver.c). */
#ifndef TXM_FAKE_DRIVER_H
#define TXM_FAKE_DRIVER_H

#include "internal.h"

extern const txm_driver fake_driver;
extern char fake_log[8192];
extern txm_tx_options fake_last_begin; /* a copy of the last BEGIN op's options */

void fake_reset(void);
/* The op `ops_from_now` ops ahead (0 = the next one) fails with code and TXM_ERRF_* flags. */
void fake_fail_op(int ops_from_now, int code, unsigned flags);
/* After the next run, tx_status reports `st` once (simulates an implicit commit etc.). */
void fake_status_after_next_run(txm_tx_status st);

#endif
