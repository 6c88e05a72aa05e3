/*
 * txm — command-line front end of the txm library.
 *
 *   txm demo [--url URL]      the library's stories on a real database (default: a SQLite file in
 *                             a fresh temporary directory, removed afterwards)
 *   txm conformance URL [ARGS...]
 *                             runs the driver conformance suite against URL (execs the
 *                             txm-conformance test binary with TXM_TEST_URL=URL; ARGS go to it,
 *                             e.g. --filter 'hooks/<name>' --verbose)
 *   txm bench [ARGS...]       the benchmark harness (execs txm-bench, found like the suite; ARGS
 *                             go to it, e.g. --quick --engine sqlite-mem)
 *   txm version               library version and the drivers built in
 *   txm help                  this text
 */
#include "tool.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h" /* txm__url_parse: the core's redaction */
#include "txm.h"
#include "txm_config.h"
#include "txm_tool_paths.h" /* TXM_HAVE_CONFORMANCE, TXM_INSTALL_*: tools/meson.build */

static const char usage_text[] =
    "usage: txm <command> [options]\n"
    "\n"
    "commands:\n"
    "  demo [--url URL]         run the library's stories on a real database; without --url an\n"
    "                           embedded SQLite file in a fresh temporary directory is used\n"
    "                           (URL: postgresql://user:pass@host:port/db, mysql://..., sqlite:PATH)\n"
    "                           --url-env VAR takes the URL from $VAR (unset: exit 77, skipped)\n"
    "  conformance URL [ARGS]   run the driver conformance suite against URL; ARGS are passed to\n"
    "                           the Criterion test binary (e.g. --filter 'hooks/*' --verbose).\n"
    "                           The suite is found in the build tree, in LIBEXECDIR/txm of an\n"
    "                           installed txm, or via TXM_CONFORMANCE_BIN\n"
    "  bench [ARGS]             run the benchmark harness txm-bench (docs/bench.md): txm against\n"
    "                           hand-written client code per engine; ARGS go to it, e.g. --quick\n"
    "                           (a smoke run that checks counters and exits 1 if one is wrong),\n"
    "                           --engine sqlite-mem, --group contention, --csv FILE, --plot FILE.svg,\n"
    "                           --progress; `txm bench --help` lists them. Found in the build tree,\n"
    "                           in LIBEXECDIR/txm of an installed txm, or via TXM_BENCH_BIN\n"
    "  version                  print the library version and the drivers built in\n"
    "  help                     print this text\n";

/* The URL as it may be shown: the core's redaction (every spelling of every secret masked, also
 * in key=value and opaque forms). A URL the parser refuses is not shown at all. */
void txm_tool_redact(const char *url, char *buf, size_t size)
{
    txm_url *u;
    if (size == 0)
        return;
    if (!url || txm__url_parse(&u, url) != 0) {
        snprintf(buf, size, "%s", url ? "(a URL txm cannot parse; not shown)" : "");
        return;
    }
    snprintf(buf, size, "%s", u->redacted);
    txm__url_free(u);
}

static int cmd_version(void)
{
    printf("txm %s\n", txm_version());
    printf("drivers:%s%s%s\n", TXM_HAVE_SQLITE ? " sqlite" : "", TXM_HAVE_PG ? " postgresql" : "",
           TXM_HAVE_MYSQL ? " mysql" : "");
    return 0;
}

static int is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Appends `path` to the list of places looked at (for the error message). */
static void note_tried(char *tried, size_t tried_size, const char *path)
{
    size_t used = strlen(tried);
    if (used < tried_size)
        snprintf(tried + used, tried_size - used, "%s%s", used ? ", " : "", path);
}

/* Writes "a/b" (or just b when b is absolute) to out; 0 if it fits and names an executable. */
static int try_candidate(char *out, size_t size, const char *a, const char *b, char *tried,
                         size_t tried_size)
{
    int w = b[0] == '/' ? snprintf(out, size, "%s", b) : snprintf(out, size, "%s/%s", a, b);
    if (w < 0 || (size_t)w >= size)
        return -1;
    note_tried(tried, tried_size, out);
    return is_executable(out) ? 0 : -1;
}

/* The directory of this executable, symlinks resolved (so a link to txm finds the real prefix). */
static int self_dir(char *dir, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", dir, size - 1);
    char *slash;
    if (n <= 0 || (size_t)n >= size - 1)
        return -1;
    dir[n] = '\0';
    slash = strrchr(dir, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

/* Where a helper program of the `txm` command lives: its environment override, its path in the
 * build tree relative to build/tools/, and its file name under PREFIX/LIBEXECDIR/txm. */
typedef struct helper_bin {
    const char *env;       /* "TXM_CONFORMANCE_BIN" */
    const char *build_rel; /* "../tests/conformance/txm-conformance" */
    const char *name;      /* "txm-conformance" */
} helper_bin;

static const helper_bin conformance_bin = {"TXM_CONFORMANCE_BIN", "../tests/conformance/txm-conformance",
                                           "txm-conformance"};
static const helper_bin bench_bin = {"TXM_BENCH_BIN", "../bench/txm-bench", "txm-bench"};

/* Finds a helper program (docs/conformance.md, "Installed"; docs/bench.md, "`txm bench`"):
 *   1. $ENV (h->env);
 *   2. the build tree: build/tools/txm -> build/<h->build_rel>;
 *   3. an installed tree, relocated: this executable sits in PREFIX/BINDIR, so the helper is in
 *      PREFIX/LIBEXECDIR/txm (an install moved as a whole, or under DESTDIR, still works);
 *   4. the configured PREFIX/LIBEXECDIR/txm itself.
 * Writes the places looked at into `tried` for the error message. */
static int find_helper(const helper_bin *h, char *out, size_t size, char *tried, size_t tried_size)
{
    const char *env = getenv(h->env);
    char libexec_rel[PATH_MAX], self[PATH_MAX], prefix[PATH_MAX];
    size_t dlen, blen = strlen(TXM_INSTALL_BINDIR);

    tried[0] = '\0';
    if (env && *env) {
        snprintf(tried, tried_size, "%s (%s)", env, h->env);
        if (!is_executable(env))
            return -1;
        snprintf(out, size, "%s", env);
        return 0;
    }
    snprintf(libexec_rel, sizeof libexec_rel, "%s/txm/%s", TXM_INSTALL_LIBEXECDIR, h->name);
    if (self_dir(self, sizeof self) == 0) {
        if (try_candidate(out, size, self, h->build_rel, tried, tried_size) == 0)
            return 0;
        dlen = strlen(self);
        /* A relative BINDIR ("bin"): strip "/bin" from this directory to get the prefix. */
        if (TXM_INSTALL_BINDIR[0] != '/' && dlen > blen && self[dlen - blen - 1] == '/' &&
            strcmp(self + dlen - blen, TXM_INSTALL_BINDIR) == 0) {
            snprintf(prefix, sizeof prefix, "%.*s", (int)(dlen - blen - 1), self);
            if (try_candidate(out, size, prefix, libexec_rel, tried, tried_size) == 0)
                return 0;
        }
    }
    return try_candidate(out, size, TXM_INSTALL_PREFIX, libexec_rel, tried, tried_size);
}

/* Replaces this process with `bin`, argv[first..argc) as its arguments. Returns only on failure. */
static int exec_helper(const char *cmd, const char *bin, int argc, char **argv, int first)
{
    char **args = calloc((size_t)(argc - first) + 2, sizeof *args);
    int i;

    fflush(NULL);
    if (!args) {
        fprintf(stderr, "txm %s: out of memory\n", cmd);
        return 1;
    }
    args[0] = (char *)bin;
    for (i = first; i < argc; i++)
        args[i - first + 1] = argv[i];
    args[argc - first + 1] = NULL;
    execv(bin, args);
    fprintf(stderr, "txm %s: cannot run %s: %s\n", cmd, bin, strerror(errno));
    free(args);
    return 126;
}

static int cmd_conformance(int argc, char **argv)
{
    char bin[PATH_MAX], tried[3 * PATH_MAX + 64], shown[1024];

    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: txm conformance URL [CRITERION-ARGS...]\n");
        return 2;
    }
    if (!TXM_HAVE_CONFORMANCE && !getenv("TXM_CONFORMANCE_BIN")) {
        fprintf(stderr,
                "txm conformance: this build of txm has no conformance suite (Criterion was not"
                " found when it was built).\n"
                "Install Criterion (Debian: libcriterion-dev) and rebuild, or set"
                " TXM_CONFORMANCE_BIN to the txm-conformance binary of another build.\n");
        return 127;
    }
    if (find_helper(&conformance_bin, bin, sizeof bin, tried, sizeof tried) != 0) {
        fprintf(stderr,
                "txm conformance: the conformance test binary was not found (looked at: %s).\n"
                "Build it (meson with Criterion installed builds tests/conformance/txm-conformance)"
                " or set TXM_CONFORMANCE_BIN to its path.\n",
                tried);
        return 127;
    }
    if (setenv("TXM_TEST_URL", argv[1], 1) != 0) {
        perror("txm conformance: setenv");
        return 1;
    }
    txm_tool_redact(argv[1], shown, sizeof shown);
    fprintf(stderr, "txm conformance: %s against %s\n", bin, shown);
    return exec_helper("conformance", bin, argc, argv, 2);
}

/* `txm bench [ARGS]`: the txm-bench harness (docs/bench.md), ARGS passed on unchanged. */
static int cmd_bench(int argc, char **argv)
{
    char bin[PATH_MAX], tried[3 * PATH_MAX + 64];

    if (find_helper(&bench_bin, bin, sizeof bin, tried, sizeof tried) != 0) {
        fprintf(stderr,
                "txm bench: the benchmark harness txm-bench was not found (looked at: %s).\n"
                "Build it (meson builds bench/txm-bench; `meson install` puts it in LIBEXECDIR/txm)"
                " or set TXM_BENCH_BIN to its path.\n",
                tried);
        return 127;
    }
    fprintf(stderr, "txm bench: %s\n", bin);
    return exec_helper("bench", bin, argc, argv, 1);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "help";

    if (strcmp(cmd, "demo") == 0)
        return txm_tool_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "conformance") == 0)
        return cmd_conformance(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cmd_version();
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "txm: unknown command '%s'\n\n%s", cmd, usage_text);
    return 2;
}
