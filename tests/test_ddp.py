"Two CPU processes under torchrun (gloo) give the same trained solver as one process with the same global batch."
import os, sys, subprocess
from pathlib import Path
import torch
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

HERE = Path(__file__).parent
ENV = dict(os.environ, OMP_NUM_THREADS='1')

def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / 'one.safetensors', tmp_path / 'two.safetensors'
    subprocess.run([sys.executable, str(HERE / 'ddp_worker.py'), str(one)], check=True, env=ENV, timeout=300)
    subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                    str(HERE / 'ddp_worker.py'), str(two)], check=True, env=ENV, timeout=300)
    assert _meta(one)['world'] == '1' and _meta(two)['world'] == '2'      # the second run really used two processes
    a, b = load_file(str(one)), load_file(str(two))
    assert a.keys() == b.keys()
    for k in a: assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert float(_meta(one)['best_val']) == pytest.approx(float(_meta(two)['best_val']), rel=1e-4)

def _meta(f):
    with safe_open(str(f), 'pt') as h: return h.metadata()
