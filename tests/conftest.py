import os, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'/'data'
BIN = Path(sys.executable).parent

@pytest.fixture
def run_cli(tmp_path):
    "Run the `synthbook` command; returns the CompletedProcess."
    def run(*args, env=None):
        return subprocess.run([str(BIN/'synthbook'), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=1500)
    return run
