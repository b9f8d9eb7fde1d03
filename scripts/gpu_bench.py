#!/usr/bin/env python
"""The GPU check of spanlift-nb: notebooks' `#| cuda` cells, throughput at CIFAR-10 scale, and DDP equivalence, in ONE JSON file.

Run it through `scripts/gpu_check.sh` (which sets the environment). Sub-commands:

  gpu_bench.py all   --out FILE [--dry-run] [--budget S] [--phases env,nbdev,ddp,bench]
      the orchestrator: runs each phase in its own process with a time limit and merges what it reports into FILE,
      rewritten after every phase, so a crash or a timeout still leaves every figure measured so far.
  gpu_bench.py phase NAME --part FILE [--dry-run] [--budget S]
      one phase (env, nbdev, ddp or bench), writing its own JSON to FILE.
  gpu_bench.py ddp-worker --setup DIR --runs cpu_gloo=cpu,device_gloo=cuda:0
      one process of the DDP check's 2-process runs, under torchrun (gloo; both ranks on one GPU).

`--dry-run` runs every phase through the same code on the CPU with tiny sizes (about 35 s of CPU time, most of it
starting Python processes) and writes the same keys; tests/test_gpu_check.py runs it in CI. Nothing is installed or downloaded, and nothing is written
under bench/: the lead copies the figures there from the JSON.
"""
from __future__ import annotations
import argparse, json, os, platform, re, resource, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
PHASES = ('env', 'nbdev', 'ddp', 'bench')
CAPS = dict(env=60, nbdev=150, ddp=150, bench=300)       # seconds each phase may take at most (GPU run)
RESERVE = dict(env=10, nbdev=30, ddp=40, bench=90)       # seconds kept back for each later phase

# The benchmark U-Net: DDPM's CIFAR-10 layout (Ho et al. 2020: 128 channels, multipliers 1-2-2-2, 2 blocks per level),
# 36,988,803 parameters with our blocks; the dry run uses a tiny one of the same shape of code.
UNET_GPU = dict(in_ch=3, base=128, mults=(1, 2, 2, 2), blocks=2, mid_attn=True)
UNET_DRY = dict(in_ch=3, base=8, mults=(1, 2), blocks=1, mid_attn=True)
SHAPE = (3, 32, 32)

def log(*a):
    print(*a, flush=True)

def write_json(path, obj):
    "Write `obj` as JSON atomically (no spanlift_nb import: the orchestrator must work even if the package does not)"
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)

# ---------------------------------------------------------------------------------------------------------------------
# Orchestrator

def _run_logged(cmd, timeout, env=None, cwd=ROOT, tail_chars=4000):
    "Run `cmd` in its own process group, echo its output live, and keep its tail; kill the group at `timeout`"
    t0, ru0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env,
                         start_new_session=True, bufsize=1)
    buf = []
    def pump():
        for line in p.stdout:
            sys.stdout.write(line); sys.stdout.flush(); buf.append(line)
            if len(buf) > 400: del buf[:200]
    th = threading.Thread(target=pump, daemon=True); th.start()
    timed_out = False
    try: p.wait(timeout=max(1, timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        try: os.killpg(p.pid, signal.SIGTERM)                  # the group of the process we started, by its id
        except ProcessLookupError: pass
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try: os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError: pass
            p.wait()
    th.join(timeout=5)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    return dict(returncode=p.returncode, timed_out=timed_out, seconds=round(time.time() - t0, 2), cpu_s=round(cpu, 2),
                log_tail=''.join(buf)[-tail_chars:])

def main_all(a):
    out = Path(a.out)
    phases = [p.strip() for p in a.phases.split(',') if p.strip()]
    bad = [p for p in phases if p not in PHASES]
    if bad: sys.exit(f"unknown phase(s) {bad}; valid: {', '.join(PHASES)}")
    t0 = time.time(); deadline = t0 + a.budget
    res = dict(schema=1, dry_run=a.dry_run, started=time.strftime('%Y-%m-%dT%H:%M:%S%z'), budget_s=a.budget,
               command=' '.join(sys.argv), ok=False, seconds=None, problems=[], phases={}, **{p: {} for p in PHASES})
    write_json(out, res)
    log(f"== gpu_check: phases {phases}, budget {a.budget} s, JSON -> {out}" + (' (dry run)' if a.dry_run else ''))
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp:
        for i, name in enumerate(phases):
            later = sum(RESERVE[p] for p in phases[i + 1:])
            limit = int(min(CAPS[name] if not a.dry_run else 240, deadline - time.time() - later))
            if limit < 5:
                res['phases'][name] = dict(ok=False, error=f'skipped: only {limit} s of the budget left'); write_json(out, res); continue
            log(f"\n== phase {name} (limit {limit} s)")
            part = Path(tmp) / f'{name}.json'
            cmd = [sys.executable, str(HERE), 'phase', name, '--part', str(part), '--budget', str(limit)] + (['--dry-run'] if a.dry_run else [])
            r = _run_logged(cmd, limit)
            data = json.loads(part.read_text()) if part.exists() else {}
            res[name] = data
            ok = r['returncode'] == 0 and not r['timed_out'] and bool(data.get('ok', False))
            err = None if ok else ('timed out' if r['timed_out'] else data.get('error') or f"exit code {r['returncode']}")
            res['phases'][name] = dict(ok=ok, error=err, **{k: v for k, v in r.items() if k != 'log_tail'},
                                       log_tail=r['log_tail'] if not ok else r['log_tail'][-1500:])
            res['seconds'] = round(time.time() - t0, 1)
            write_json(out, res)
    res['ok'] = all(res['phases'].get(p, {}).get('ok') for p in phases)
    res['problems'] = [f'{p}: {res["phases"][p]["error"]}' for p in phases if not res['phases'][p].get('ok')] + \
                      list((res.get('bench') or {}).get('problems', []))
    res['seconds'] = round(time.time() - t0, 1)
    write_json(out, res)
    log(f"\n== gpu_check {'PASSED' if res['ok'] else 'FAILED'} in {res['seconds']} s: " +
        ', '.join(f"{p} {'ok' if res['phases'][p]['ok'] else 'FAIL'}" for p in phases) + f"\n== JSON: {out}")
    _summary(res)
    return 0 if res['ok'] else 1

def _summary(res):
    "A few headline figures on stdout (each line only if its part ran)"
    b = res.get('bench') or {}
    def line(f):
        try: log('   ' + f())
        except (KeyError, TypeError, ValueError): pass
    line(lambda: f"U-Net {b['unet']['params']:,} parameters, {b['unet']['gflops_per_image']} GFLOP/image, on {b['device_name']}")
    t = b.get('teacher') or {}
    line(lambda: f"teacher: heun {t['heun']['pairs_per_s']:.1f} pairs/s at {t['heun']['nfe_per_sample']} NFE "
                 f"({t['heun']['evals_per_s']:.0f} image-evals/s, batch {t['batch']})")
    line(lambda: f"teacher: dopri5 (flow view) {t['dopri5']['pairs_per_s']:.1f} pairs/s at {t['dopri5']['nfe_per_sample']:.0f} NFE; "
                 f"euler NFE 3 {t['base_euler_nfe3']['images_per_s']:.0f} images/s")
    tr = b.get('train') or {}
    line(lambda: f"training at NFE 3, batch {tr['batch']}: spanlift {tr['spanlift']['it_per_s']:.2f} it/s, scalar {tr['scalar']['it_per_s']:.2f} it/s")
    for k, v in (b.get('sample') or {}).items():
        if isinstance(v, dict) and 'base_images_per_s' in v:
            line(lambda: f"sampling {k}: euler {v['base_images_per_s']:.0f} images/s, spanlift {v['spanlift_images_per_s']:.0f} "
                         f"images/s (operator overhead {100 * v['overhead']:.1f}%)")
    d = res.get('ddp') or {}
    for k in ('cpu_gloo', 'device_gloo'):
        line(lambda: f"ddp {k} ({d[k]['device']}): max abs diff {d[k]['max_abs_diff']:.3g}, relative L2 {d[k]['rel_l2_diff']:.3g}, "
                     f"match {d[k]['match']}")
    n = res.get('nbdev') or {}
    line(lambda: f"nbdev-test --flags cuda: {n['n_passed']}/{len(n['notebooks'])} notebooks passed")
    for p in res.get('problems', []): log(f"   PROBLEM {p}")

# ---------------------------------------------------------------------------------------------------------------------
# Phases

def main_phase(a):
    t0 = time.time()
    out = dict(ok=False)
    try:
        out.update(dict(env=phase_env, nbdev=phase_nbdev, ddp=phase_ddp, bench=phase_bench)[a.name](a))
    except BaseException as e:
        import traceback; traceback.print_exc()
        out['error'] = f'{type(e).__name__}: {e}'
        if isinstance(e, KeyboardInterrupt): raise
    finally:
        out['seconds'] = round(time.time() - t0, 2)
        write_json(a.part, out)
    return 0 if out.get('ok') else 1

def _version(mod):
    try:
        m = __import__(mod)
        return getattr(m, '__version__', 'present')
    except Exception as e: return f'MISSING ({type(e).__name__}: {e})'

def phase_env(a):
    import torch
    r = dict(python=platform.python_version(), executable=sys.executable, platform=platform.platform(),
             cpu_count=os.cpu_count(), torch=torch.__version__, cuda_available=torch.cuda.is_available(),
             cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             gloo=torch.distributed.is_available() and torch.distributed.is_gloo_available(),
             nccl=torch.distributed.is_available() and torch.distributed.is_nccl_available(),
             packages={m: _version(m) for m in ('numpy', 'fastcore', 'fastprogress', 'safetensors', 'torchdiffeq', 'matplotlib',
                                                 'nbdev', 'execnb', 'IPython', 'spanlift_nb', 'cleanfid', 'torchvision')},
             env={k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'GLOO_SOCKET_IFNAME', 'PYTHONPATH', 'CUDA_VISIBLE_DEVICES')})
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        r.update(gpu_count=torch.cuda.device_count(), device_name=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1),
                 sm_count=p.multi_processor_count, capability=f'{p.major}.{p.minor}', bf16_supported=torch.cuda.is_bf16_supported())
    else: r.update(gpu_count=0, device_name=f'cpu ({platform.processor() or platform.machine()})')
    try: r['git_commit'] = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception: r['git_commit'] = None
    if shutil.which('nvidia-smi'):
        q = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version,clocks.max.sm', '--format=csv,noheader'],
                           capture_output=True, text=True, timeout=30)
        r['nvidia_smi'] = q.stdout.strip() or q.stderr.strip()
    missing = [m for m, v in r['packages'].items() if str(v).startswith('MISSING') and m not in ('cleanfid', 'torchvision')]
    log(f"python {r['python']}, torch {r['torch']}, cuda {r['cuda']}, device {r['device_name']}; missing: {missing or 'none'}")
    if not a.dry_run and not torch.cuda.is_available(): return dict(r, ok=False, error='no CUDA device (run with --dry-run on a CPU machine)')
    return dict(r, missing=missing, ok=not missing)

# -- nbdev: the notebooks' `#| cuda` cells ----------------------------------------------------------------------------

CUDA_FLAG = re.compile(r'^\s*#\|\s*cuda\s*$')

def n_cuda_cells(f: Path) -> int:
    "How many code cells of a notebook are flagged `#| cuda`"
    try: cells = json.loads(Path(f).read_text())['cells']
    except Exception: return 0
    src = lambda c: c['source'] if isinstance(c['source'], str) else ''.join(c['source'])
    return sum(c['cell_type'] == 'code' and any(CUDA_FLAG.match(l) for l in src(c).splitlines()) for c in cells)

def cuda_notebooks(nbs=ROOT / 'nbs'):
    "Notebooks under nbs/ with at least one code cell flagged `#| cuda` (nbdev's skip rules for names starting _ or .)"
    return [f for f in sorted(nbs.rglob('*.ipynb'))
            if not any(part.startswith(('_', '.')) for part in f.relative_to(nbs).parts) and n_cuda_cells(f)]

SMOKE_NB_SRC = ["#| cuda\nimport torch\nfrom pathlib import Path\nPath('cuda_cell_ran').write_text(str(torch.cuda.is_available()))",
                "#| slow\nraise RuntimeError('a #| slow cell ran under --flags cuda')",
                "import os\nassert os.environ.get('IN_TEST') == '1'"]

def _smoke_project(d: Path) -> Path:
    "A one-notebook nbdev project (dry run): a `#| cuda` cell that must run and a `#| slow` cell that must not"
    (d / 'pyproject.toml').write_text('[project]\nname = "gpu-check-smoke"\nversion = "0.0.0"\n\n[tool.nbdev]\n'
                                      'tst_flags = "notest slow cuda"\njupyter_hooks = false\n')
    cells = [dict(cell_type='code', execution_count=None, id=f'c{i}', metadata={}, outputs=[], source=s) for i, s in enumerate(SMOKE_NB_SRC)]
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')), nbformat=4, nbformat_minor=5)
    (d / 'smoke.ipynb').write_text(json.dumps(nb))
    return d / 'smoke.ipynb'

# `nbdev-test --flags cuda NB`, called as a function: the console script may not be on PATH where wheels were
# installed with --target. (Called with keyword arguments, fastcore's call_parse does not read sys.argv.)
NBDEV_TEST = ("import sys; from nbdev.test import nbdev_test; "
              "nbdev_test(path=sys.argv[1], flags=sys.argv[2], n_workers=0, do_print=True, timing=True)")

def phase_nbdev(a):
    import torch
    t_end = time.time() + a.budget - 5
    real = cuda_notebooks()
    r = dict(flags='cuda', command='nbdev-test --flags cuda NOTEBOOK', cuda_notebooks=[str(f.relative_to(ROOT)) for f in real],
             notebooks=[])
    with tempfile.TemporaryDirectory(prefix='nbsmoke_') as d:
        if a.dry_run:      # no GPU here: run the same runner on a smoke notebook instead of the real `#| cuda` cells
            targets, r['target'] = [_smoke_project(Path(d))], 'smoke notebook (dry run: the real #| cuda cells need a GPU)'
        else: targets, r['target'] = real, 'nbs/ notebooks with #| cuda cells'
        env = dict(os.environ, MPLBACKEND='Agg', PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
        for f in targets:
            left = int(t_end - time.time())
            if left < 5: r['notebooks'].append(dict(path=str(f), ok=False, error='no time left')); continue
            log(f"-- nbdev-test --flags cuda {f} (limit {left} s)")
            p = _run_logged([sys.executable, '-c', NBDEV_TEST, str(f), 'cuda'], left, env=env, cwd=ROOT)
            ok = p['returncode'] == 0 and not p['timed_out'] and 'Success.' in p['log_tail'] and 'No files were eligible' not in p['log_tail']
            item = dict(path=str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f.name, ok=ok, seconds=p['seconds'],
                        cuda_cells=n_cuda_cells(f), returncode=p['returncode'], timed_out=p['timed_out'])
            if not ok: item['log_tail'] = p['log_tail'][-3000:]
            if a.dry_run:
                marker = f.parent / 'cuda_cell_ran'
                item['cuda_cell_ran'] = marker.exists()
                item['ok'] = ok and marker.exists() and marker.read_text() == str(torch.cuda.is_available())
            r['notebooks'].append(item)
    r['n_passed'] = sum(n['ok'] for n in r['notebooks'])
    r['seconds_total'] = round(sum(n.get('seconds', 0) for n in r['notebooks']), 2)
    r['ok'] = all(n['ok'] for n in r['notebooks'])
    if not r['ok']: r['error'] = 'failed: ' + ', '.join(n['path'] for n in r['notebooks'] if not n['ok'])
    if not real: r['note'] = 'no notebook in nbs/ has a #| cuda cell'
    return r

# -- shared model pieces ----------------------------------------------------------------------------------------------

def ddpm_alphas_cumprod(n: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02):
    "DDPM's linear-beta schedule, as the CIFAR-10 DDPM was trained with (1,000 discrete steps)"
    import torch
    return torch.cumprod(1 - torch.linspace(beta_1, beta_T, n, dtype=torch.float64), 0)

def random_unet(seed: int = 0, **kw):
    "A `backbones.UNet` with random weights everywhere: its zero-initialised layers (which make it output 0) are re-drawn"
    import torch
    from torch import nn
    from spanlift_nb.backbones import UNet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(**kw)
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.detach().any(): m.reset_parameters()
    return net.eval().requires_grad_(False)

def _around_identity(net, scale: float = 0.3):
    "eps = x + scale * net(x, t): what a trained DDPM predicts at high noise, plus the random network (image-sized endpoints)"
    import torch
    class AroundIdentity(torch.nn.Module):
        def __init__(self): super().__init__(); self.net = net
        def forward(self, x, t): return x + scale * self.net(x, t)
    return AroundIdentity()

def vp_backbone(net, shape=SHAPE, alphas_cumprod=None):
    """The network as an eps-prediction model on DDPM's schedule, in continuous time by default (linear beta from 0.1 to
    20; the U-Net's default t_scale=1000 gives it DDPM's timestep scale). An adapted DDPM uses the discrete 1,000-step
    table of the same schedule (`alphas_cumprod`): `bench.preflight` checks that path on the device on its own, so that a
    failure there does not cost every figure."""
    from spanlift_nb.core import as_backbone
    return as_backbone(_around_identity(net), kind='vp-eps', alphas_cumprod=alphas_cumprod, meta=dict(data_shape=list(shape)))

# -- ddp: two processes give what one gives ---------------------------------------------------------------------------

# A correctness check, so small: 12 steps as in tests/test_ddp.py, on 3x16x16 images (sizes do not change the code path).
# One validation, at the end, so that both runs return the final EMA weights (no near-tie in choosing a "best" one).
DDP_STEPS, DDP_BATCH, DDP_TRAIN, DDP_VAL, DDP_SHAPE = 12, 16, 128, 32, (3, 16, 16)
DDP_UNET = dict(in_ch=3, base=8, mults=(1, 2), blocks=1, mid_attn=True)

def _ddp_setup(d: Path):
    "Backbone weights and teacher pairs for the DDP check, made once so that every run reads the same bytes"
    import torch
    from spanlift_nb.core import save_tensors
    from spanlift_nb.solvers import start_noise
    from spanlift_nb.teacher import teacher_solve
    net = random_unet(seed=1, **DDP_UNET); bb = vp_backbone(net, DDP_SHAPE)
    z = start_noise(bb.path, DDP_SHAPE, DDP_TRAIN + DDP_VAL, seed=1)
    with torch.no_grad(): x = teacher_solve(bb, z, method='heun', steps=4)
    save_tensors(d / 'setup.safetensors', dict(noise=z, target=x, **{f'net.{k}': v for k, v in net.state_dict().items()}))

def _ddp_train(setup: Path, device: str, out: Path):
    "Train SpanLift (NFE 3) on the tiny U-Net for 12 steps on `device`; rank 0 saves the initial and the trained weights"
    import torch, torch.distributed as dist
    from spanlift_nb.core import load_tensors, save_tensors
    from spanlift_nb.teacher import TeacherPairs
    from spanlift_nb.spanlift import SpanLift
    from spanlift_nb.train import fit_solver, TrainConfig, init_distributed
    from spanlift_nb.backbones import UNet
    rank, world = init_distributed()
    t = load_tensors(setup / 'setup.safetensors')
    net = UNet(**DDP_UNET); net.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith('net.')})
    bb = vp_backbone(net.eval().requires_grad_(False), DDP_SHAPE)
    tr, va = TeacherPairs(t['noise'], t['target'], 'ddp-check').split(DDP_VAL)
    torch.manual_seed(0)
    solver = SpanLift('euler', 3, bb.path, DDP_SHAPE, width=16, blocks=1)
    with torch.no_grad(): solver.op.out.weight.normal_(std=0.01)      # so every layer gets gradients from the first step
    init = {f'init.{k}': v.detach().clone() for k, v in solver.state_dict().items()}
    dtypes = set()
    h = net.inp.register_forward_hook(lambda m, i, o: dtypes.add(str(o.dtype).replace('torch.', '')))
    try: res = fit_solver(solver, bb, tr, va, TrainConfig(steps=DDP_STEPS, batch=DDP_BATCH, val_every=DDP_STEPS, ema=0.9, lr=3e-3),
                          device=device, progress=False)
    finally: h.remove()
    if rank == 0:
        save_tensors(out, dict(res.solver.state_dict(), **init),
                     dict(world=str(world), best_val=str(res.best_val), device=device, dtypes=','.join(sorted(dtypes)),
                          backend=dist.get_backend() if dist.is_initialized() else 'none'))

def ddp_worker(a):
    "One process of the 2-process runs (under torchrun): the same trainings as the 1-process run, on each device in turn"
    import torch, torch.distributed as dist
    torch.set_num_threads(1)
    if int(os.environ.get('WORLD_SIZE', 1)) > 1 and not dist.is_initialized():
        dist.init_process_group('gloo')      # gloo, not NCCL: both ranks share one GPU (NCCL wants one GPU per rank)
    for item in a.runs.split(','):
        tag, device = item.split('=')
        _ddp_train(Path(a.setup), device, Path(a.setup) / f'two-{tag}.safetensors')
    if dist.is_initialized(): dist.destroy_process_group()
    return 0

def _meta(f):
    from safetensors import safe_open
    with safe_open(str(f), 'pt') as h: return h.metadata()

def _compare(one: Path, two: Path, device: str, rel_tol: float | None) -> dict:
    "How far the 1-process and the 2-process weights ended apart"
    import torch
    from safetensors.torch import load_file
    if not (one.exists() and two.exists()): return dict(device=device, match=False, error=f'missing {one.name if not one.exists() else two.name}')
    m1, m2 = _meta(one), _meta(two)
    a_, b_ = load_file(str(one)), load_file(str(two))
    keys = [k for k in a_ if not k.startswith('init.') and a_[k].is_floating_point()]
    diff = max(float((a_[k].double() - b_[k].double()).abs().max()) for k in keys)
    allclose = all(torch.allclose(a_[k], b_[k], atol=1e-5, rtol=1e-4) for k in keys)
    # bf16 runs cannot agree to 1e-5: measure how far apart they ended against how far training moved the weights
    moved = sum(float((a_[k].double() - a_[f'init.{k}'].double()).pow(2).sum()) for k in keys) ** 0.5
    apart = sum(float((a_[k].double() - b_[k].double()).pow(2).sum()) for k in keys) ** 0.5
    v1, v2 = float(m1['best_val']), float(m2['best_val'])
    r = dict(device=device, world_one=int(m1['world']), world_two=int(m2['world']), backend_two=m2.get('backend'),
             train_dtypes=m2.get('dtypes'), max_abs_diff=diff, rel_l2_diff=apart / max(moved, 1e-30), weights_moved_l2=moved,
             best_val_one=v1, best_val_two=v2, best_val_rel_diff=abs(v1 - v2) / max(abs(v1), 1e-30), allclose_1e5=allclose,
             tolerance='allclose(atol=1e-5, rtol=1e-4)' if rel_tol is None else f'rel_l2_diff <= {rel_tol} (bf16 autocast)')
    r['match'] = bool(r['world_one'] == 1 and r['world_two'] == 2 and (allclose if rel_tol is None else r['rel_l2_diff'] <= rel_tol))
    return r

def phase_ddp(a):
    """Two processes under torchrun train the same solver as one process with the same global batch:
    `cpu_gloo` on the CPU (exact, as tests/test_ddp.py), `device_gloo` with both ranks on cuda:0 through gloo (bf16 autocast)"""
    import torch
    torch.set_num_threads(1)
    t0 = time.time()
    dev = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    runs = dict(cpu_gloo='cpu', device_gloo=dev)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    if 'GLOO_SOCKET_IFNAME' not in env and Path('/sys/class/net/lo').exists(): env['GLOO_SOCKET_IFNAME'] = 'lo'
    r = dict(steps=DDP_STEPS, batch=DDP_BATCH, shape=list(DDP_SHAPE), solver='SpanLift euler NFE 3 (width 16, 1 block)',
             backbone=f'UNet {DDP_UNET}, vp-eps', launcher='python -m torch.distributed.run --standalone --nproc_per_node=2')
    with tempfile.TemporaryDirectory(prefix='ddp_check_') as d:
        d = Path(d)
        _ddp_setup(d)
        log(f'-- one process: {runs}')
        errors = {}
        for tag, device in runs.items():
            try: _ddp_train(d, device, d / f'one-{tag}.safetensors')
            except Exception as e:                     # recorded; the other check still runs
                import traceback; traceback.print_exc()
                errors[tag] = f'one process: {type(e).__name__}: {e}'[:2000]
        log('-- two processes under torchrun (gloo)')
        spec = ','.join(f'{k}={v}' for k, v in runs.items())
        p = _run_logged([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(HERE), 'ddp-worker',
                         '--setup', str(d), '--runs', spec], max(5, t0 + a.budget - 5 - time.time()), env=env)
        r['torchrun'] = dict(returncode=p['returncode'], timed_out=p['timed_out'], seconds=p['seconds'])
        if p['returncode'] != 0: r['torchrun']['log_tail'] = p['log_tail'][-3000:]
        for tag, device in runs.items():
            r[tag] = _compare(d / f'one-{tag}.safetensors', d / f'two-{tag}.safetensors', device, 0.1 if device.startswith('cuda') else None)
            if tag in errors: r[tag]['error'] = errors[tag]
            if 'max_abs_diff' in r[tag]:
                log(f"{tag} on {device}: max abs diff {r[tag]['max_abs_diff']:.3g}, relative L2 {r[tag]['rel_l2_diff']:.3g}, "
                    f"match {r[tag]['match']} ({r[tag]['tolerance']})")
    r['max_abs_diff'] = max(r[t].get('max_abs_diff', float('inf')) for t in runs)
    r['ok'] = all(r[t].get('match') for t in runs)
    if not r['ok']:
        r['error'] = '; '.join(f"{t}: {r[t].get('error') or 'no match (%s)' % r[t].get('tolerance')}" for t in runs if not r[t].get('match'))[:2000]
    return r

# -- bench: throughput at CIFAR-10 scale ------------------------------------------------------------------------------

class Timer:
    "Wall time of `fn` per call: warm-up calls, then calls until `min_time` has passed, synchronising the GPU around them"
    def __init__(self, dev, min_time: float, max_iters: int = 200, warmup: int = 1):
        self.dev, self.min_time, self.max_iters, self.warmup = dev, min_time, max_iters, warmup
    def sync(self):
        import torch
        if self.dev.type == 'cuda': torch.cuda.synchronize(self.dev)
    def __call__(self, fn) -> dict:
        for _ in range(self.warmup): fn()
        self.sync(); times = []; t_start = time.perf_counter()
        while not times or (time.perf_counter() - t_start < self.min_time and len(times) < self.max_iters):
            t0 = time.perf_counter(); fn(); self.sync(); times.append(time.perf_counter() - t0)
        times.sort()
        return dict(iters=len(times), mean_s=sum(times) / len(times), median_s=times[len(times) // 2], min_s=times[0])

def _peak(dev):
    import torch
    return round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == 'cuda' else None

def _reset_peak(dev):
    import torch
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)

def _section(r: dict, name: str, fn, part=None):
    "Run one part of the benchmark; a failure is recorded under r[name]['error'] and the other parts still run"
    log(f'-- {name}')
    t0, out = time.time(), {}
    try: r[name] = dict(fn(out), ok=True)                 # `fn` fills `out` as it goes, so a failure keeps what it measured
    except Exception as e:
        import traceback; traceback.print_exc()
        r[name] = dict(out, ok=False, error=f'{type(e).__name__}: {e}'[:2000])
    r[name]['seconds'] = round(time.time() - t0, 1)
    if part: write_json(part, dict(r, ok=False, error='partial: the phase stopped after this part', partial=True))
    try:
        import torch
        if torch.cuda.is_available(): torch.cuda.empty_cache()
    except Exception: pass

def _probe(fn) -> dict:
    try:
        out = fn()
        return dict(ok=True, error=None, **(out or {}))
    except Exception as e: return dict(ok=False, error=f'{type(e).__name__}: {e}'[:1000])

def phase_bench(a):
    import contextlib
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from spanlift_nb.core import as_backbone, count_nfe, get_device
    from spanlift_nb.solvers import sample, start_noise
    from spanlift_nb.teacher import teacher_solve, teacher_pairs
    from spanlift_nb.scalar import ScalarSolver
    from spanlift_nb.spanlift import SpanLift
    from spanlift_nb.train import fit_solver, TrainConfig
    dry = a.dry_run
    dev = get_device('cpu' if dry else None)
    if not dry and dev.type != 'cuda': raise RuntimeError('no CUDA device: run with --dry-run')
    S = dict(teacher_batch=4, heun_steps=3, dopri_batch=2, train_batch=8, sample_batch=8, min_time=0.05, max_iters=3) if dry else \
        dict(teacher_batch=256, heun_steps=16, dopri_batch=256, train_batch=128, sample_batch=1024,
             min_time=max(0.5, min(4.0, (a.budget - 60) / 14)), max_iters=200)
    unet_kw = UNET_DRY if dry else UNET_GPU
    t_start = time.time()
    r = dict(device=str(dev), device_name=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu', dry_run=dry, sizes=S,
             shape=list(SHAPE), torch=torch.__version__, backbone_view='vp-eps, DDPM linear-beta schedule in continuous time',
             settings=dict(cudnn_benchmark=torch.backends.cudnn.benchmark, cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                           matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                           training_autocast='bf16' if dev.type == 'cuda' else 'off (CPU)', teacher_dtype='fp32',
                           timing='perf_counter around torch.cuda.synchronize(), after warm-up; medians'))
    timer = Timer(dev, S['min_time'], S['max_iters'])
    net = random_unet(seed=0, **unet_kw)
    n_params = sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as fc: net(torch.randn(1, *SHAPE), torch.tensor([0.5]))
    r['unet'] = dict(kwargs={k: list(v) if isinstance(v, tuple) else v for k, v in unet_kw.items()}, params=n_params,
                     gflops_per_image=round(fc.get_total_flops() / 1e9, 3), layout='tiny' if dry else 'DDPM CIFAR-10 (128 ch, 1-2-2-2, 2 blocks)')
    log(f"U-Net {unet_kw}: {n_params:,} parameters, {r['unet']['gflops_per_image']} GFLOP per image forward")
    net.to(dev)
    bb = vp_backbone(net)                     # eps prediction on DDPM's schedule, like an adapted DDPM CIFAR-10
    flow = as_backbone(net, kind='flow')      # the same network read as a velocity field (dopri5's figure, below)
    no_grad = torch.no_grad

    def preflight(p):
        "Cheap checks on the device of the paths the recipe needs, each on its own, so that one failure does not hide another"
        z = start_noise(bb.path, SHAPE, 2, seed=0, device=dev)
        table = vp_backbone(net, alphas_cumprod=ddpm_alphas_cumprod())
        def vp_table():
            with no_grad(): return dict(finite=bool(torch.isfinite(sample(table, z, 'euler', 3)).all()))
        def learned(make):
            def f():
                with no_grad(): return dict(finite=bool(torch.isfinite(make().to(dev)(bb, z)).all()))
            return f
        def dopri5_vp():
            # the CLI's teacher on the VP path: it must never evaluate the backbone past t_min (sigma is NaN below t = 0)
            times = []
            h = bb.register_forward_pre_hook(lambda m, args: times.append(float(torch.as_tensor(args[1]).reshape(-1)[0])))
            try:
                with no_grad(), count_nfe(bb) as c: y = teacher_solve(bb, z, method='dopri5', rtol=1e-4, atol=1e-4)
            finally: h.remove()
            if min(times) < bb.path.t_min - 1e-9:
                raise RuntimeError(f'dopri5 evaluated the backbone at t = {min(times):.3g} < t_min = {bb.path.t_min} '
                                   '(teacher_solve needs odeint(..., options=dict(step_t=ts)))')
            return dict(finite=bool(torch.isfinite(y).all()), nfe_per_sample=c.n, min_t=min(times))
        p.update(base_solver=_probe(lambda: dict(finite=bool(torch.isfinite(sample(bb, z, 'euler', 3)).all()))),
                 vp_discrete_table=_probe(vp_table),
                 scalar_solver=_probe(learned(lambda: ScalarSolver('euler', 3, bb.path))),
                 spanlift=_probe(learned(lambda: SpanLift('euler', 3, bb.path, SHAPE, width=8, blocks=1))),
                 dopri5_vp=_probe(dopri5_vp))
        for k, v in p.items(): log(f"preflight {k}: {'ok' if v['ok'] else 'FAILED: ' + str(v['error'])[:300]}")
        return p
    _section(r, 'preflight', preflight, a.part)

    def teacher(te):
        te.update(batch=S['teacher_batch'])
        z = start_noise(bb.path, SHAPE, S['teacher_batch'], seed=0, device=dev)
        _reset_peak(dev)
        with no_grad(), count_nfe(bb) as c: teacher_solve(bb, z[:1], method='heun', steps=S['heun_steps'])
        nfe = c.n
        with no_grad(): m = timer(lambda: teacher_solve(bb, z, method='heun', steps=S['heun_steps']))
        te['heun'] = dict(steps=S['heun_steps'], nfe_per_sample=nfe, pairs_per_s=len(z) / m['median_s'],
                          evals_per_s=len(z) * nfe / m['median_s'], peak_mem_gb=_peak(dev), **m)
        log(f"heun {S['heun_steps']} steps ({nfe} NFE): {te['heun']['pairs_per_s']:.1f} pairs/s, {te['heun']['evals_per_s']:.0f} image-evals/s")
        # dopri5 as the CLI uses it (rtol = atol = 1e-4), on the flow reading of the same network: it costs the same per
        # evaluation, and the VP reading is checked in preflight.dopri5_vp
        zd = start_noise(flow.path, SHAPE, S['dopri_batch'], seed=0, device=dev)
        nfes = []
        def dopri():
            with no_grad(), count_nfe(flow) as c: teacher_solve(flow, zd, method='dopri5', rtol=1e-4, atol=1e-4)
            nfes.append(c.n)
        m = timer(dopri)
        te['dopri5'] = dict(path='flow', rtol=1e-4, atol=1e-4, batch=len(zd), nfe_per_sample=sum(nfes) / len(nfes),
                            pairs_per_s=len(zd) / m['median_s'], evals_per_s=len(zd) * nfes[-1] / m['median_s'],
                            note='random weights: a trained model needs more NFE; its pairs/s = evals_per_s / its NFE', **m)
        log(f"dopri5: {te['dopri5']['pairs_per_s']:.1f} pairs/s at {te['dopri5']['nfe_per_sample']:.0f} NFE")
        with no_grad(): m = timer(lambda: sample(bb, z, 'euler', 3))
        te['base_euler_nfe3'] = dict(images_per_s=len(z) / m['median_s'], **m)
        with tempfile.TemporaryDirectory() as cache:            # end to end: batches, CPU copies, the cache file on disk
            t0 = time.perf_counter()
            p = teacher_pairs(bb, 2 * S['teacher_batch'], seed=1, shape=SHAPE, method='heun', steps=S['heun_steps'],
                              batch=S['teacher_batch'], cache_dir=cache, device=dev, progress=False)
            dt = time.perf_counter() - t0
            te['heun_teacher_pairs_end_to_end'] = dict(n=len(p), seconds=dt, pairs_per_s=len(p) / dt)
        return te
    _section(r, 'teacher', teacher, a.part)

    def train(tr_):
        B = S['train_batch']
        tr_.update(batch=B, nfe=3, base='euler', autocast=r['settings']['training_autocast'],
                   note='it/s = steps / FitResult.seconds of a second run (the first warms up); includes one validation pass')
        noise = start_noise(bb.path, SHAPE, 5 * B, seed=2)
        target = torch.randn(noise.shape, generator=torch.Generator().manual_seed(3))   # throughput only: any finite target
        pairs, val = (noise[:4 * B], target[:4 * B]), (noise[4 * B:], target[4 * B:])
        for name, make in (('spanlift', lambda: SpanLift('euler', 3, bb.path, SHAPE, width=32, blocks=3)),
                           ('scalar', lambda: ScalarSolver('euler', 3, bb.path))):
            torch.manual_seed(0)
            try:                                          # a failure is recorded; the other solver is still measured
                warm = fit_solver(make(), bb, pairs, val, TrainConfig(steps=2, batch=B, val_every=2, warmup=1), device=dev, progress=False)
                steps = 3 if dry else int(max(10, min(400, S['min_time'] * 1.5 / max(warm.seconds / 2, 1e-3))))
                _reset_peak(dev)
                s = make(); n_par = sum(p.numel() for p in s.parameters() if p.requires_grad)
                fit = fit_solver(s, bb, pairs, val, TrainConfig(steps=steps, batch=B, val_every=steps, warmup=1), device=dev, progress=False)
            except Exception as e:
                tr_[name] = dict(ok=False, error=f'{type(e).__name__}: {e}'[:1000]); log(f"{name}: failed: {tr_[name]['error']}"); continue
            tr_[name] = dict(steps=steps, seconds=fit.seconds, it_per_s=steps / fit.seconds, images_per_s=steps * B / fit.seconds,
                             trainable_params=n_par, peak_mem_gb=_peak(dev), final_loss=fit.history['train'][-1], ok=True)
            log(f"{name}: {tr_[name]['it_per_s']:.2f} it/s ({steps} steps, batch {B}), peak {tr_[name]['peak_mem_gb']} GB")
        failed = [k for k in ('spanlift', 'scalar') if not tr_[k]['ok']]
        if failed: raise RuntimeError(f"training failed for {failed}: {tr_[failed[0]]['error']}")
        tr_['spanlift_time_over_scalar'] = tr_['scalar']['it_per_s'] / tr_['spanlift']['it_per_s']
        return tr_
    _section(r, 'train', train, a.part)

    def sampling(out):
        sl = SpanLift('euler', 3, bb.path, SHAPE, width=32, blocks=3).to(dev).eval()
        with torch.no_grad(): sl.op.out.weight.normal_(std=0.01)      # a trained operator's cost, not a zero-weight one's
        z = start_noise(bb.path, SHAPE, S['sample_batch'], seed=4, device=dev)
        out.update(operator_params=sum(p.numel() for p in sl.op.parameters()))
        for name, bf16, cl in (('fp32', False, False), ('bf16', True, False), ('bf16_channels_last', True, True)):
            on = bf16 and dev.type == 'cuda'                # the dry run keeps the keys, on the CPU in fp32
            ac = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if on else contextlib.nullcontext
            net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            zz = z.contiguous(memory_format=torch.channels_last) if cl else z
            v = out[name] = dict(batch=len(z), autocast='bf16' if on else 'off', channels_last=cl)
            _reset_peak(dev)
            try:
                with torch.no_grad(), ac():
                    mb = timer(lambda: sample(bb, zz, 'euler', 3))
                    v.update(base_images_per_s=len(z) / mb['median_s'], base_median_s=mb['median_s'])
                    try:                          # a SpanLift failure is recorded; the next variant's Euler figure still comes
                        ms = timer(lambda: sl(bb, zz))
                        with count_nfe(bb) as c: sl(bb, zz)
                    except Exception as e:
                        v['spanlift_error'] = f'{type(e).__name__}: {e}'[:1000]; log(f"{name}: spanlift failed: {v['spanlift_error']}"); continue
            finally: net.to(memory_format=torch.contiguous_format)
            v.update(nfe=c.n, spanlift_images_per_s=len(z) / ms['median_s'], overhead=ms['median_s'] / mb['median_s'] - 1,
                     spanlift_median_s=ms['median_s'], iters=min(mb['iters'], ms['iters']), peak_mem_gb=_peak(dev))
            log(f"{name}: euler {v['base_images_per_s']:.0f} images/s, spanlift {v['spanlift_images_per_s']:.0f} "
                f"images/s, overhead {100 * v['overhead']:.1f}%")
        failed = [k for k, v in out.items() if isinstance(v, dict) and 'spanlift_error' in v]
        if failed: raise RuntimeError(f"SpanLift sampling failed in {failed}: {out[failed[0]]['spanlift_error']}")
        return out
    _section(r, 'sample', sampling, a.part)

    r['seconds'] = round(time.time() - t_start, 1)
    failed = [k for k in ('preflight', 'teacher', 'train', 'sample') if not r[k]['ok']]
    # a failed probe is reported (top-level `problems`), but does not fail the phase: the figures above do not use that path
    r['problems'] = [f"preflight.{k}: {v['error']}" for k, v in r['preflight'].items() if isinstance(v, dict) and v.get('ok') is False]
    r['ok'] = not failed
    if failed: r['error'] = 'failed: ' + ', '.join(failed)
    return r

# ---------------------------------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    q = sub.add_parser('all', help='every phase, one JSON')
    q.add_argument('--out', required=True); q.add_argument('--dry-run', action='store_true')
    q.add_argument('--budget', type=float, default=420, help='seconds for all phases together (default 420)')
    q.add_argument('--phases', default=','.join(PHASES))
    q = sub.add_parser('phase', help='one phase')
    q.add_argument('name', choices=PHASES); q.add_argument('--part', required=True)
    q.add_argument('--dry-run', action='store_true'); q.add_argument('--budget', type=float, default=300)
    q = sub.add_parser('ddp-worker', help='one process of the 2-process runs of the DDP check (under torchrun)')
    q.add_argument('--setup', required=True); q.add_argument('--runs', required=True, help='TAG=DEVICE,... e.g. cpu_gloo=cpu,device_gloo=cuda:0')
    a = p.parse_args(argv)
    return dict(all=main_all, phase=main_phase)[a.cmd](a) if a.cmd != 'ddp-worker' else ddp_worker(a)

if __name__ == '__main__':
    sys.exit(main())
