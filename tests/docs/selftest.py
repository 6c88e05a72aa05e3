#!/usr/bin/env python3
"""Self-test of check_docs.py: it must FAIL, at the right FILE:LINE, on a copy of the repository
whose docs have each kind of defect injected (a broken link, a broken #anchor, an unknown symbol,
a type written as a call, a missing file, a build output no meson.build makes, a missing section
named from a header, a design file outside the repository).

Usage: selftest.py [REPO_ROOT]
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# (file, appended line, text the report must contain for that line)
INJECT = [
    ("docs/semantics.md", "See [the missing page](no-such-page.md).", "broken link (no-such-page.md)"),
    ("docs/semantics.md", "See [a missing section](errors.md#no-such-heading).", "no heading with anchor #no-such-heading"),
    ("README.md", "Call `txm_no_such_function()` first.", "`txm_no_such_function` is not declared"),
    ("README.md", "Read `txm_stats().round_trips`.", "`txm_stats()` is written as a call"),
    ("README.md", "Then `txm_stats` counts the round trips.", "`txm_stats` is a type, but here it counts"),
    ("docs/errors.md", "The table is in `core/no_such_file.c`.", "core/no_such_file.c does not exist"),
    ("docs/errors.md", "Run `build/tools/no-such-tool`.", "tools/meson.build builds no 'no-such-tool'"),
    ("include/txm.h", "/* see docs/semantics.md, \"No such section\" */", "has no section \"No such section\""),
    ("docs/bench.md", "The targets of shared/DESIGN.md apply.", "shared/DESIGN.md is not in the repository"),
    ("docs/conformance.md", "Use `conf_no_such_helper()`.", "`conf_no_such_helper` is no identifier of tests/conformance/"),
]


def run(root):
    p = subprocess.run([sys.executable, os.path.join(HERE, "check_docs.py"), root],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def main(argv):
    src = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(HERE, "..", ".."))
    failures = []
    with tempfile.TemporaryDirectory(prefix="txm-docs-selftest-") as tmp:
        copy = os.path.join(tmp, "repo")

        def ignore(d, names):
            # no VCS data, no build trees (a directory holding meson-private/ is one)
            return [n for n in names if n == ".git" or n.startswith("build")
                    or os.path.isdir(os.path.join(d, n, "meson-private"))]
        shutil.copytree(src, copy, ignore=ignore, symlinks=True)

        expected = []
        for rel, text, want in INJECT:
            path = os.path.join(copy, rel)
            with open(path, encoding="utf-8") as f:
                n = sum(1 for _ in f)
            with open(path, "a", encoding="utf-8") as f:
                f.write("\n" + text + "\n")
            expected.append(("%s:%d: " % (rel, n + 2), want))

        rc, out = run(copy)
        if rc == 0:
            failures.append("check_docs.py exited 0 on docs with injected defects")
        lines = out.splitlines()
        for prefix, want in expected:
            if not any(l.startswith(prefix) and want in l for l in lines):
                failures.append("no report '%s...%s'" % (prefix, want))
    if failures:
        print("check_docs.py output:\n" + out)
        for f in failures:
            print("docs self-test: " + f)
        return 1
    print("docs self-test: check_docs.py failed as it must (exit %d) and reported all %d injected defects"
          % (rc, len(expected)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
