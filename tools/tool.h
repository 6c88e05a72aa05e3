/* Subcommands of the `txm` command (tools/txm.c dispatches). Each returns the process exit status. */
#ifndef TXM_TOOL_H
#define TXM_TOOL_H

#include <stddef.h>

/* txm demo [--url URL]: tells the library's stories on a real database (tools/demo.c). */
int txm_tool_demo(int argc, char **argv);

/* The billing stories of the demo (tools/demo_billing.c), on their own connections to url. */
int txm_tool_demo_billing(const char *url);

/* Copies `url` to buf as the core redacts it (every secret, every spelling, masked by "***"). */
void txm_tool_redact(const char *url, char *buf, size_t size);

#endif
