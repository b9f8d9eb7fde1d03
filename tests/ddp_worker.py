"""Train a small SpanLift on the exact Gaussian; run alone or under torchrun.
Usage: ddp_worker.py OUT.safetensors [--cut N] [--resume]   (OUT: a checkpoint, written by process 0;
--cut N: every process fails at the start of step N, like a killed job; --resume: continue from OUT)"""
import sys, torch, torch.distributed as dist
from spanlift_nb.analytic import gaussian_backbone
from spanlift_nb.solvers import start_noise
from spanlift_nb.teacher import TeacherPairs
from spanlift_nb.spanlift import SpanLift
from spanlift_nb.train import fit_solver, TrainConfig, init_distributed

torch.set_num_threads(1)
args = sys.argv[1:]
out, resume = args[0], '--resume' in args
cut = int(args[args.index('--cut') + 1]) if '--cut' in args else None
rank, world = init_distributed()
cfg = TrainConfig(steps=12, batch=32, val_every=6, ckpt_every=4, ema=0.9, lr=3e-3)
g = torch.Generator().manual_seed(0)
gb = gaussian_backbone(torch.randn(1, 8, 8, generator=g) * .5, torch.rand(1, 8, 8, generator=g) * .6 + .05)
z = start_noise(gb.path, (1, 8, 8), 320, seed=1)
pairs = TeacherPairs(z, gb.net.solve(z, 1.0, 0.0), 'exact')
tr, va = pairs.split(64)
if cut is not None:
    calls = [0]
    def hook(m, a):              # 3 backbone calls per step (euler, NFE 3) on this process's slice of the batch
        calls[0] += a[0].shape[0] == cfg.batch // world
        if calls[0] == 3 * cut + 1: raise RuntimeError(f'process {rank} cut at step {cut}')
    gb.net.register_forward_pre_hook(hook)
torch.manual_seed(0)
solver = SpanLift('euler', 3, gb.path, (1, 8, 8), width=16, blocks=1)
with torch.no_grad(): solver.op.out.weight.normal_(std=0.01)      # so every layer gets gradients from the first step
fit_solver(solver, gb, tr, va, cfg, progress=False, checkpoint=out, resume=resume, meta=dict(world=world))
if world > 1: dist.destroy_process_group()
