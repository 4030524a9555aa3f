import shutil, subprocess, sys
from pathlib import Path
from conftest import ROOT, BIN

def test_package_is_what_the_notebooks_export(tmp_path):
    "synthbook/*.py must be exactly what `nbdev-export` makes of nbs/ (no hand edits, no stale export)."
    work = tmp_path/'w'
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns('.venv', 'runs', '.git', '__pycache__', '*.egg-info'))
    subprocess.run([str(BIN/'nbdev-export')], cwd=work, check=True, capture_output=True)
    for f in sorted((ROOT/'synthbook').glob('*.py')):
        assert (work/'synthbook'/f.name).read_text() == f.read_text(), f'{f.name} differs from its notebook export'
    assert sorted(p.name for p in (work/'synthbook').glob('*.py')) == sorted(p.name for p in (ROOT/'synthbook').glob('*.py'))

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, 'tools/make_readme.py', '--check'], cwd=ROOT)
    assert r.returncode == 0, 'README.md is stale: run `make readme`'

def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci'/'run').read_text()
    assert 'make test' in readme and 'make smoke' in readme
    assert 'make test' in ci
