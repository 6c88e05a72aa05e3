# Writes the C block between <!-- example:begin --> and <!-- example:end --> of a Markdown file.
import sys

text = open(sys.argv[1], encoding='utf-8').read()
block = text.split('<!-- example:begin -->', 1)[1].split('<!-- example:end -->', 1)[0]
code = block.split('```c', 1)[1].rsplit('```', 1)[0]
open(sys.argv[2], 'w', encoding='utf-8').write('/* Generated from ' + sys.argv[1].split('/')[-1] + ': edit the doc. */\n' + code)
