"""The docs site's checks that run without Quarto (`make docs-check`); Quarto itself runs in the deploy workflow.

1. nbdev's processing step, `nbdev-proc-nbs` (what `nbdev-docs` runs before Quarto), over every notebook: it executes
   each cell that holds an import, so it fails when such a cell needs a name defined elsewhere. It must exit 0, print
   no traceback and no "cells containing imports and other code" warning, and write every notebook to `_proc/`.
2. Every sidebar entry of `nbs/_quarto.yml` exists, and every notebook is in the sidebar.
3. Every internal link of a markdown cell resolves: to a notebook (`x.ipynb` or the rendered `x.html`) and, after `#`,
   to a heading, an explicit `{#id}` or an exported name in it.
4. No committed cell output is an error, a stream on stderr, a traceback or a warning.

`python tools/docs_check.py` runs all four; `--static` skips the first (it executes import cells, about 15 seconds).
Exits 1 and names every problem, file and cell."""
import json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

def cells_of(nb_path):
    "The cells of the notebook at `nb_path`."
    return json.loads(Path(nb_path).read_text())['cells']

def source(cell): return ''.join(cell['source'])

def slug(heading):
    "Pandoc's (and Quarto's) automatic identifier of a heading's text."
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link's text, not its target
    text = re.sub(r'[`*]', '', text).strip().lower()
    text = re.sub(r'[^\w\-. ]', '', text)
    text = re.sub(r'\s+', '-', text)
    return re.sub(r'^[^a-z]+', '', text) or 'section'

def anchors(nb_path):
    "Every `#anchor` a link into the notebook can name: headings, explicit ids, exported functions and classes."
    found = set()
    for cell in cells_of(nb_path):
        src = source(cell)
        if cell['cell_type'] == 'markdown':
            for line in src.splitlines():
                m = re.match(r'#+\s+(.*?)\s*(\{#([\w\-.]+)[^}]*\})?\s*$', line)
                if m: found.add(m.group(3) or slug(m.group(1)))
        elif re.match(r'#\|\s*export', src):
            found |= {name.lower() for name in re.findall(r'^(?:def|class)\s+(\w+)', src, flags=re.M)}
    return found

def sidebar_entries(quarto_yml=NBS/'_quarto.yml'):
    "The files the sidebar of `quarto_yml` lists (entries are `- file.ipynb` lines or `href: file`)."
    text = Path(quarto_yml).read_text()
    sidebar = text[text.index('sidebar:'):] if 'sidebar:' in text else ''
    return re.findall(r'^\s*-\s+([\w\-./]+\.(?:ipynb|qmd|md))\s*$', sidebar, flags=re.M)

def link_problems(nb_path, nbs=NBS):
    "Each internal link of `nb_path`'s markdown cells that does not resolve, as 'file, cell i: link (why)'."
    problems = []
    for i, cell in enumerate(cells_of(nb_path)):
        if cell['cell_type'] != 'markdown': continue
        for target in re.findall(r'\]\(([^)\s]+)(?:\s+"[^"]*")?\)|href="([^"]+)"', source(cell)):
            target = target[0] or target[1]
            if re.match(r'^(https?:|mailto:)', target): continue
            page, _, anchor = target.partition('#')
            dest = Path(nb_path) if not page else nbs/re.sub(r'\.html$', '.ipynb', page)
            if not dest.exists(): why = f'{dest.name} does not exist'
            elif anchor and dest.suffix == '.ipynb' and anchor not in anchors(dest): why = f'no #{anchor} in {dest.name}'
            else: continue
            problems.append(f'{Path(nb_path).name}, cell {i}: link {target} ({why})')
    return problems

BAD_OUTPUT = re.compile(r'Traceback \(most recent call last\)|\w*Warning\b|^\s*warn\(', re.M)

def output_problems(nb_path):
    "Each committed output of `nb_path` that is an error, stderr, a traceback or a warning, as 'file, cell i: what'."
    problems = []
    for i, cell in enumerate(cells_of(nb_path)):
        for out in cell.get('outputs', []):
            kind = out.get('output_type')
            texts = [''.join(out.get('text', ''))] + [''.join(v) for k, v in out.get('data', {}).items()
                                                      if k.startswith('text/')]
            bad = BAD_OUTPUT.search('\n'.join(texts))
            if kind == 'error': what = f"error output {out.get('ename')}: {out.get('evalue', '')[:80]}"
            elif kind == 'stream' and out.get('name') == 'stderr': what = f"stderr: {texts[0].strip()[:80]!r}"
            elif bad: what = f'output holds {bad.group(0).strip()!r}'
            else: continue
            problems.append(f'{Path(nb_path).name}, cell {i}: {what}')
    return problems

def proc_problems(root=ROOT):
    "Run `nbdev-proc-nbs` from scratch; what it printed that means the site would not build."
    shutil.rmtree(root/'_proc', ignore_errors=True)  # from scratch (`--force` would also write nbs/sidebar.yml)
    run = subprocess.run([str(Path(sys.executable).parent/'nbdev-proc-nbs')], cwd=root, capture_output=True, text=True)
    log = run.stdout + run.stderr
    problems = [f'nbdev-proc-nbs exited {run.returncode}'] if run.returncode else []
    if 'Traceback' in log or re.search(r'\b\w+Error\b', log): problems.append('nbdev-proc-nbs printed an error')
    if 'containing imports and other code' in log: problems.append('a cell mixes imports with other code')
    problems += [f'_proc/{nb.name} was not written' for nb in sorted(NBS.glob('*.ipynb'))
                 if not (root/'_proc'/nb.name).exists()]
    if problems: problems.append('its output:\n' + log[-3000:])
    return problems

def main(static=False):
    problems = [] if static else proc_problems()
    listed = sidebar_entries()
    problems += [f'_quarto.yml: sidebar entry {e} does not exist' for e in listed if not (NBS/e).exists()]
    notebooks = sorted(NBS.glob('*.ipynb'))
    problems += [f'{nb.name} is not in the sidebar of _quarto.yml' for nb in notebooks if nb.name not in listed]
    for nb in notebooks: problems += link_problems(nb) + output_problems(nb)
    for p in problems: print(p)
    print(f"docs check: {len(problems)} problem(s) in {len(notebooks)} notebooks"
          f"{' (static checks only)' if static else ''}")
    return 1 if problems else 0

if __name__ == '__main__': sys.exit(main(static='--static' in sys.argv))
