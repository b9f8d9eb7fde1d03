"""How much the learned-scalar solver depends on its initial time grid: the recipe's scalar stage (200 steps, lr 1e-2, batch 128,
the levers' pairs) started from the base's uniform grid and from grids that put the last evaluation further from the data end.

    python bench/scalar_init.py                          # writes bench/LEVERS/scalar-init.json (about 40 minutes on one core)
    python bench/scalar_init.py fashion-flow@4           # only those runs, into bench/LEVERS/scalar-init-fashion-flow@4.json"""
import json, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
import levers as L
from spanlift_nb.zoo import load_backbone
from spanlift_nb.evaluate import run_method
from spanlift_nb.teacher import teacher_rmse
from spanlift_nb.scalar import ScalarSolver
from spanlift_nb.train import fit_solver, TrainConfig

RUNS = [('digits-flow', 3, 'ipndm_v', [None, [1, .9, .6, 0], [1, .85, .5, 0], [1, .7, .35, 0]]),
        ('digits-flow', 4, 'dpmpp_2m', [None, [1, .9, .75, .5, 0], [1, .85, .6, .35, 0]]),
        ('fashion-flow', 3, 'ipndm_v', [None, [1, .9, .6, 0], [1, .85, .5, 0]]),
        ('fashion-flow', 4, 'ipndm_v', [None, [1, .839, .6, .411, 0], [1, .9, .75, .5, 0]]),
        ('fashion-flow', 4, 'dpmpp_2m', [None]), ('fashion-flow', 4, 'unipc', [None])]   # None: the base's uniform grid, as the recipe starts

def fit(bb, tr, val, test, nfe, base, grid):
    s = ScalarSolver(base, nfe, bb.path, schedule='uniform')
    if grid is not None:
        g = torch.tensor(grid, dtype=torch.float64)
        with torch.no_grad(): s.grid.logits.copy_(torch.log(-g.diff()))
    f = fit_solver(s.train(), bb, tr, val, TrainConfig(steps=200, batch=128, lr=1e-2, scalar_lr=1e-2, val_every=20, seed=0), progress=False)
    return dict(test=teacher_rmse(run_method(bb, test.noise, solver=f.solver)[0], test.target), val=f.best_val,
                grid=[float(t) for t in f.solver.grid().detach()])

def main():
    only = sys.argv[1:]
    torch.set_num_threads(1); rows, out = [], L.OUT / ('scalar-init' + ''.join(f'-{o}' for o in only) + '.json')
    for name, nfe, base, grids in RUNS:
        if only and f'{name}@{nfe}' not in only: continue
        bb = load_backbone(name); tr, val, test = L.pairs(bb, name); tr = L.more_pairs(bb, tr, 8192)
        for g in grids:
            rows.append(dict(backbone=name, nfe=nfe, base=base, init=g or 'uniform', **fit(bb, tr, val, test, nfe, base, g)))
            print(json.dumps(rows[-1]), flush=True); out.write_text(json.dumps(dict(rows=rows), indent=1))

if __name__ == '__main__': main()
