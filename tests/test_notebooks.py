"""Run every notebook in `nbs/` through nbdev's test runner, so that one pytest run covers notebooks and plain tests.
Cells flagged `#| fashion` run when Fashion-MNIST is installed and are skipped otherwise (see tests/fashion_gate.py)."""
import os
from pathlib import Path
import pytest
import nbdev.test as nbtest            # imported as a module, so pytest does not collect nbdev's `test_nb`
from nbdev.config import get_config
from fashion_gate import check_data, skip_flags

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config(ROOT)
NOTEBOOKS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

def test_the_fashion_flag_is_a_test_flag():
    assert 'fashion' in str(CFG.tst_flags).split(), 'pyproject.toml: tst_flags must hold "fashion", so that plain nbdev-test skips those cells'

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(ROOT / 'nbs')) for p in NOTEBOOKS])
def test_notebook(nb):
    check_data(nb)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    ok, secs = nbtest.test_nb(nb, skip_flags=skip_flags(CFG.tst_flags), basepath=ROOT, cell_timeout=int(CFG.cell_timeout))
    assert ok, f'{nb.name} failed under nbdev.test (see the traceback above)'
