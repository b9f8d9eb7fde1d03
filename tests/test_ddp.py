"Two CPU processes under torchrun (gloo) train the same solver as one process with the same global batch: raw weights, EMA, optimiser state and loss history."
import os, sys, json, subprocess
from pathlib import Path
import torch
import pytest
from safetensors.torch import load_file

HERE = Path(__file__).parent
ENV = dict(os.environ, OMP_NUM_THREADS='1')

def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / 'one.safetensors', tmp_path / 'two.safetensors'
    subprocess.run([sys.executable, str(HERE / 'ddp_worker.py'), str(one)], check=True, env=ENV, timeout=300)
    subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                    str(HERE / 'ddp_worker.py'), str(two)], check=True, env=ENV, timeout=300)
    m1, m2 = (json.loads(f.with_suffix('.json').read_text()) for f in (one, two))
    assert (m1['world'], m2['world']) == (1, 2)                           # the second run really used two processes
    a, b = load_file(str(one)), load_file(str(two))
    assert a.keys() == b.keys() and {k.split('.')[0] for k in a} >= {'solver', 'ema', 'best', 'opt', 'rng'}
    assert any(k.startswith('opt.') and k.endswith('exp_avg_sq') for k in a)
    for k in a:
        if a[k].is_floating_point(): assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
        else: assert torch.equal(a[k], b[k]), k                          # step counters, RNG states
    h1, h2 = m1['history'], m2['history']
    assert h1['step'] == h2['step'] == list(range(12)) and h1['val_step'] == h2['val_step']
    assert h1['train'] == pytest.approx(h2['train'], rel=1e-4) and h1['val'] == pytest.approx(h2['val'], rel=1e-4)   # the loss of the global batch
    assert m1['best_val'] == pytest.approx(m2['best_val'], rel=1e-4)
