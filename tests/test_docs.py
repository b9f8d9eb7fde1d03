"""Open the rendered docs in a real browser: the front page and one tutorial, built by scripts/build_docs.py, served on
127.0.0.1 and loaded in Debian's headless Chromium. Each page must load, show its figures as decoded images and carry no
Python traceback or error output. Skips (with the reason) without /usr/bin/chromium or before the notebooks exist."""
import functools, html, http.server, json, os, re, shutil, subprocess, sys, tempfile, threading
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
import build_docs as bd                                     # noqa: E402  (the one notebook runner and renderer)

# Debian's chromium (CI installs it); $CHROMIUM or an already installed Chrome (GitHub's runners have one) also do.
CHROMIUM = next((c for c in (os.environ.get('CHROMIUM'), '/usr/bin/chromium', shutil.which('chromium'), shutil.which('google-chrome'))
                 if c and Path(c).exists()), None)
TUTORIAL = 'spanlift_in_5_minutes'                          # preferred; any other tutorial stands in until it exists
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
         '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',   # loopback only: CDN scripts (MathJax) just fail
         '--virtual-time-budget=10000']                                 # let the page settle before the DOM is dumped
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason='no Chromium at /usr/bin/chromium (apt-get install chromium) nor $CHROMIUM')

def _pages() -> dict:
    "page id -> (notebook, or None, and why not)"
    index = bd.NBS / 'index.ipynb'
    tuts = [p for p in bd.notebooks() if p.relative_to(bd.NBS).parts[0] == 'tutorials']
    tut = next((p for p in tuts if p.stem == TUTORIAL), tuts[0] if tuts else None)
    return {'index': (index, None) if index.exists() else (None, 'nbs/index.ipynb does not exist yet'),
            'tutorial': (tut, None) if tut else (None, 'no tutorial in nbs/tutorials/ yet')}

PAGES = _pages()

# Reported by the page itself, on `load`: which images decoded, and any script or resource errors.
PROBE = b"""<script>(function(){var errs=[];
window.addEventListener('error',function(e){errs.push(e instanceof ErrorEvent?'js: '+e.message:'resource: '+((e.target&&(e.target.src||e.target.href))||'?'))},true);
window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
var r={images:im.length,decoded:im.filter(function(i){return i.complete&&i.naturalWidth>0}).length,
png:im.filter(function(i){return i.src.indexOf('data:image/png')===0||/\\.png$/.test(i.src)}).length,
cells:document.querySelectorAll('.jp-Cell').length,links:Array.prototype.map.call(document.links,function(a){return a.getAttribute('href')}),
errors:errs,title:document.title};
var p=document.createElement('pre');p.id='spanlift-probe';p.textContent=JSON.stringify(r);document.body.appendChild(p);});})();</script>"""

class _Handler(http.server.SimpleHTTPRequestHandler):
    "Serves _docs/, adding the probe to every HTML page (in the test only: the built files stay as they are)"
    def log_message(self, *args): pass
    def do_GET(self):
        f = Path(self.translate_path(self.path))
        if f.suffix != '.html' or not f.is_file(): return super().do_GET()
        body = re.sub(rb'<head[^>]*>', lambda m: m.group(0) + PROBE, f.read_bytes(), count=1)
        self.send_response(200)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

@pytest.fixture(scope='module')
def server():
    "_docs/ on a free port of 127.0.0.1, in a thread"
    bd.DOCS.mkdir(exist_ok=True)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Handler, directory=str(bd.DOCS)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown(); srv.server_close()

def build(nb: Path):
    "Build (or reuse, when fresh) the page of `nb`; a notebook that fails to run fails the test, by name, with its cell's error"
    try: bd.build([str(nb)]); failure = None
    except bd.NotebookFailed as e: failure = str(e)
    if failure: pytest.fail(failure, pytrace=False)

def chromium(*args, timeout=120) -> str:
    "Run headless Chromium with a fresh profile; its stdout"
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([CHROMIUM, *FLAGS, f'--user-data-dir={profile}', *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f'chromium exited with {r.returncode}:\n{r.stderr[-3000:]}'
    return r.stdout

def load(url: str) -> tuple[str, dict]:
    "The page's DOM after load, and what the probe saw"
    dom = chromium('--dump-dom', url)
    m = re.search(r'<pre id="spanlift-probe">(.*?)</pre>', dom, re.S)
    assert m, f'{url} did not finish loading in Chromium (no load event); DOM starts: {dom[:500]!r}'
    return dom[:m.start()] + dom[m.end():], json.loads(html.unescape(m.group(1)))

def _error_outputs(dom: str) -> list[str]:
    "Text of stderr/error outputs that look like a Python exception"
    outs = re.findall(r'data-mime-type="application/vnd\.jupyter\.stderr"[^>]*>(.*?)</div>', dom, re.S)
    texts = [html.unescape(re.sub(r'<[^>]+>', '', o)) for o in outs]
    return [t for t in texts if re.search(r'^\s*\w*(Error|Exception)(: |$)', t, re.M)]

@pytest.mark.parametrize('page', list(PAGES))
def test_page_in_chromium(page, server):
    nb, why = PAGES[page]
    if nb is None: pytest.skip(why)
    build(nb)
    rel = bd.page_of(nb).relative_to(bd.DOCS).as_posix()
    dom, probe = load(f'{server}/{rel}')
    ctx = f'{rel} (from {nb.relative_to(ROOT)})'
    assert probe['title'] == bd.title_of(nb)[0], f'{ctx}: page title {probe["title"]!r}'
    assert probe['cells'] > 0 and 'jp-Notebook' in dom, f'{ctx}: no notebook cells on the page'
    assert 'Traceback (most recent call last)' not in dom, f'{ctx}: the page shows a Python traceback'
    assert not _error_outputs(dom), f'{ctx}: error output on the page:\n' + '\n---\n'.join(_error_outputs(dom))[:3000]
    assert probe['png'] >= 1, f'{ctx}: no figure on the page (a front page or tutorial should show one); probe: {probe}'
    assert probe['decoded'] == probe['images'], f'{ctx}: {probe["images"] - probe["decoded"]} image(s) did not decode; probe: {probe}'
    assert not [e for e in probe['errors'] if e.startswith('resource: http://127.0.0.1')], f'{ctx}: broken local resources: {probe["errors"]}'
    # A screenshot, kept for people under _docs/.build/screens/, must not be blank.
    shot = bd.DOCS / bd.STAMPS / 'screens' / f'{page}.png'
    shot.parent.mkdir(parents=True, exist_ok=True)
    chromium('--window-size=1280,1600', f'--screenshot={shot}', f'{server}/{rel}')
    import matplotlib.image as mpimg
    assert shot.exists() and mpimg.imread(shot)[..., :3].std() > 0.01, f'{ctx}: the screenshot {shot} is blank'

def test_docs_index_in_chromium(server):
    "_docs/index.html loads and links the pages of this test that are built"
    built = [nb for nb, _ in PAGES.values() if nb is not None and bd.is_fresh(nb)]
    if not built: pytest.skip('no page of this test is built (see the tests above)')
    bd.write_index()
    dom, probe = load(f'{server}/index.html')
    want = {bd.page_of(nb).relative_to(bd.DOCS).as_posix() for nb in built}
    assert want <= set(probe['links']), f'index.html lacks links to {sorted(want - set(probe["links"]))}'
