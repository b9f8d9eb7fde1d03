"""A run cut short and resumed from its checkpoint ends as the run that was never cut: the RAW solver weights (not only the best
EMA ones, which can come from a validation before the cut), every tensor of the optimiser state with its step counts, and the loss
of every step. In process, with `fit_solver(checkpoint=, resume=)`; `test_cli.py` does the same through the console script and
`test_ddp.py` under torchrun."""
import pytest, torch
from spanlift_nb.analytic import gaussian_backbone
from spanlift_nb.solvers import start_noise
from spanlift_nb.teacher import TeacherPairs
from spanlift_nb.scalar import ScalarSolver
from spanlift_nb.spanlift import SpanLift
from spanlift_nb.train import fit_solver, read_checkpoint, TrainConfig

torch.set_num_threads(1)
SHAPE, BATCH = (1, 8, 8), 32

@pytest.fixture(scope='module')
def setup():
    g = torch.Generator().manual_seed(0)
    gb = gaussian_backbone(torch.randn(*SHAPE, generator=g) * .5, torch.rand(*SHAPE, generator=g) * .6 + .05)
    z = start_noise(gb.path, SHAPE, 384, seed=1)
    tr, va = TeacherPairs(z, gb.net.solve(z, 1.0, 0.0), 'exact').split(64)
    return gb, tr, va

def make(kind, gb):
    torch.manual_seed(0)
    if kind == 'scalar': return ScalarSolver('euler', 3, gb.path)
    s = SpanLift('euler', 3, gb.path, SHAPE, width=8, blocks=1)
    with torch.no_grad(): s.op.out.weight.normal_(std=0.01)        # every layer gets gradients from the first step
    return s

class Cut:
    "A forward hook on the backbone that raises on the first training call (a batch of BATCH rows) of step `at`, like a killed process"
    def __init__(self, gb, at, calls_per_step=3):
        self.n, self.first = 0, calls_per_step * at + 1
        self.h = gb.net.register_forward_pre_hook(self)
    def __call__(self, m, args):
        self.n += args[0].shape[0] == BATCH
        if self.n == self.first: raise RuntimeError('power cut')
    def __enter__(self): return self
    def __exit__(self, *exc): self.h.remove()

def whole_and_resumed(tmp_path, setup, kind, cfg, cut):
    "Checkpoints and results of a run never cut, and of one cut at step `cut` and resumed"
    gb, tr, va = setup
    a, b = tmp_path / 'whole.safetensors', tmp_path / 'cut.safetensors'
    fa = fit_solver(make(kind, gb), gb, tr, va, cfg, checkpoint=a, progress=False)
    with Cut(gb, cut), pytest.raises(RuntimeError, match='power cut'):
        fit_solver(make(kind, gb), gb, tr, va, cfg, checkpoint=b, progress=False)
    saved = read_checkpoint(b)[1]['step']
    assert saved == cut // cfg.ckpt_every * cfg.ckpt_every and saved < cut          # the run really restarts from an earlier step
    fb = fit_solver(make(kind, gb), gb, tr, va, cfg, checkpoint=b, resume=True, progress=False)
    return read_checkpoint(a), read_checkpoint(b), fa, fb

def assert_same_run(ta, ma, tb, mb):
    raw = sorted(k for k in ta if k.startswith('solver.'))
    opt = sorted(k for k in ta if k.startswith('opt.'))
    assert raw and any(k.endswith('.exp_avg_sq') for k in opt) and any(k.endswith('.step') for k in opt)
    assert sorted(ta) == sorted(tb)
    for k in raw + opt:                                   # raw weights; AdamW's moments and step count for every parameter
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    for k in ta: assert torch.equal(ta[k], tb[k]), k      # and the rest: EMA, best EMA, both RNG states
    assert mb['history']['step'] == list(range(mb['step']))
    assert mb['history']['train'] == ma['history']['train']        # the loss of every step, bit for bit
    assert (mb['step'], mb['history'], mb['best_val']) == (ma['step'], ma['history'], ma['best_val'])

@pytest.mark.parametrize('kind, lr, cut', [('spanlift', 3e-3, 10), ('scalar', 1e-1, 14)])
def test_resume_is_exact(tmp_path, setup, kind, lr, cut):
    "Cut between two checkpoints (every 4 steps) and two validations (every 6): every step after the checkpoint is redone exactly"
    cfg = TrainConfig(steps=16, batch=BATCH, val_every=6, ckpt_every=4, lr=lr, warmup=4, ema=0.9)
    (ta, ma), (tb, mb), fa, fb = whole_and_resumed(tmp_path, setup, kind, cfg, cut=cut)
    h = ma['history']
    assert len(h['train']) == 16 and h['val_step'] == [6, 12, 16]
    if kind == 'scalar':      # the best validation (step 12) is at the checkpoint, before the cut: the best EMA weights alone cannot tell the runs apart
        assert h['val_step'][h['val'].index(min(h['val']))] == 12
    assert_same_run(ta, ma, tb, mb)
    assert (fa.step, fa.history, fa.best_val) == (fb.step, fb.history, fb.best_val)
    for k, v in fa.solver.state_dict().items(): assert torch.equal(v, fb.solver.state_dict()[k]), k

def test_resume_is_exact_with_early_stopping(tmp_path, setup):
    "With patience, the resumed run stops at the step where the run never cut stopped"
    cfg = TrainConfig(steps=60, batch=BATCH, val_every=2, ckpt_every=2, patience=2, lr=3e-3, warmup=1, ema=0.0)
    gb, tr, va = setup
    stop = fit_solver(make('scalar', gb), gb, tr, va, cfg, progress=False).step
    assert stop < cfg.steps                                                  # the run never cut stops early, after two bad validations
    # cut just before the second: the checkpoint (one step earlier) was written after the first
    (ta, ma), (tb, mb), fa, fb = whole_and_resumed(tmp_path, setup, 'scalar', cfg, cut=stop - 1)
    assert_same_run(ta, ma, tb, mb)
