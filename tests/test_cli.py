"The `spanlift` console script: every command's help, JSON output and one-line errors on bad input."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

GAUSS = '''import torch
from spanlift_nb.analytic import gaussian_backbone
def make(seed=0):
    g = torch.Generator().manual_seed(seed)
    return gaussian_backbone(torch.randn(1, 8, 8, generator=g) * .5, torch.rand(1, 8, 8, generator=g) * .6 + .05)
def other():
    return make(1)
def _dies(sig):
    "make(), but the process gets signal `sig` during training step 7 (the 22nd backbone call on a batch of 32)"
    import os
    bb, n = make(), [0]
    def hook(m, args):
        n[0] += args[0].shape[0] == 32
        if n[0] == 3 * 7 + 1: os.kill(os.getpid(), sig)
    bb.net.register_forward_pre_hook(hook)
    return bb
def killed():
    import signal
    return _dies(signal.SIGKILL)
def stopped():
    import signal
    return _dies(signal.SIGTERM)
'''

@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    (d / 'gauss.py').write_text(GAUSS)
    return d

def run(ws, *args):
    env = dict(os.environ, SPANLIFT_CACHE=str(ws / 'cache'), OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    env.pop('SPANLIFT_DEBUG', None)
    return subprocess.run(['spanlift', *map(str, args)], capture_output=True, text=True, env=env, cwd=ws, timeout=600)

def ok_json(p):
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)

def one_line_error(p, *needles):
    assert p.returncode != 0 and p.stdout == ''
    assert p.stderr.count('\n') == 1 and 'Traceback' not in p.stderr, p.stderr
    for n in needles: assert n in p.stderr, p.stderr

@pytest.mark.parametrize('cmd', ['demo', 'fit-backbone', 'fit-solver', 'sample', 'eval', 'export', 'diagnose'])
def test_help_has_examples(ws, cmd):
    p = run(ws, cmd, '--help')
    assert p.returncode == 0 and f'usage: spanlift {cmd}' in p.stdout and 'examples:' in p.stdout and '--json' in p.stdout
    if cmd in ('sample', 'eval', 'export', 'diagnose'):                       # a trained solver is read from --checkpoint PATH
        assert '--checkpoint' in p.stdout and '--solver' not in p.stdout, p.stdout

def test_run_as_a_module(ws):
    "`python -m spanlift_nb.cli` knows every command, `export` (registered last) included"
    p = subprocess.run([sys.executable, '-m', 'spanlift_nb.cli', 'export', '--help'], capture_output=True, text=True, cwd=ws, timeout=300)
    assert p.returncode == 0 and 'usage: spanlift export' in p.stdout, p.stderr
    one_line_error(subprocess.run([sys.executable, '-m', 'spanlift_nb.cli', 'export', '--checkpoint', 'none.safetensors', '--backbone', '.', '--out', ws / 'gauss.py'],
                                  capture_output=True, text=True, cwd=ws, timeout=300), 'is an existing file')

def test_top_level_usage_and_unknown_command(ws):
    p = run(ws)
    assert p.returncode == 0 and all(c in p.stdout for c in ('demo', 'fit-backbone', 'fit-solver', 'sample', 'eval'))
    one_line_error(run(ws, 'frobnicate'), "unknown command 'frobnicate'")

def test_fit_backbone(ws):
    rng = np.random.default_rng(0)
    np.save(ws / 'imgs.npy', rng.integers(0, 256, (24, 8, 8), dtype=np.uint8))
    r = ok_json(run(ws, 'fit-backbone', '--data', ws / 'imgs.npy', '--kind', 'flow', '--steps', 3, '--batch', 8, '--out', ws / 'bb.safetensors', '--json'))
    assert r['shape'] == [1, 8, 8] and Path(r['out']).exists() and (ws / 'bb.json').exists()
    r = ok_json(run(ws, 'sample', '--backbone', ws / 'bb.safetensors', '--base', 'euler', '--nfe', 2, '--n', 4, '--out', ws / 'bb.npy', '--json'))
    assert r['nfe'] == 2 and np.load(ws / 'bb.npy').shape == (4, 1, 8, 8)
    one_line_error(run(ws, 'fit-backbone', '--data', ws / 'none.npy', '--out', ws / 'x.safetensors'), 'none.npy')
    np.save(ws / 'bad.npy', np.zeros((3, 4), dtype=np.float32))
    one_line_error(run(ws, 'fit-backbone', '--data', ws / 'bad.npy', '--out', ws / 'x.safetensors'))
    one_line_error(run(ws, 'fit-backbone', '--data', ws / 'imgs.npy', '--kind', 'score', '--out', ws / 'x.safetensors'), 'score')
    one_line_error(run(ws, 'fit-backbone', '--data', ws / 'imgs.npy'), '--out is required')

def _tensors(f):
    from safetensors.torch import load_file
    return load_file(str(f))

def _same_run(a, b):
    "Two checkpoints hold the same run: every tensor (raw weights, EMA, best, optimiser state, RNG states) bit for bit, and the same history"
    ta, tb = _tensors(a), _tensors(b)
    assert sorted(ta) == sorted(tb) and {k.split('.')[0] for k in ta} >= {'solver', 'ema', 'best', 'opt', 'rng'}
    assert any(k.startswith('opt.') and k.endswith('.exp_avg_sq') for k in ta) and any(k.startswith('opt.') and k.endswith('.step') for k in ta)
    first = sorted(k for k in ta if k.split('.')[0] in ('solver', 'opt'))     # raw weights and optimiser state first: the best EMA weights
    for k in first + sorted(set(ta) - set(first)):                             # may come from a validation before the cut
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and (ta[k] == tb[k]).all(), k
    ja, jb = (json.loads(f.with_suffix('.json').read_text()) for f in (a, b))
    assert ja['history']['step'] == list(range(ja['step'])) and ja['history']['train'] == jb['history']['train']   # the loss of every step
    assert (ja['history'], ja['best_val'], ja['step']) == (jb['history'], jb['best_val'], jb['step'])

def test_fit_solver_is_reproducible(ws):
    "The same command and --seed give the same weights, bit for bit (the operator's initialisation included)"
    common = ('fit-solver', '--backbone', f"{ws}/gauss.py:make", '--nfe', 3, '--pairs', 64, '--val', 32, '--batch', 16, '--width', 8, '--blocks', 1, '--steps', 4, '--scalar-steps', 4)
    for out in ('rep1', 'rep2'): ok_json(run(ws, *common, '--seed', 5, '--out', ws / f'{out}.safetensors', '--json'))
    _same_run(ws / 'rep1.safetensors', ws / 'rep2.safetensors')
    ok_json(run(ws, *common, '--seed', 6, '--out', ws / 'rep3.safetensors', '--json'))
    assert not (_tensors(ws / 'rep1.safetensors')['solver.op.out.weight'] == _tensors(ws / 'rep3.safetensors')['solver.op.out.weight']).all()

@pytest.mark.parametrize('death', ['killed', 'stopped'])
def test_resume_after_kill_is_exact(ws, death):
    "A run killed with SIGKILL (or stopped with SIGTERM) at step 7 and resumed ends exactly as the run that was never interrupted"
    common = ('--nfe', 3, '--pairs', 192, '--val', 64, '--batch', 32, '--width', 8, '--blocks', 1, '--steps', 10, '--ckpt-every', 3,
              '--staging', 'joint', '--base', 'euler')      # one stage, so the signal lands in the steps counted here
    whole, cut = ws / 'whole.safetensors', ws / f'{death}.safetensors'
    if not whole.exists(): ok_json(run(ws, 'fit-solver', '--backbone', f"{ws}/gauss.py:make", *common, '--out', whole, '--json'))
    p = run(ws, 'fit-solver', '--backbone', f"{ws}/gauss.py:{death}", *common, '--out', cut, '--json')
    assert p.returncode == (-9 if death == 'killed' else 130), p.stderr
    assert json.loads(cut.with_suffix('.json').read_text())['step'] == (6 if death == 'killed' else 8)     # the last checkpoint (every 3), or the one the signal wrote
    r = ok_json(run(ws, 'fit-solver', '--backbone', f"{ws}/gauss.py:make", *common, '--out', cut, '--resume', '--json'))
    assert r['steps'] == 10
    _same_run(whole, cut)

def test_fit_solver_resume_sample_eval(ws):
    spec = f"{ws}/gauss.py:make"
    common = ('--backbone', spec, '--nfe', 3, '--pairs', 192, '--val', 64, '--batch', 32)
    sl = ('--width', 8, '--blocks', 1, '--scalar-steps', 5)
    r = ok_json(run(ws, 'fit-solver', *common, *sl, '--method', 'spanlift', '--steps', 6, '--out', ws / 's.safetensors', '--json'))
    assert r['steps'] == 6 and (ws / 's.json').exists()
    r = ok_json(run(ws, 'fit-solver', *common, *sl, '--method', 'spanlift', '--steps', 6, '--out', ws / 's.safetensors', '--resume', '--json'))
    assert r['steps'] == 6 and json.loads((ws / 's.json').read_text())['step'] == 6      # finished: nothing more to do
    one_line_error(run(ws, 'fit-solver', *common, *sl, '--method', 'spanlift', '--steps', 10, '--out', ws / 's.safetensors', '--resume'),
                   'recipe.steps_spanlift 6 (checkpoint) != 10 (now)')
    r = ok_json(run(ws, 'eval', '--backbone', spec, '--checkpoint', ws / 's.safetensors', '--n', 64, '--json'))
    assert r['nfe'] == 3 and {'teacher_rmse', 'psnr'} <= set(r) and r['method'].startswith('spanlift')
    r = ok_json(run(ws, 'sample', '--backbone', spec, '--checkpoint', ws / 's.safetensors', '--n', 6, '--out', ws / 'g.png', '--json'))
    assert r['nfe'] == 3 and (ws / 'g.png').stat().st_size > 0
    r = ok_json(run(ws, 'fit-solver', *common, '--method', 'scalar', '--base', 'heun', '--steps', 4, '--out', ws / 'sc.safetensors', '--json'))
    assert r['method'] == 'scalar'
    # an incompatible checkpoint, a bad NFE, a bad method, a missing file: one line each
    one_line_error(run(ws, 'eval', '--backbone', f"{ws}/gauss.py:other", '--checkpoint', ws / 's.safetensors', '--n', 16), 'does not fit', 'backbone hash')
    one_line_error(run(ws, 'eval', '--backbone', spec, '--checkpoint', ws / 's.safetensors', '--nfe', 4, '--n', 16), 'NFE 3 != 4')
    one_line_error(run(ws, 'eval', '--backbone', spec, '--base', 'heun', '--nfe', 4), 'heun cannot spend exactly 4 NFE')
    one_line_error(run(ws, 'eval', '--backbone', spec, '--base', 'nope', '--nfe', 3), "valid solvers")
    one_line_error(run(ws, 'fit-solver', *common, '--method', 'magic', '--out', ws / 'm.safetensors'), "valid: spanlift, scalar")
    one_line_error(run(ws, 'sample', '--backbone', 'no-such-model', '--base', 'euler', '--nfe', 3, '--out', ws / 'x.png'), 'Unknown backbone')
    one_line_error(run(ws, 'sample', '--backbone', spec, '--base', 'euler', '--nfe', 3, '--out', ws / 'x.jpg'), '.png or .npy')
    one_line_error(run(ws, 'eval', '--backbone', spec, '--checkpoint', ws / 'missing.safetensors'), 'No checkpoint at')

def test_eval_json_contract_on_shipped_backbone(ws):
    r = ok_json(run(ws, 'eval', '--backbone', 'digits-flow', '--base', 'euler', '--nfe', 3, '--n', 64, '--json'))
    assert r['nfe'] == 3 and {'teacher_rmse', 'psnr', 'fid_clf', 'kid_clf', 'fid_clf_floor'} <= set(r)

def test_fit_solver_over_a_guidance_range(ws):
    "One solver for every scale in lo:hi: its JSON records the range, eval runs it inside and refuses outside; bad ranges are one line"
    np.save(ws / 'cimgs.npy', np.random.default_rng(1).integers(0, 256, (16, 8, 8), dtype=np.uint8)); np.save(ws / 'cy.npy', np.arange(16) % 4)
    ok_json(run(ws, 'fit-backbone', '--data', ws / 'cimgs.npy', '--labels', ws / 'cy.npy', '--steps', 3, '--batch', 8, '--out', ws / 'cond.safetensors', '--json'))
    cf, out = ('--backbone', ws / 'cond.safetensors', '--nfe', 3), ws / 'range.safetensors'
    r = ok_json(run(ws, 'fit-solver', *cf, '--method', 'scalar', '--pairs', 20, '--val', 5, '--steps', 2, '--batch', 4, '--guidance', '1:5', '--out', out, '--json'))
    assert r['guidance'] == [1.0, 5.0] and json.loads((ws / 'range.json').read_text())['guidance'] == [1.0, 5.0]
    r = ok_json(run(ws, 'eval', *cf[:2], '--checkpoint', out, '--n', 4, '--guidance', 4.5, '--json'))
    assert r['guidance'] == 4.5 and r['nfe'] == 3
    one_line_error(run(ws, 'eval', *cf[:2], '--checkpoint', out, '--n', 4, '--guidance', 6), 'outside the range', '1 to 5')
    one_line_error(run(ws, 'eval', *cf[:2], '--checkpoint', out, '--n', 4), 'covers guidance scales 1 to 5')
    for bad, msg in (('1:5:7', 'malformed'), ('5:1', 'lo < hi'), ('2:2', 'lo < hi'), ('nan:5', 'finite number >= 0'), ('-1:5', 'finite number >= 0'), ('a:5', 'must be a number')):
        one_line_error(run(ws, 'fit-solver', *cf, f'--guidance={bad}', '--out', ws / 'x.safetensors'), msg)
    one_line_error(run(ws, 'fit-solver', '--backbone', f"{ws}/gauss.py:make", '--guidance', '1:5', '--out', ws / 'x.safetensors'), 'needs a class-conditional backbone')


def test_diagnose_predicts_a_gain(ws):
    r = ok_json(run(ws, 'diagnose', '--backbone', 'gauss.py:make', '--nfe', '3', '--pairs', '64', '--json'))
    assert 0 <= r['rho_needed'] <= 1 and r['recommendation'] and r['law']['settings'] >= 2, r
    one_line_error(run(ws, 'diagnose', '--backbone', 'gauss.py:make', '--seed', '1'), 'held-out seed')
    one_line_error(run(ws, 'diagnose', '--backbone', 'gauss.py:make', '--checkpoint', 'missing.safetensors'), 'missing.safetensors')

def test_fit_solver_trains_the_recipe_that_compare_trains(ws):
    "`fit-solver --method spanlift` and `evaluate.compare` build the same SpanLift (config and recipe) from the same inputs"
    from spanlift_nb.evaluate import compare
    from spanlift_nb.train import load_solver
    sizes = dict(n_train=64, n_val=32, batch=16, steps_scalar=3, steps_spanlift=3)
    r = ok_json(run(ws, 'fit-solver', '--backbone', f"{ws}/gauss.py:make", '--nfe', 3, '--pairs', 64, '--val', 32, '--batch', 16, '--steps', 3,
                    '--scalar-steps', 3, '--width', 8, '--blocks', 1, '--seed', 4, '--out', ws / 'recipe.safetensors', '--json'))
    c = compare(f"{ws}/gauss.py:make", 3, n_test=16, spanlift_kw=dict(width=8, blocks=1), seed=4, fid=False, progress=False,
                cache_dir=ws / 'cache', **sizes)
    cli, meta = load_solver(ws / 'recipe.safetensors')
    assert cli.config() == c['solvers']['spanlift'].config() and (r['base'], r['schedule']) == (c['config']['base'], c['config']['schedule'])
    assert meta['recipe'] == r['recipe'] and {k: meta['recipe'][k] for k in c['config']['recipe']} == c['config']['recipe']
