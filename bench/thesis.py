"""The thesis study: when does leaving the span pay? For each setting and seed, `diagnose.measure_gain` fits learned scalars,
measures their headroom (rho_needed), then trains SpanLift from them beside a compute-matched learned-scalar control and an
in-span control. Results go to bench/THESIS.json (per-seed rows, per-setting mean ± sd, and the fitted law).

    python bench/thesis.py                       # every setting, 3 seeds (about an hour of one CPU core)
    python bench/thesis.py --group gauss --out bench/THESIS.part-gauss.json   # one group; then
    python bench/thesis.py --summarise bench/THESIS.part-*.json               # merge the parts and fit the law
"""
import argparse, json, math, platform, sys, time
from pathlib import Path
import torch
from spanlift_nb.core import GaussianPath
from spanlift_nb.analytic import gaussian_backbone, mixture_backbone
from spanlift_nb.data import load_digits
from spanlift_nb.zoo import load_backbone, load
from spanlift_nb.nowcast import nowcast_data
from spanlift_nb.teacher import teacher_pairs, HELD_OUT_SEED
from spanlift_nb.diagnose import stationary_gaussian, setting_pairs, measure_gain, summarise_rows

REAL = dict(n_train=384, n_val=96, n_test=192, steps_scalar=40, steps_extra=40, batch=32, n_probe=64)
GAUSS = dict(REAL, n_train=512, n_val=128, n_test=256, steps_scalar=60, steps_extra=150)

def gaussians():
    dig = load_digits('train').double()
    mu, sc = dig.mean(0), dig.std(0).clamp_min(0.05)
    return {'gauss-isotropic': lambda: gaussian_backbone(mu, torch.full_like(sc, float(sc.mean()))),
            'gauss-per-pixel': lambda: gaussian_backbone(mu, sc),
            'gauss-stationary': lambda: stationary_gaussian((1, 8, 8), length=1.5, std=0.5)}

def mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 1.6 - 0.8
    scales = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 0.3 + 0.05
    return mixture_backbone(means, scales)

def nowcast_pairs(bb, n, seed=0, guidance=None):
    "Teacher pairs of the nowcaster, each conditioned on its own past frames (drawn with a seed apart from its training data's)"
    return teacher_pairs(bb, n, seed=seed, cond=dict(past=nowcast_data(n, seed=seed + 1)[0]), progress=False)

PAIRS = {'rain-nowcast': nowcast_pairs}   # settings whose pairs need more than `setting_pairs`

def settings():
    "(group, name, backbone factory, nfe, guidance, sizes, held_out): held-out settings are left out of the law"
    g, out = gaussians(), []
    for name, nfe in (('gauss-isotropic', 3), ('gauss-per-pixel', 3), ('gauss-stationary', 3)): out.append(('gauss', name, g[name], nfe, None, GAUSS, False))
    out.append(('gauss', 'gauss-mixture', mixture, 3, None, GAUSS, True))
    for name, nfe in (('gauss-per-pixel', 5), ('gauss-stationary', 5)): out.append(('gauss', name, g[name], nfe, None, GAUSS, False))
    for name, nfe in (('digits-flow', 3), ('digits-edm', 3), ('digits-flow', 5)):
        out.append(('digits', name, lambda name=name: load_backbone(name), nfe, None, REAL, False))
    out.append(('digits', 'digits-edm', lambda: load_backbone('digits-edm'), 5, None, REAL, True))
    out.append(('fashion', 'fashion-flow', lambda: load_backbone('fashion-flow'), 3, None, REAL, False))
    for w in (1.0, 3.0): out.append(('fashion', 'fashion-cond-flow', lambda: load_backbone('fashion-cond-flow'), 3, w, REAL, False))
    out.append(('more', 'fashion-latent-flow', lambda: load_backbone('fashion-latent-flow'), 3, None, REAL, False))
    out.append(('more', 'rain-nowcast', lambda: load('rain-nowcast'), 3, None, REAL, False))
    return out

def run(group, seeds, out, only=None):
    "Every setting at the first seed, then every setting at the next: an interrupted run still covers the settings"
    rows = json.loads(Path(out).read_text())['rows'] if Path(out).exists() else []
    done, cache = {(r['setting'], r['nfe'], r['guidance'], r['seed']) for r in rows}, {}
    todo = [s for s in settings() if not (group and s[0] not in group) and not (only and s[1] not in only)]
    for seed in seeds:
        for g, name, make, nfe, w, sz, held in todo:
            if (name, nfe, w, seed) in done: continue
            if (name, w) not in cache:
                t0, bb = time.time(), make()
                make_pairs = PAIRS.get(name, setting_pairs)
                tv = make_pairs(bb, sz['n_train'] + sz['n_val'], seed=0, guidance=w)
                cache[name, w] = (bb, *tv.split(sz['n_val']), make_pairs(bb, sz['n_test'], seed=HELD_OUT_SEED, guidance=w))
                print(f'{name} w={w}: pairs in {time.time() - t0:.0f} s', flush=True)
            bb, train, val, test = cache[name, w]
            r = measure_gain(bb, train, val, test, nfe=nfe, seed=seed, steps_scalar=sz['steps_scalar'],
                             steps_extra=sz['steps_extra'], batch=sz['batch'], n_probe=sz['n_probe'], device='cpu')
            rows.append(dict(setting=name, group=g, guidance=w, held_out=held, **r))
            print(f"{name} NFE {nfe} w={w} seed {seed}: rho_needed {r['rho_needed']:.3f} gain {r['gain']:+.3f} in-span {r['gain_in_span']:+.3f} "
                  f"share {r['correction_share']:.3f} cos {r['cosine']:+.3f} ({r['seconds']:.0f} s)", flush=True)
            Path(out).write_text(json.dumps(dict(rows=rows), indent=1))

def summarise(parts, out='bench/THESIS.json'):
    rows = [r for p in parts for r in json.loads(Path(p).read_text())['rows']]
    cmd = ('python bench/thesis.py --group ' + ' '.join(sorted({r['group'] for r in rows})) + ' --seeds '
           + ' '.join(str(s) for s in sorted({r['seed'] for r in rows})))
    res = dict(summarise_rows(rows), command=cmd, sizes=dict(gauss=GAUSS, real=REAL),
               machine=f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    Path(out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res['law'], indent=1))

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--group', nargs='*', default=None, help='gauss digits fashion more (default: all)')
    ap.add_argument('--only', nargs='*', default=None)
    ap.add_argument('--seeds', nargs='*', type=int, default=[0, 2, 3])
    ap.add_argument('--out', default='bench/THESIS.part.json')
    ap.add_argument('--summarise', nargs='*', default=None)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.summarise is not None: summarise(a.summarise)
    else:
        run(a.group, a.seeds, a.out, a.only)
        if a.out == 'bench/THESIS.part.json': summarise([a.out])
