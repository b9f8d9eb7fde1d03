"""Run every notebook in `nbs/` through nbdev's test runner, so that one pytest run covers notebooks and plain tests.
Cells flagged `#| fashion` run when Fashion-MNIST is installed and are skipped otherwise (see tests/fashion_gate.py)."""
import os, subprocess, sys
from pathlib import Path
import pytest
from nbdev.config import get_config
from fashion_gate import check_data, skip_flags

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config(ROOT)
NOTEBOOKS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

def test_the_fashion_flag_is_a_test_flag():
    assert 'fashion' in str(CFG.tst_flags).split(), 'pyproject.toml: tst_flags must hold "fashion", so that plain nbdev-test skips those cells'

# each notebook in a process of its own, as nbdev-test runs it: a chapter's exported classes register themselves (core.ARCHS),
# and a chapter run earlier in the same process would leave its own copies there
RUN_ONE = ("import sys, pathlib, nbdev.test as t\n"
           "ok, _ = t.test_nb(sys.argv[1], skip_flags=sys.argv[2].split(), basepath=pathlib.Path(sys.argv[3]), cell_timeout=int(sys.argv[4]))\n"
           "sys.exit(0 if ok else 1)")

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(ROOT / 'nbs')) for p in NOTEBOOKS])
def test_notebook(nb):
    check_data(nb)
    env = dict(os.environ, MPLBACKEND=os.environ.get('MPLBACKEND', 'Agg'))
    p = subprocess.run([sys.executable, '-c', RUN_ONE, str(nb), ' '.join(skip_flags(CFG.tst_flags)), str(ROOT), str(int(CFG.cell_timeout))],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, f'{nb.name} failed under nbdev.test:\n{p.stdout[-4000:]}\n{p.stderr[-8000:]}'
