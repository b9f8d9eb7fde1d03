"""The course as a reader uses it: JupyterLab on the loopback, `nbs/10_widgets.ipynb` opened in headless Chromium (Debian's
`chromium` and `chromium-driver`, driven by Selenium from PyPI), every cell run, and one slider of a widget moved by the
keyboard, as a person would. The widget's figure must change. The notebook runs from a copy in a temporary folder (JupyterLab
autosaves), with IN_TEST=1 so it does its small version. The server is always stopped. Skips, with the reason, where Chromium,
its driver or Selenium is missing; .ci/run installs them. SPANLIFT_SCREENSHOT=path keeps a picture of the widget there."""
import base64, contextlib, os, secrets, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / 'nbs' / '10_widgets.ipynb'
CHROMIUM = next((c for c in (os.environ.get('CHROMIUM'), '/usr/bin/chromium') if c and Path(c).exists()), None)
DRIVER = next((c for c in (os.environ.get('CHROMEDRIVER'), '/usr/bin/chromedriver', shutil.which('chromedriver')) if c and Path(c).exists()), None)
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1200,900']
RUN_ALL_S, STEP_S = 600, 120                       # the whole notebook; one widget update

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason='no Chromium at /usr/bin/chromium: apt-get install chromium chromium-driver'),
              pytest.mark.skipif(DRIVER is None, reason='no chromedriver: apt-get install chromium-driver')]

def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture
def lab(tmp_path):
    "JupyterLab on a free port of 127.0.0.1 with a random token, serving a copy of the notebook; stopped (with its kernels) afterwards"
    pytest.importorskip('jupyterlab', reason='JupyterLab is not installed (pip install -e ".[dev]")')
    work = tmp_path / 'nbs'; work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    (tmp_path / 'config' / 'labconfig').mkdir(parents=True)         # no "get Jupyter news?" prompt over the page
    (tmp_path / 'config' / 'labconfig' / 'page_config.json').write_text('{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    env = dict(os.environ, IN_TEST='1', OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
               JUPYTER_CONFIG_DIR=str(tmp_path / 'config'), JUPYTER_RUNTIME_DIR=str(tmp_path / 'runtime'), MPLBACKEND='module://matplotlib_inline.backend_inline')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={work}',
           '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
           '--LabApp.extension_manager=readonly'] + (['--allow-root'] if os.geteuid() == 0 else [])   # CI runs as root
    log = open(tmp_path / 'lab.log', 'w')
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}'
        for _ in range(120):
            if proc.poll() is not None: pytest.fail(f'JupyterLab exited with {proc.returncode}:\n{(tmp_path / "lab.log").read_text()[-3000:]}')
            try: urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f'JupyterLab did not answer on {url} within 60 s:\n{(tmp_path / "lab.log").read_text()[-3000:]}')
        yield dict(url=url, token=token, log=tmp_path / 'lab.log')
    finally:
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)   # the server and the kernels it started
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()

@pytest.fixture
def browser(tmp_path):
    "Headless Chromium with a fresh profile, driven by Selenium through Debian's chromedriver (nothing is downloaded)"
    webdriver = pytest.importorskip('selenium.webdriver', reason='Selenium is not installed (pip install -e ".[dev]")')
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f'--user-data-dir={tmp_path / "profile"}']: opts.add_argument(f)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))
    drv.set_page_load_timeout(120); drv.set_script_timeout(STEP_S)
    try: yield drv
    finally: drv.quit()

def _wait(cond, secs: float, what: str, every: float = 1.0):
    t0 = time.time()
    while time.time() - t0 < secs:
        v = cond()
        if v: return v
        time.sleep(every)
    pytest.fail(f'timed out after {secs:.0f} s waiting for {what}', pytrace=False)

# the PNG bytes shown by the first widget image below the first slider's widget, as base64 (the src is a blob: URL)
IMAGE_JS = """const done = arguments[arguments.length - 1];
const box = document.querySelectorAll('.jp-OutputArea-output .widget-vbox')[0];
const img = box && box.querySelector('img');
if (!img || !img.src) { done(null); return; }
fetch(img.src).then(r => r.arrayBuffer()).then(b => { let s = ''; const u = new Uint8Array(b);
  for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]); done(btoa(s)); }).catch(e => done('error: ' + e));"""

def test_a_widget_slider_moved_in_jupyterlab_changes_the_figure(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    browser.get(f"{lab['url']}/lab/tree/{NOTEBOOK.name}?reset&token={lab['token']}")
    _wait(lambda: browser.execute_script("const a = window.jupyterapp; return !!(a && a.shell && a.shell.currentWidget "
                                         "&& a.shell.currentWidget.sessionContext && a.shell.currentWidget.sessionContext.session);"),
          120, 'the notebook to open with a kernel')
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    count_js = ("const w = window.jupyterapp.shell.currentWidget; const code = w.content.widgets.filter(c => c.model.type === 'code');"
                "return [code.length, code.filter(c => c.model.executionCount).length,"
                " !!document.querySelector('[data-mime-type=\"application/vnd.jupyter.error\"]'), w.sessionContext.session.kernel.status];")
    def finished():
        n, ran, err, status = browser.execute_script(count_js)
        if err: pytest.fail(f'a cell of {NOTEBOOK.name} raised an error in JupyterLab (see the page)', pytrace=False)
        return ran == n and status == 'idle'
    _wait(finished, RUN_ALL_S, f'every cell of {NOTEBOOK.name} to run', every=2)
    before = _wait(lambda: browser.execute_async_script(IMAGE_JS), STEP_S, 'the first widget to show its figure')
    assert not before.startswith('error') and base64.b64decode(before)[:4] == b'\x89PNG', before[:100]
    box = browser.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output .widget-vbox')[0]
    slider = box.find_element(By.CSS_SELECTOR, '.widget-slider')
    readout = slider.find_element(By.CSS_SELECTOR, '.widget-readout').text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    slider.find_element(By.CSS_SELECTOR, '.noUi-handle').send_keys(Keys.ARROW_RIGHT)   # one step up, as a person would
    _wait(lambda: slider.find_element(By.CSS_SELECTOR, '.widget-readout').text != readout, 30, 'the slider to move')
    after = _wait(lambda: (lambda a: a if a and a != before else None)(browser.execute_async_script(IMAGE_JS)), STEP_S,
                  f"the figure to change after the slider moved from {readout}")
    assert base64.b64decode(after)[:4] == b'\x89PNG'
    shot = box.screenshot_as_png
    (tmp_path / 'widget.png').write_bytes(shot)
    if os.environ.get('SPANLIFT_SCREENSHOT'): Path(os.environ['SPANLIFT_SCREENSHOT']).write_bytes(shot)
