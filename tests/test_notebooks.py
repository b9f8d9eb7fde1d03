"Run every notebook in `nbs/` through nbdev's test runner, so that one pytest run covers notebooks and plain tests."
import os
from pathlib import Path
import pytest
import nbdev.test as nbtest            # imported as a module, so pytest does not collect nbdev's `test_nb`
from nbdev.config import get_config
from fashion_gate import check_data

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config(ROOT)
NOTEBOOKS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[str(p.relative_to(ROOT / 'nbs')) for p in NOTEBOOKS])
def test_notebook(nb):
    check_data(nb)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    flags = CFG.tst_flags.split() if isinstance(CFG.tst_flags, str) else list(CFG.tst_flags)
    ok, secs = nbtest.test_nb(nb, skip_flags=flags, basepath=ROOT, cell_timeout=int(CFG.cell_timeout))
    assert ok, f'{nb.name} failed under nbdev.test (see the traceback above)'
