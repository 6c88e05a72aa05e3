/* Subcommands of the `txm` command (tools/txm.c dispatches). Each returns the process exit status. */
#ifndef TXM_TOOL_H
#define TXM_TOOL_H

#include <stddef.h>

/* txm demo [--url URL]: tells the library's stories on a real database (tools/demo.c). */
int txm_tool_demo(int argc, char **argv);

/* Demo verdicts, shared by demo.c and demo_billing.c: fail prints "txm demo: WHAT: TXM_EXXX:
 * message [sqlstate, native code] (cause: ...)" and returns 1; check prints "unexpected: ..." and
 * returns 1 unless ok (then 0). */
int txm_tool_demo_fail(const char *what, int rc);
int txm_tool_demo_check(int ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The billing stories of the demo (tools/demo_billing.c), on their own connections to url. */
int txm_tool_demo_billing(const char *url);

/* Copies `url` to buf as the core redacts it (every secret, every spelling, masked by "***"). */
void txm_tool_redact(const char *url, char *buf, size_t size);

#endif
