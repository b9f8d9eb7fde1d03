"""Build the docs locally, without Quarto: run every notebook in `nbs/` in a real Jupyter kernel and render it to HTML.

    python scripts/build_docs.py                          # every notebook, into _docs/
    python scripts/build_docs.py --only index 00_core     # a subset (stems, names or paths under nbs/)
    python scripts/build_docs.py -j 2 --force             # two kernels at once; rebuild even fresh pages

Each notebook runs in an `ipykernel` kernel of this Python (what JupyterLab starts), in its own folder, with
`IN_TEST=1` so it does its small workload, and with the cells that `nbdev-test` runs: cells flagged with one of
`tst_flags` (pyproject.toml) keep their stored outputs. The page drops `#| hide` cells, strips directive lines,
honours `#| echo: false` / `#| output: false`, and embeds figures as PNG. `_docs/index.html` links every page in
reading order. A page is rebuilt only when its notebook, the library or this script changed (`--force` rebuilds).
A notebook that fails to run fails the build, with its name and the cell's traceback.
The online site is built by Quarto instead (`nbdev-docs`, .github/workflows/deploy.yaml); both write to `_docs/`.

The tests import `execute_notebook` (tests/test_kernel.py) and `build` (tests/test_docs.py) from here.
"""
from __future__ import annotations
import argparse, asyncio, hashlib, html, json, os, re, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import default

ROOT = Path(__file__).resolve().parents[1]
NBS, DOCS = ROOT / 'nbs', ROOT / '_docs'
STAMPS = '.build'                                   # under the output folder: one freshness stamp per page
_ansi = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')

# ---------------------------------------------------------------------------------------------------- which notebooks
def _keep(p: Path) -> bool:
    rel = p.relative_to(NBS).parts
    return not any(s.startswith(('_', '.')) for s in rel)

def notebooks() -> list[Path]:
    "Every notebook under nbs/ in reading order: `index`, then the tutorials, then the numbered notebooks, then the rest"
    nbs = [p for p in NBS.rglob('*.ipynb') if _keep(p)]
    def order(p: Path):
        rel = p.relative_to(NBS)
        group = 0 if rel == Path('index.ipynb') else 1 if rel.parts[0] == 'tutorials' else 2 if len(rel.parts) == 1 else 3
        return group, str(rel)
    return sorted(nbs, key=order)

def select(names) -> list[Path]:
    "The notebooks named by `names` (stem, file name or path, relative to nbs/ or not), in reading order"
    every, chosen = notebooks(), set()
    for name in names:
        n = str(name).removesuffix('.ipynb')
        hits = [p for p in every if n in (p.stem, str(p.relative_to(NBS).with_suffix('')), str(p.with_suffix('')),
                                          str(p.relative_to(ROOT).with_suffix('')))]
        if not hits: raise SystemExit(f'build_docs: no notebook called {name!r} in {NBS}')
        chosen.update(hits)
    return [p for p in every if p in chosen]

def skip_flags() -> list[str]:
    "The `tst_flags` of pyproject.toml, less `fashion` where Fashion-MNIST is installed: cells carrying one of them are not run"
    from nbdev.config import get_config
    from spanlift_nb.data import fashion_installed
    f = get_config(ROOT).tst_flags
    f = f.split() if isinstance(f, str) else list(f or [])
    return [x for x in f if x != 'fashion'] if fashion_installed() else f   # with the images installed, their cells run too

def cell_timeout() -> int:
    from nbdev.config import get_config
    return int(get_config(ROOT).get('cell_timeout', 900) or 900)

# ---------------------------------------------------------------------------------------------------- running in a kernel
class NotebookFailed(RuntimeError):
    "A notebook that did not run to the end; the message names it and carries the failing cell's traceback"

class _ThisPython(KernelSpecManager):
    "Always the `python3` kernel of *this* interpreter (what the venv's JupyterLab starts), never a stray user spec"
    def get_kernel_spec(self, kernel_name):
        from ipykernel.kernelspec import RESOURCES, get_kernel_dict
        return self.kernel_spec_class(resource_dir=RESOURCES, **get_kernel_dict())

class _Kernel(AsyncKernelManager):
    "Kernel manager that finds kernels with `_ThisPython`: no kernel spec needs installing, in a fresh venv either"
    @default('kernel_spec_manager')
    def _ksm(self): return _ThisPython(data_dir=self.data_dir)

class _Client(NotebookClient):
    "`NotebookClient` that runs only the cells whose index is in `run`"
    def __init__(self, nb, run: set[int], **kw):
        super().__init__(nb, **kw)
        self._run = run
    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        if cell_index not in self._run: return cell
        return await super().async_execute_cell(cell, cell_index, *args, **kwargs)

def kernel_env(extra: dict | None = None, in_test: bool = True) -> dict:
    "The kernel's environment: ours, with `IN_TEST=1` (unless `in_test` is false), and without `MPLBACKEND` so that figures show inline"
    env = {k: v for k, v in os.environ.items() if k not in ('MPLBACKEND', 'IN_TEST')}
    env.update({'PYDEVD_DISABLE_FILE_VALIDATION': '1'}, **({'IN_TEST': '1'} if in_test else {}), **(extra or {}))
    return env

def cells_to_run(path: Path, flags=None) -> set[int]:
    "Indices of the cells nbdev-test would run (same rules: `tst_flags`, `eval: false`, `skip_exec`)"
    from nbdev.test import nb_test_cells
    return {c.idx_ for c in nb_test_cells(path, skip_flags=skip_flags() if flags is None else flags)}

async def aexecute_notebook(path, timeout: int | None = None, env: dict | None = None, flags=None, in_test: bool = True):
    "Run the notebook at `path` in a fresh ipykernel kernel in its folder; return the executed notebook or raise `NotebookFailed`"
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    client = _Client(nb, cells_to_run(path, flags), kernel_name='python3', kernel_manager_class=_Kernel,
                     timeout=timeout or cell_timeout(), startup_timeout=120, allow_errors=False, record_timing=False,
                     extra_arguments=['--IPKernelApp.log_level=ERROR'],   # not its TCP-without-encryption warning
                     resources={'metadata': {'path': str(path.parent)}})
    try: await client.async_execute(env=kernel_env(env, in_test))
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e: why = _ansi.sub('', str(e))
    except Exception as e: why = f'the kernel could not run it: {type(e).__name__}: {e}'   # e.g. it did not start
    else: return drop_progress(nb)
    raise NotebookFailed(f'{_rel(path)} failed in the kernel:\n{why}')

def is_progress(out) -> bool:
    "True for a progress bar's output (fastprogress: its `<style>`, its `<progress>` element, or the empty display it leaves)"
    data = out.get('data', {})
    if out.get('output_type') not in ('display_data', 'update_display_data') or 'text/html' not in data: return False
    html = ''.join(data['text/html'])
    return not html.strip() or '<progress' in html or 'progress {' in html

def drop_progress(nb):
    "Remove the progress bars from an executed notebook's outputs; returns `nb`"
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs = [o for o in c.outputs if not is_progress(o)]
    return nb

def execute_notebook(path, **kwargs):
    "Synchronous `aexecute_notebook`"
    return asyncio.run(aexecute_notebook(path, **kwargs))

def _rel(path: Path) -> str:
    try: return str(Path(path).resolve().relative_to(ROOT))
    except ValueError: return str(path)

# ---------------------------------------------------------------------------------------------------- rendering
class DocsCells(Preprocessor):
    "What nbdev's docs do with directives: drop `hide`/`include: false` cells, strip directive lines, honour echo/output"
    def preprocess(self, nb, resources):
        from fastcore.nbio import read_nb                 # fastcore's parser is the one nbdev uses
        fc = read_nb(resources['src_path'])
        cells = []
        for cell, fcell in zip(nb.cells, fc.cells):
            d = fcell.directives if cell.cell_type == 'code' else {}
            if 'hide' in d or str(d.get('include', '')).lower() == 'false': continue
            if d:
                fcell.remove_directives()
                cell.source = fcell.source
                if not cell.source.strip() and not cell.get('outputs'): continue
            if str(d.get('echo', '')).lower() == 'false': cell.metadata.setdefault('transient', {})['remove_source'] = True
            if str(d.get('output', '')).lower() == 'false': cell.outputs = []
            cells.append(cell)
        title = next((i for i, c in enumerate(cells) if c.cell_type == 'markdown' and re.search(r'^#\s', c.source, re.M)), 0)
        nb.cells = [cells[title]] + cells[:title] + cells[title + 1:] if cells else cells   # the `# Title` opens the page
        return nb, resources

def title_of(path: Path, nb=None) -> tuple[str, str]:
    "The notebook's `# Title` and its `> description` line (nbdev's convention)"
    nb = nb or nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        m = re.search(r'^#\s+(.+)$', c.source, re.M)
        if m:
            d = re.search(r'^>\s*(.+)$', c.source[m.end():], re.M)
            return m.group(1).strip(), (d.group(1).strip() if d else '')
    return path.stem, ''

def page_of(path: Path, out: Path = DOCS) -> Path:
    "Where the page of the notebook at `path` is published: nbs/X.ipynb -> _docs/X.html (so index.ipynb -> index.html)"
    return out / path.relative_to(NBS).with_suffix('.html')

def _rendered(path: Path, out: Path) -> Path:
    "Where the render is kept: the page itself, but for the front page, which `write_index` completes with the contents"
    return out / STAMPS / 'index.html' if path == NBS / 'index.ipynb' else page_of(path, out)

_NAV_CSS = ('<style>.spanlift-nav{font-family:system-ui,sans-serif;font-size:14px;padding:8px 16px;'
            'border-bottom:1px solid #ddd;display:flex;gap:1.5em}.spanlift-nav a{text-decoration:none}'
            '.spanlift-contents{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;line-height:1.5}'
            '.spanlift-contents a{color:#1a5fb4}.spanlift-contents li{margin:.4em 0}.spanlift-contents code{color:#666;font-size:85%}</style>')

def _nav(path: Path, order: list[Path], out: Path) -> str:
    up = '../' * (len(path.relative_to(NBS).parts) - 1)
    i, links = order.index(path) if path in order else -1, [f'<a href="{up}index.html">spanlift-nb</a>']
    if i > 0: links.append(f'<a href="{up}{order[i-1].relative_to(NBS).with_suffix(".html")}">&larr; {html.escape(title_of(order[i-1])[0])}</a>')
    if 0 <= i < len(order) - 1: links.append(f'<a href="{up}{order[i+1].relative_to(NBS).with_suffix(".html")}">{html.escape(title_of(order[i+1])[0])} &rarr;</a>')
    return f'{_NAV_CSS}<nav class="spanlift-nav">{"".join(links)}</nav>'

def render(path: Path, nb, out: Path = DOCS, order: list[Path] | None = None) -> Path:
    "Write the executed notebook `nb` (read from `path`) as an HTML page under `out`"
    exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(DocsCells(), enabled=True)
    title = title_of(path, nb)[0]
    body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': title}, 'src_path': str(path)})
    body = re.sub(r'href="(?![a-z][a-z0-9+.-]*:|#)([^"#]*?)\.ipynb(#[^"]*)?"', r'href="\1.html\2"', body)   # links between notebooks
    body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + _nav(path, order or notebooks(), out), body, count=1)
    dest = _rendered(path, out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(body, encoding='utf-8')
    return dest

def _contents(out: Path) -> str:
    "Every notebook in reading order, as HTML, linked when its page is built"
    groups = {0: 'Start here', 1: 'Tutorials', 2: 'The notebooks, in reading order', 3: 'More'}
    items, last = [], None
    for p in notebooks():
        rel = p.relative_to(NBS)
        g = 0 if rel == Path('index.ipynb') else 1 if rel.parts[0] == 'tutorials' else 2 if len(rel.parts) == 1 else 3
        if g == 0: continue                                          # the front page is the page this list sits on
        if g != last: items.append(f'</ul><h2>{groups[g]}</h2><ul>'); last = g
        t, d = title_of(p)
        href = rel.with_suffix('.html').as_posix()
        name = f'<a href="{href}">{html.escape(t)}</a>' if _rendered(p, out).exists() else f'{html.escape(t)} <em>(not built)</em>'
        d = re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(d))
        items.append(f'<li>{name} <code>{rel.as_posix()}</code>' + (f'<br><small>{d}</small>' if d else '') + '</li>')
    return '<ul>' + ''.join(items) + '</ul>'

def write_index(out: Path = DOCS) -> Path:
    "`out/index.html`: the front page (nbs/index.ipynb) when built, followed by every page in reading order"
    front, dest = _rendered(NBS / 'index.ipynb', out), out / 'index.html'
    section = ('<section class="spanlift-contents"><h1>Contents</h1><p>Local build of the notebooks, run with '
               '<code>IN_TEST=1</code> (<code>python scripts/build_docs.py</code>). The online site is built by Quarto.</p>'
               + _contents(out) + '</section>')
    if front.exists():
        doc = front.read_text(encoding='utf-8')
        doc = doc.replace('</body>', section + '</body>', 1) if '</body>' in doc else doc + section
    else:
        doc = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>spanlift-nb docs</title>'
               '<meta name="viewport" content="width=device-width, initial-scale=1">' + _NAV_CSS + '</head><body>'
               '<section class="spanlift-contents"><h1>spanlift-nb</h1></section>' + section + '</body></html>')
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(doc, encoding='utf-8')
    return dest

# ---------------------------------------------------------------------------------------------------- freshness
def _stamp_key(path: Path) -> str:
    "Hash of what a page depends on: the notebook, the library, pyproject.toml and this script"
    h = hashlib.sha256()
    deps = [path, ROOT / 'pyproject.toml', Path(__file__).resolve(), *sorted((ROOT / 'spanlift_nb').rglob('*.py'))]
    for f in deps:
        if f.exists(): h.update(str(f.relative_to(ROOT)).encode() + b'\0' + f.read_bytes() + b'\0')
    h.update(' '.join(skip_flags()).encode())
    return h.hexdigest()

def _stamp(path: Path, out: Path) -> Path: return out / STAMPS / path.relative_to(NBS).with_suffix('.json')

def is_fresh(path: Path, out: Path = DOCS) -> bool:
    s = _stamp(path, out)
    try: return _rendered(path, out).exists() and json.loads(s.read_text())['key'] == _stamp_key(path)
    except (OSError, ValueError, KeyError): return False

# ---------------------------------------------------------------------------------------------------- the build
async def _abuild(paths, out, jobs, force, log):
    order, sem, failed = notebooks(), asyncio.Semaphore(max(1, jobs)), {}
    async def one(p):
        if not force and is_fresh(p, out): return log(f'  fresh   {_rel(p)}')
        async with sem:
            t0 = time.perf_counter()
            try: nb = await aexecute_notebook(p)
            except NotebookFailed as e:
                failed[_rel(p)] = str(e)
                return log(f'  FAILED  {_rel(p)}  ({time.perf_counter() - t0:.0f} s)')
            render(p, nb, out, order)
            s = _stamp(p, out); s.parent.mkdir(parents=True, exist_ok=True)
            s.write_text(json.dumps({'key': _stamp_key(p), 'seconds': round(time.perf_counter() - t0, 1)}))
            log(f'  built   {_rel(p)}  ({time.perf_counter() - t0:.0f} s)')
    await asyncio.gather(*(one(p) for p in paths))
    return failed

def build(names=None, out: Path = DOCS, jobs: int = 1, force: bool = False, log=print) -> dict[str, Path]:
    "Build the pages of `names` (all notebooks if None) and the index; raise `NotebookFailed` naming every failed notebook"
    paths = select(names) if names else notebooks()
    out = Path(out)
    failed = asyncio.run(_abuild(paths, out, jobs, force, log))
    write_index(out)
    if failed:
        raise NotebookFailed(f'{len(failed)} notebook(s) failed: {", ".join(failed)}\n\n' + '\n\n'.join(failed.values()))
    return {_rel(p): page_of(p, out) for p in paths}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', nargs='+', metavar='NAME', help='build only these notebooks (stem, file name or path)')
    ap.add_argument('-j', '--jobs', type=int, default=1, help='notebooks run at once, one kernel each (default 1)')
    ap.add_argument('--force', action='store_true', help='rebuild pages that are already fresh')
    ap.add_argument('--out', type=Path, default=DOCS, help='output folder (default _docs/)')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try: pages = build(a.only, a.out, a.jobs, a.force)
    except NotebookFailed as e:
        print(f'\nbuild_docs: {e}', file=sys.stderr)
        return 1
    print(f'build_docs: {len(pages)} page(s) in {a.out} ({time.perf_counter() - t0:.0f} s); open {a.out / "index.html"}')
    return 0

if __name__ == '__main__':
    sys.exit(main())
