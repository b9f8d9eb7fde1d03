"""Run the front page and the tutorials the way a reader does: in a real `ipykernel` kernel (started by nbclient, as
JupyterLab starts it), in the notebook's own folder, with `IN_TEST=1` in the kernel's environment. nbdev-test runs
notebooks with execnb, in-process and without a kernel; this catches what only a kernel shows (inline figures,
display/update_display, widgets, cwd). Cells flagged with `tst_flags` are left out, as under nbdev-test."""
import sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
import build_docs as bd                                     # noqa: E402  (the one notebook runner)
from fashion_gate import check_data                        # noqa: E402

NOTEBOOKS = [p for p in bd.notebooks() if p == bd.NBS / 'index.ipynb' or p.relative_to(bd.NBS).parts[0] == 'tutorials']

@pytest.mark.parametrize('nb', NOTEBOOKS or [None], ids=[str(p.relative_to(bd.NBS)) for p in NOTEBOOKS] or ['none'])
def test_notebook_in_kernel(nb):
    if nb is None: pytest.skip('neither nbs/index.ipynb nor nbs/tutorials/*.ipynb exists yet')
    check_data(nb)
    t0 = time.perf_counter()
    try: bd.execute_notebook(nb); failure = None
    except bd.NotebookFailed as e: failure = str(e)
    if failure: pytest.fail(failure, pytrace=False)     # outside `except`: the cell's traceback, once
    print(f'{nb.relative_to(ROOT)} ran in a kernel in {time.perf_counter() - t0:.0f} s')
