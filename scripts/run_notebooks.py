"""Run notebooks in full, as a reader's Run All does (no `IN_TEST`, the cells `nbdev-test` runs), and save their outputs.

    python scripts/run_notebooks.py nbs/06_spanlift.ipynb nbs/tutorials/sampling_in_20_lines.ipynb

The notebooks are committed with these outputs, so GitHub and the docs show the real figures and tables. Each notebook
runs in a fresh kernel in its own folder; a failing notebook is left unchanged and named. Then run `nbdev-clean`.
Widgets are not saved: their state is large and a widget needs a live kernel anyway, so the notebook keeps no widget
state and no widget output; a chapter shows a static figure beside each widget (the widgets' `static()`)."""
import argparse, sys, time
from pathlib import Path
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_docs as bd                                     # noqa: E402  (the one notebook runner)

WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json'

def drop_widgets(nb):
    "Remove the widget state from a notebook's metadata and the outputs that only show a widget; returns `nb`"
    nb.metadata.pop('widgets', None)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs = [o for o in c.outputs if WIDGET_VIEW not in o.get('data', {})]
    return nb

def run_in_full(path: Path, timeout: int | None = None, also: tuple = ()) -> float:
    "Execute `path` in full in a kernel (and the cells flagged with one of `also`, e.g. 'slow') and write its outputs in place, without widget state; returns the seconds it took"
    t0 = time.perf_counter()
    flags = [f for f in bd.skip_flags() if f not in also]
    nb = drop_widgets(bd.execute_notebook(path, timeout=timeout, in_test=False, flags=flags))
    nbformat.write(nb, path)
    return time.perf_counter() - t0

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--timeout', type=int, default=None, help='seconds per cell (default: the project cell_timeout)')
    ap.add_argument('--also', nargs='*', default=[], help="run the cells with these flags too (e.g. slow); others keep their stored outputs")
    args = ap.parse_args(argv)
    failed = []
    for p in args.notebooks:
        try: print(f'{p}: ran in full in {run_in_full(p, args.timeout, tuple(args.also)):.0f} s', flush=True)
        except bd.NotebookFailed as e: failed.append(p); print(e, file=sys.stderr)
    if failed: sys.exit(f"failed: {', '.join(map(str, failed))}")

if __name__ == '__main__': main()
