"""Rewrap the `__all__` list of each exported module to 120 columns, after `nbdev-export`.

nbdev 3.3 wraps the names at 120 without counting the `__all__ = ` in front of them, so its first line runs to 130.
Same names, same order; a module whose list already fits is left as it is. `make export` runs this."""
import ast, re, sys
from pathlib import Path
from textwrap import TextWrapper

WRAP = TextWrapper(width=120, initial_indent='__all__ = ', subsequent_indent=' ' * 11, break_long_words=False)
ALL = re.compile(r"^__all__ = (\[.*?\])$", flags=re.M | re.S)

def rewrap(text:str) -> str:
    "`text` with its `__all__` list wrapped to 120 columns."
    m = ALL.search(text)
    if not m: return text
    return text[:m.start()] + '\n'.join(WRAP.wrap(str(ast.literal_eval(m.group(1))))) + text[m.end():]

if __name__ == '__main__':
    for path in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else 'synthbook').glob('*.py')):
        text = path.read_text()
        if (new := rewrap(text)) != text: path.write_text(new)
