"""One lever of the SpanLift recipe, one seed, on one shipped backbone at one NFE: fit and score it on fixed teacher pairs.

    python bench/levers.py digits-flow recipe 0          # writes bench/LEVERS/digits-flow-nfe3-recipe-s0.json
    python bench/levers.py fashion-flow proposal 1

Every run uses the same pairs (seed 0: a digits backbone 1024 training pairs and 256 for validation, a fashion one 8192 and 256;
a lever may use the first n_train of them, and more from `EXTRA`; 512 test pairs at HELD_OUT_SEED) and the same learned-scalar solver per (backbone, seed), fitted once and cached, so levers differ only
in what they change. `bench/levers_report.py` gathers the JSON files into tables. Settings: `LEVERS` below."""
import argparse, dataclasses, json, os, sys, time
from pathlib import Path
import torch
from spanlift_nb.core import sample_shape, write_json, get_device
from spanlift_nb.zoo import load_backbone
from spanlift_nb.nowcast import nowcast_data
from spanlift_nb.teacher import teacher_pairs, teacher_rmse, HELD_OUT_SEED, TeacherPairs, path_states
from spanlift_nb.solvers import BASE_SOLVERS
from spanlift_nb.evaluate import pick_base, run_method, pairs_kw, pairs_view, SPANLIFT_RECIPE
from spanlift_nb.scalar import ScalarSolver
from spanlift_nb.spanlift import SpanLift, operator_cost
from spanlift_nb.train import fit_solver, TrainConfig

OUT = Path(__file__).parent / 'LEVERS'
CACHE = Path(os.environ.get('SPANLIFT_CACHE', Path.home() / '.cache' / 'spanlift-nb'))
N_POOL = dict(digits=1024, fashion=8192, rain=8192)      # training pairs made once per backbone (keyed by its name's first word); levers use the first n_train
N_VAL, N_TEST = dict(digits=256, fashion=256, rain=256), 512
EXTRA = ((2, 7168), (3, 8192))                  # more training pairs (seed, how many), appended in turn to the pool for the levers that ask for more than it holds
BASE = dict(n_train=None, intermediate=0.0, anneal=True, detach=False, scalar_steps=200, scalar_lr=1e-2, steps=350, lr=3e-3, op_scalar_lr=1e-2, batch=128, staging='scalars-first',
            op=dict(width=32, blocks=3))
LEVERS = {'recipe': {}, 'frozen': dict(staging='frozen'), 'joint': dict(staging='joint', steps=550),
          'proposal': dict(op=dict(width=32, blocks=3, proposal=True)), 'out_of_span': dict(op=dict(width=32, blocks=3, out_of_span=True)),
          'w16b2': dict(op=dict(width=16, blocks=2)), 'w64b3': dict(op=dict(width=64, blocks=3)), 'w32b6': dict(op=dict(width=32, blocks=6)),
          'pairs256': dict(n_train=256), 'pairs512': dict(n_train=512),
          'steps700b64': dict(steps=700, batch=64),
          **{f'pairs{n}': dict(n_train=n) for n in (2048, 4096, 8192)}, 'pairs8192s900': dict(n_train=8192, steps=900), 'pairs8192s2000': dict(n_train=8192, steps=2000), 'pairs16384s2000': dict(n_train=16384, steps=2000), 'pairs16384s4000': dict(n_train=16384, steps=4000), 'pairs16384s8000': dict(n_train=16384, steps=8000),
          **{f'pairs{n}s{k}det': dict(n_train=n, steps=k, detach=True) for n in (8192, 16384) for k in (2000, 3200, 4000)},
          'inter0.3': dict(intermediate=0.3), 'inter1': dict(intermediate=1.0), 'inter3': dict(intermediate=3.0),
          'inter1c': dict(intermediate=1.0, anneal=False), 'pairs8192inter1': dict(n_train=8192, intermediate=1.0)}
SHORT = dict(scalar_steps=100, steps=120, batch=32)   # 'short-<lever>': the same lever on a budget of about a twelfth of the recipe's (CPU-bound sweeps)
LEVERS.update({f'short-{k}': {**v, **SHORT, **(dict(steps=220) if k == 'joint' else {})} for k, v in LEVERS.items() if not k.startswith('steps')})

def made(bb, n, seed):
    "`n` teacher pairs from `seed`, each with its condition: the nowcaster's past frames are drawn with the next seed, apart from its training data's"
    cond = dict(past=nowcast_data(n, seed=seed + 1)[0]) if bb.meta.get('name', '').startswith('rain') else None
    return teacher_pairs(bb, n, seed=seed, shape=sample_shape(bb), cond=cond, progress=False)

def pairs(bb, name):
    "(train pool, validation, test) teacher pairs of `name`, cached"
    data = name.split('-')[0]
    pool, test = made(bb, N_POOL[data] + N_VAL[data], 0), made(bb, N_TEST, HELD_OUT_SEED)
    return pool[:N_POOL[data]], pool[-N_VAL[data]:], test

def more_pairs(bb, train, n):
    "The first `n` training pairs: the pool, then as many of the extra pairs (`EXTRA`, in turn) as needed"
    for seed, size in EXTRA:
        if n <= len(train): break
        extra = made(bb, min(size, n - len(train)), seed)
        cond = {k: torch.cat([v, extra.cond[k]]) for k, v in train.cond.items()} if train.cond else None
        train = TeacherPairs(torch.cat([train.noise, extra.noise]), torch.cat([train.target, extra.target]), f'{train.key}+{extra.key}', dict(train.config), cond)
    return train[:n]

def with_path(bb, train):
    "The training pairs with the teacher's path (`teacher.path_states`), cached"
    f = CACHE / f'levers-path-{train.key}.pt'
    if f.exists(): d = torch.load(f)
    else: p = path_states(bb, train, progress=False); d = dict(states=p.states, times=p.state_times); torch.save(d, f)
    return dataclasses.replace(train, states=d['states'], state_times=d['times'])

def base_pick(bb, name, val, nfe):
    f = CACHE / f'levers-base-{name}-{nfe}.json'
    if f.exists(): return tuple(json.loads(f.read_text()))
    b = pick_base(bb, val, nfe, BASE_SOLVERS, SPANLIFT_RECIPE['schedules'])[0]
    f.write_text(json.dumps(b)); return tuple(b)

def scalars(bb, name, train, val, nfe, b, s, seed, n_train):
    "The learned-scalar solver (cached per backbone, NFE, seed and number of pairs) and its fit seconds"
    f = CACHE / f'levers-scalar-{name}-{nfe}-{b[0]}-{b[1]}-s{seed}-n{n_train}-{s["scalar_steps"]}-b{s["batch"]}.pt'
    sol = ScalarSolver(b[0], nfe, bb.path, schedule=b[1])
    if f.exists():
        d = torch.load(f); sol.load_state_dict(d['state']); return sol.eval(), d['seconds'], d['val']
    cfg = TrainConfig(steps=s['scalar_steps'], batch=s['batch'], lr=s['scalar_lr'], scalar_lr=s['scalar_lr'], val_every=max(s['scalar_steps'] // 10, 1), seed=seed)
    fit = fit_solver(sol, bb, train, val, cfg, progress=False)
    torch.save(dict(state=fit.solver.state_dict(), seconds=fit.seconds, val=fit.best_val), f)
    return fit.solver, fit.seconds, fit.best_val

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('backbone'); ap.add_argument('lever', choices=list(LEVERS) + ['teacher', 'bases', 'frontier', 'transfer', 'scalars']); ap.add_argument('seed', type=int)
    ap.add_argument('--nfe', type=int, default=3)
    a = ap.parse_args(); torch.set_num_threads(1)
    if a.lever == 'transfer':                       # the transfer matrix: bench/transfer.py, run from here so one queue of levers covers it
        sys.path.insert(0, str(Path(__file__).parent)); import transfer; return transfer.main()
    out = OUT / f'{a.backbone}-nfe{a.nfe}-{a.lever}-s{a.seed}.json'
    if out.exists(): print('exists', out); return
    bb = load_backbone(a.backbone); t0 = time.time()
    train_pool, val, test = pairs(bb, a.backbone)
    if a.lever == 'bases': return write_json(out, bases_table(bb, test))
    if a.lever == 'frontier': return write_json(out, dict(bases_table(bb, test, range(2, 11), per_sample=True), kind='frontier'))
    if a.lever == 'teacher': return write_json(out, cheap_teacher(bb, test))
    s = dict(BASE, **LEVERS.get(a.lever, {})); s['n_train'] = s['n_train'] or len(train_pool); train = more_pairs(bb, train_pool, s['n_train'])
    b = base_pick(bb, a.backbone, val, a.nfe)
    sc, sc_sec, _ = scalars(bb, a.backbone, train, val, a.nfe, b, s, a.seed, s['n_train'])
    t1 = time.time(); sc_rmse = teacher_rmse(run_method(bb, test.noise, solver=sc, **pairs_kw(test))[0], test.target); sc_wall = (time.time() - t1) / len(test)
    if a.lever == 'scalars':                        # the learned-scalar solver alone (matched-cost rows)
        return write_json(out, dict(backbone=a.backbone, nfe=a.nfe, lever=a.lever, seed=a.seed, settings=s, base=list(b), scalar_rmse=sc_rmse,
                                    scalar_seconds=sc_sec, sample_seconds=dict(scalar=sc_wall), wall=time.time() - t0, torch=torch.__version__))
    if s['staging'] == 'joint': sl = SpanLift(b[0], a.nfe, bb.path, sample_shape(bb), schedule=b[1], learn_scalars=True, **s['op'])
    else: sl = SpanLift.from_scalars(sc, sample_shape(bb), learn_scalars=s['staging'] != 'frozen', **s['op'])
    cfg = TrainConfig(steps=s['steps'], batch=s['batch'], lr=s['lr'], scalar_lr=s['op_scalar_lr'], val_every=max(s['steps'] // 10, 1), seed=a.seed,
                      intermediate=s['intermediate'], intermediate_anneal=s['anneal'], detach_backbone=s['detach'])
    fit = fit_solver(sl, bb, with_path(bb, train) if s['intermediate'] else train, val, cfg, progress=False)
    t1 = time.time(); xs = run_method(bb, test.noise, solver=fit.solver, **pairs_kw(test))[0]; sl_wall = (time.time() - t1) / len(test)
    tr = run_method(bb, train.noise[:512], solver=fit.solver, **pairs_kw(train[:512]))[0]
    cost = operator_cost(fit.solver, pairs_view(bb, test))
    r = dict(backbone=a.backbone, nfe=a.nfe, lever=a.lever, seed=a.seed, settings=s, base=list(b), scalar_rmse=sc_rmse, scalar_seconds=sc_sec,
             spanlift_rmse=teacher_rmse(xs, test.target), spanlift_train_rmse=teacher_rmse(tr, train.target[:512]), spanlift_val=fit.best_val,
             spanlift_seconds=fit.seconds, spanlift_curve={k: fit.history[k] for k in ('val_step', 'val')}, cost=cost, sample_seconds=dict(scalar=sc_wall, spanlift=sl_wall), wall=time.time() - t0, torch=torch.__version__)
    r['ratio'] = r['spanlift_rmse'] / sc_rmse
    print(json.dumps({k: v for k, v in r.items() if k not in ('settings', 'cost', 'spanlift_curve')})); write_json(out, r)

def bases_table(bb, test, nfes=range(3, 7), per_sample=False):
    "Teacher RMSE of every base solver at each of `nfes` on its default grid (the held-out pairs), with its wall seconds (per sample)"
    from spanlift_nb.solvers import SOLVERS
    from spanlift_nb.evaluate import can_spend
    rows = []
    for name in [n for n in SOLVERS if n.startswith('ipndm')] + ['euler', 'dpmpp_2m']:
        for nfe in nfes:
            if not can_spend(name, nfe): continue
            t = time.time(); xs = run_method(bb, test.noise, base=name, nfe=nfe, **pairs_kw(test))[0]
            rows.append(dict(base=name, nfe=nfe, rmse=teacher_rmse(xs, test.target), seconds=(time.time() - t) / (len(test) if per_sample else 1)))
    return dict(rows=rows)

def cheap_teacher(bb, test):
    "Endpoint error of fixed-step RK4 teachers against the dopri5 targets (tolerance for use as a teacher: 0.1 x SpanLift's RMSE)"
    rows = []
    for steps in (4, 8, 16):
        t = time.time(); xs = run_method(bb, test.noise, base='rk4', nfe=4 * steps, **pairs_kw(test))[0]
        rows.append(dict(method='rk4', steps=steps, nfe=4 * steps, rmse_vs_dopri5=teacher_rmse(xs, test.target), seconds=time.time() - t))
    return dict(rows=rows, dopri5_nfe=test.config.get('nfe'))

if __name__ == '__main__': main()
