"""Two CPU processes under torchrun (gloo) train the same solver as one process with the same global batch: raw weights, EMA,
optimiser state and loss history. A two-process run cut between checkpoints and resumed under torchrun ends as the one never cut."""
import os, sys, json, subprocess
from pathlib import Path
import torch
import pytest
from safetensors.torch import load_file

HERE = Path(__file__).parent
ENV = dict(os.environ, OMP_NUM_THREADS='1')

def worker(out, *args, world=1, check=True):
    pre = [sys.executable] if world == 1 else [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={world}']
    return subprocess.run([*pre, str(HERE / 'ddp_worker.py'), str(out), *map(str, args)], check=check, env=ENV, timeout=300,
                          capture_output=not check, text=True)

def same_run(a_path, b_path, exact=False):
    "Every tensor of the two checkpoints (raw weights, EMA, best, each optimiser state and step count, RNG states) and the loss history"
    a, b = load_file(str(a_path)), load_file(str(b_path))
    assert a.keys() == b.keys() and {k.split('.')[0] for k in a} >= {'solver', 'ema', 'best', 'opt', 'rng'}
    assert any(k.startswith('opt.') and k.endswith('exp_avg_sq') for k in a) and any(k.startswith('opt.') and k.endswith('.step') for k in a)
    for k in a:
        if a[k].is_floating_point() and not exact: assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
        else: assert torch.equal(a[k], b[k]), k                          # step counters, RNG states; everything, when exact
    m1, m2 = (json.loads(Path(f).with_suffix('.json').read_text()) for f in (a_path, b_path))
    h1, h2 = m1['history'], m2['history']
    assert h1['step'] == h2['step'] == list(range(12)) and h1['val_step'] == h2['val_step']
    if exact: assert (h1, m1['best_val']) == (h2, m2['best_val'])
    assert h1['train'] == pytest.approx(h2['train'], rel=1e-4) and h1['val'] == pytest.approx(h2['val'], rel=1e-4)   # the loss of the global batch
    assert m1['best_val'] == pytest.approx(m2['best_val'], rel=1e-4)
    return m1, m2

@pytest.fixture(scope='module')
def two(tmp_path_factory):
    "A run of two processes, never cut"
    out = tmp_path_factory.mktemp('ddp') / 'two.safetensors'
    worker(out, world=2)
    return out

def test_two_processes_match_one(tmp_path, two):
    one = tmp_path / 'one.safetensors'
    worker(one)
    m1, m2 = same_run(one, two)
    assert (m1['world'], m2['world']) == (1, 2)                           # the second run really used two processes

def test_two_processes_resume_exactly(tmp_path, two):
    "Cut at step 10 (checkpoints every 4, validations at 6 and 12): the resumed run redoes steps 8 to 11 as the run never cut did"
    cut = tmp_path / 'cut.safetensors'
    p = worker(cut, '--cut', 10, world=2, check=False)
    assert p.returncode != 0 and 'cut at step 10' in p.stderr, p.stderr[-2000:]
    assert json.loads(cut.with_suffix('.json').read_text())['step'] == 8
    worker(cut, '--resume', world=2)
    m1, m2 = same_run(two, cut, exact=True)
    assert m1['world'] == m2['world'] == 2
