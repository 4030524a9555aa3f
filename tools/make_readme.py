"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which not every machine has).

`python tools/make_readme.py --check` exits 1 when README.md is out of date."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file -->\n\n'

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    "The README text of the index notebook: its markdown cells, its code cells and what they printed as fenced blocks."
    cells = json.loads(Path(nb_path).read_text())['cells']
    parts = []
    for c in cells:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f'```python\n{src}\n```')
        printed = ''.join(''.join(o.get('text', '')) for o in c.get('outputs', []) if o.get('output_type') == 'stream')
        if printed.strip(): parts.append(f'```\n{printed.rstrip()}\n```')
    return HEADER + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv: sys.exit(0 if readme.exists() and readme.read_text() == text else 1)
    readme.write_text(text)
