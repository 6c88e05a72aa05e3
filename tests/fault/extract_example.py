# Extracts C examples from a Markdown file so that the test suite compiles and runs them as written.
#   extract_example.py DOC OUT         the C block between <!-- example:begin --> and <!-- example:end -->
#   extract_example.py DOC OUT NAME    the first ```c block after the marker <!-- example: NAME -->
#   extract_example.py --check DOC NAME...
#                                      exit 1 unless the named markers of DOC are exactly NAME...
#                                      (an example added to the doc but not registered as a test, or
#                                      registered but gone from the doc, fails the build's check)
import re
import sys

MARKER = re.compile(r'<!-- example: ([A-Za-z0-9_-]+) -->')


def named_blocks(text):
    """(name, code) for every named marker, in document order."""
    out = []
    for m in MARKER.finditer(text):
        rest = text[m.end():]
        start = rest.find('```c\n')
        if start < 0:
            sys.exit('example %s: no ```c block after its marker' % m.group(1))
        body = rest[start + len('```c\n'):]
        end = body.find('\n```')
        if end < 0:
            sys.exit('example %s: the ```c block is not closed' % m.group(1))
        out.append((m.group(1), body[:end + 1]))
    return out


def main(argv):
    if len(argv) >= 2 and argv[0] == '--check':
        text = open(argv[1], encoding='utf-8').read()
        names = [n for n, _ in named_blocks(text)]
        dups = sorted({n for n in names if names.count(n) > 1})
        missing = sorted(set(names) - set(argv[2:]))
        gone = sorted(set(argv[2:]) - set(names))
        for what, lst in (('named twice in the doc', dups), ('in the doc but not registered', missing),
                          ('registered but not in the doc', gone)):
            if lst:
                print('%s: examples %s: %s' % (argv[1], what, ', '.join(lst)))
        return 1 if dups or missing or gone else 0
    text = open(argv[0], encoding='utf-8').read()
    if len(argv) == 2:
        block = text.split('<!-- example:begin -->', 1)[1].split('<!-- example:end -->', 1)[0]
        code = block.split('```c', 1)[1].rsplit('```', 1)[0]
    else:
        found = [c for n, c in named_blocks(text) if n == argv[2]]
        if not found:
            sys.exit('%s: no example named %s' % (argv[0], argv[2]))
        code = found[0]
    open(argv[1], 'w', encoding='utf-8').write('/* Generated from ' + argv[0].split('/')[-1] + ': edit the doc. */\n' + code)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
