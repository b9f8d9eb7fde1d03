"SpanLiftScheduler on tiny random diffusers models: the same samples as the package with exactly NFE model calls, in a loop, in DDPMPipeline and under guidance; saving, loading, `spanlift export`, and one-line errors."
import json, os, subprocess, sys
import pytest
import torch

d = pytest.importorskip('diffusers')
d.utils.logging.set_verbosity_error()
from diffusers.utils.torch_utils import randn_tensor
from spanlift_nb.core import Backbone, count_nfe, weights_hash
from spanlift_nb.adapters import load_folder, grid_from_timesteps
from spanlift_nb.scalar import ScalarSolver
from spanlift_nb.spanlift import SpanLift
from spanlift_nb.teacher import teacher_pairs
from spanlift_nb.train import fit_solver, save_checkpoint, TrainConfig
from spanlift_nb.scheduler import SpanLiftScheduler, model_timesteps

SCHEDULERS = {'eps': lambda: d.DDPMScheduler(), 'v': lambda: d.DDPMScheduler(prediction_type='v_prediction'),
              'flow': lambda: d.FlowMatchEulerDiscreteScheduler()}
SHAPE = (3, 8, 8)

def tiny_folder(root, kind, name=None, seed=0, **kw):
    torch.manual_seed(seed)
    unet = d.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                         down_block_types=('DownBlock2D',) * 2, up_block_types=('UpBlock2D',) * 2, **kw)
    d.DDPMPipeline(unet=unet, scheduler=SCHEDULERS[kind]()).save_pretrained(root / (name or kind))
    return root / (name or kind)

@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('sched')
    for k in SCHEDULERS: tiny_folder(r, k)
    return r

def perturbed(solver, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in solver.parameters(): p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return solver

def trained(solver, bb, steps=3):
    "The solver after a few steps of endpoint matching on a cheap teacher"
    pairs = teacher_pairs(bb, 12, seed=0, shape=SHAPE, method='heun', steps=4, cache_dir=None, progress=False)
    r = fit_solver(solver, bb, *pairs.split(4), TrainConfig(steps=steps, batch=4, warmup=1, ema=0.0, val_every=steps, lr=0.05), device='cpu', progress=False)
    return r.solver

class Counter:
    "Counts the calls of a module through a forward hook"
    def __init__(self, m): self.n = 0; self.h = m.register_forward_hook(self.hook)
    def hook(self, *a): self.n += 1
    def __enter__(self): return self
    def __exit__(self, *a): self.h.remove()

def loop(sched, unet, x):
    sched.set_timesteps(sched.learned_solver.nfe)
    with torch.no_grad(), Counter(unet) as c:
        for t in sched.timesteps: x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x).prev_sample
    return x, c.n

def test_without_diffusers_the_import_says_how_to_install():
    code = "import sys; sys.modules['diffusers'] = None\ntry: import spanlift_nb.scheduler\nexcept ImportError as e: print(e)"
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert p.returncode == 0 and 'pip install "spanlift-nb[diffusers]"' in p.stdout, p.stderr

def test_timestep_conventions():
    t = torch.tensor([1.0, 0.61, 0.2, 0.013], dtype=torch.float64)
    assert torch.allclose(grid_from_timesteps(model_timesteps(t, 'vp'), 1000, final=None), t, atol=1e-6)
    fm = d.FlowMatchEulerDiscreteScheduler(); fm.set_timesteps(5)
    assert torch.allclose(model_timesteps(fm.sigmas[:-1], 'flow'), fm.timesteps, atol=1e-3)

def make_solver(kind, bb):
    if kind == 'eps': return ScalarSolver('dpmpp_2m', 3, bb.path)
    if kind == 'v': return SpanLift('ddim', 3, bb.path, SHAPE, width=8, blocks=1)
    return SpanLift('euler', 3, bb.path, SHAPE, width=8, blocks=1)

@pytest.mark.parametrize('kind', ['eps', 'v', 'flow'])
def test_loop_gives_the_package_samples(root, kind):
    bb = load_folder(root / kind)
    solver = trained(make_solver(kind, bb), bb) if kind == 'flow' else perturbed(make_solver(kind, bb))
    x0 = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), count_nfe(bb) as c: ref = solver(bb, x0)
    with torch.no_grad(): assert (make_solver(kind, bb)(bb, x0) - ref).abs().max() > 1e-4    # not the base solver
    y, calls = loop(SpanLiftScheduler.from_solver(solver, bb), bb.net.model, x0)
    err = float((y - ref).abs().max())
    print(f"{kind}: NFE package {c.n}, loop {calls}, max abs diff {err:.2e}")
    assert calls == c.n == 3 and err <= 1e-4

def test_heun_repeats_times_and_still_matches(root):
    bb = load_folder(root / 'flow')
    solver = perturbed(ScalarSolver('heun', 5, bb.path))
    x0 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(): ref = solver(bb, x0)
    y, calls = loop(SpanLiftScheduler.from_solver(solver, bb), bb.net.model, x0)
    assert calls == 5 and float((y - ref).abs().max()) <= 1e-4

def test_stock_ddpm_pipeline(root):
    bb = load_folder(root / 'eps')
    solver = perturbed(SpanLift('dpmpp_2m', 3, bb.path, SHAPE, width=8, blocks=1))
    pipe = d.DDPMPipeline(unet=bb.net.model, scheduler=SpanLiftScheduler.from_solver(solver, bb)); pipe.set_progress_bar_config(disable=True)
    with Counter(bb.net.model) as c:
        imgs = pipe(batch_size=3, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type='pt').images
    noise = randn_tensor((3, *SHAPE), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): ref = (solver(bb, noise) / 2 + 0.5).clamp(0, 1)
    assert c.n == 3 and float((imgs - ref).abs().max()) <= 1e-4
    with pytest.raises(ValueError, match='trained for 3 NFE; set_timesteps got 50'): pipe(num_inference_steps=50)

class Guided(torch.nn.Module):
    def __init__(self, net, labels, null, w): super().__init__(); self.net, self.labels, self.null, self.w = net, labels, null, w
    def forward(self, x, t):
        c, u = self.net(x, t, class_labels=self.labels), self.net(x, t, class_labels=torch.full_like(self.labels, self.null))
        return u + self.w * (c - u)

def test_classifier_free_guidance(root):
    cond = load_folder(tiny_folder(root, 'v', 'cond', seed=3, num_class_embeds=4))
    y, null, w = torch.tensor([0, 1, 2]), 3, 3.0
    guided = Backbone(Guided(cond.net, y, null, w), cond.path, cond.prediction, cond.time_map, meta=cond.meta)
    solver = perturbed(SpanLift('dpmpp_2m', 3, cond.path, SHAPE, width=8, blocks=1))
    sched, unet = SpanLiftScheduler.from_solver(solver, guided), cond.net.model
    x0 = x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(4))
    sched.set_timesteps(3)
    with torch.no_grad(), Counter(unet) as calls:
        for t in sched.timesteps:
            c, u = unet(torch.cat([x, x]), t, class_labels=torch.cat([y, torch.full_like(y, null)])).sample.chunk(2)
            x = sched.step(u + w * (c - u), t, x, generator=torch.Generator()).prev_sample
    with torch.no_grad(): ref = solver(guided, x0)
    assert calls.n == 3 and float((x - ref).abs().max()) <= 1e-4

@pytest.fixture(scope='module')
def exported(root):
    bb = load_folder(root / 'eps')
    solver = perturbed(SpanLift('ddim', 3, bb.path, SHAPE, width=8, blocks=1))
    save_checkpoint(root / 's.safetensors', solver, dict(backbone=weights_hash(bb), shape=list(SHAPE)))
    SpanLiftScheduler.from_solver(root / 's.safetensors', root / 'eps').save_pretrained(root / 'out')
    return root / 'out', solver, bb

def test_save_and_load_back(exported):
    out, solver, bb = exported
    assert sorted(p.name for p in out.iterdir()) == ['scheduler_config.json', 'spanlift_solver.safetensors']
    x0 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(5))
    y, calls = loop(SpanLiftScheduler.from_pretrained(out), bb.net.model, x0)
    with torch.no_grad(): assert calls == 3 and float((y - solver(bb, x0)).abs().max()) <= 1e-4

def test_one_line_errors(root, exported):
    out, _, _ = exported
    s = SpanLiftScheduler.from_pretrained(out)
    x = torch.zeros(1, *SHAPE)
    for f, msg in [(lambda: s.step(x, 999, x), 'before set_timesteps'), (lambda: s.set_timesteps(4), 'trained for 3 NFE; set_timesteps got 4'),
                   (lambda: SpanLiftScheduler.from_pretrained(out, prediction_type='v_prediction'), "predicts 'epsilon'"),
                   (lambda: SpanLiftScheduler.from_solver(root / 's.safetensors', tiny_folder(root, 'eps', 'other', seed=9)), 'backbone hash'),
                   (lambda: SpanLiftScheduler.from_pretrained(root / 'eps'), 'No scheduler_config.json')]:
        with pytest.raises((ValueError, FileNotFoundError), match=msg) as e: f()
        assert '\n' not in str(e.value)
    s.set_timesteps(3)
    with pytest.raises(ValueError, match='next one is'): s.step(x, 1.0, x)
    bad = root / 'bad'; bad.mkdir()
    (bad / 'scheduler_config.json').write_text((out / 'scheduler_config.json').read_text())
    with pytest.raises(FileNotFoundError, match='spanlift_solver.safetensors'): SpanLiftScheduler.from_pretrained(bad)
    (bad / 'spanlift_solver.safetensors').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='spanlift_solver.safetensors is not a readable safetensors file'): SpanLiftScheduler.from_pretrained(bad)

def spanlift(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg', DIFFUSERS_VERBOSITY='error')   # no notice about the optional `accelerate`
    env.pop('SPANLIFT_DEBUG', None)
    return subprocess.run(['spanlift', *map(str, args)], capture_output=True, text=True, env=env, timeout=600)

def test_cli_export(root, exported):
    p = spanlift('export', '--solver', root / 's.safetensors', '--backbone', root / 'eps', '--out', root / 'cli-out', '--json')
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r['method'], r['nfe'], r['prediction_type'], len(r['timesteps'])) == ('spanlift', 3, 'epsilon', 3)
    assert (root / 'cli-out' / 'scheduler_config.json').read_text() == (exported[0] / 'scheduler_config.json').read_text()
    assert 'examples:' in spanlift('export', '--help').stdout
    for args, msg in [(('--solver', root / 's.safetensors', '--backbone', tiny_folder(root, 'eps', 'other2', seed=11), '--out', root / 'x'), 'backbone hash'),
                      (('--solver', root / 's.safetensors', '--backbone', root / 'eps'), '--out is required')]:
        p = spanlift('export', *args)
        assert p.returncode == 2 and p.stderr.count('\n') == 1 and msg in p.stderr, p.stderr
