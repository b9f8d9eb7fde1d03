"""Transfer across base solvers on digits-flow at NFE 3: one operator per base (the base's own scalars frozen, so the
operator is all that is learned), one operator trained over a random base per step, and each applied unchanged over every
base (`SpanLift.with_base`). Beside them: each base alone at NFE 3, and its learned-scalar solver at NFE 3 and 4.

    python bench/transfer.py            # writes bench/LEVERS/transfer-digits-flow-nfe3.json (about half an hour on one core)

The pairs are bench/levers.py's (8192 training pairs, 256 for validation, 512 held-out test pairs at seed 1)."""
import json, sys, time
from pathlib import Path
import torch
from torch import nn
sys.path.insert(0, str(Path(__file__).parent))
from levers import pairs, more_pairs, OUT
from spanlift_nb.core import sample_shape, write_json
from spanlift_nb.zoo import load_backbone
from spanlift_nb.teacher import teacher_rmse
from spanlift_nb.evaluate import run_method, can_spend
from spanlift_nb.scalar import ScalarSolver
from spanlift_nb.spanlift import SpanLift
from spanlift_nb.train import fit_solver, TrainConfig

BASES = ('euler', 'heun', 'ipndm_v', 'unipc')
N_TRAIN, STEPS, SCALAR_STEPS, BATCH = 8192, 900, 200, 128

class MixedBases(nn.Module):
    "One operator over several bases: each call runs a base drawn at random (training), or `fixed` (evaluation)"
    def __init__(self, solvers: list, seed: int = 0):
        super().__init__()
        self.solvers = nn.ModuleList(solvers)
        for s in solvers[1:]: s.op = solvers[0].op                       # one operator, shared
        self.gen, self.fixed, self.guidance_range = torch.Generator().manual_seed(seed), None, None
    def forward(self, model, noise, callback=None):
        i = self.fixed if self.fixed is not None else int(torch.randint(len(self.solvers), (1,), generator=self.gen))
        return self.solvers[i](model, noise, callback=callback)

def rmse(bb, test, **kw) -> float: return teacher_rmse(run_method(bb, test.noise, **kw)[0], test.target)

def main():
    torch.set_num_threads(1); t0 = time.time()
    bb = load_backbone('digits-flow'); shape = sample_shape(bb)
    pool, val, test = pairs(bb, 'digits-flow'); train = more_pairs(bb, pool, N_TRAIN)
    cfg = lambda steps, lr: TrainConfig(steps=steps, batch=BATCH, lr=lr, val_every=max(steps // 10, 1), seed=0)
    out = dict(bases=list(BASES), n_train=N_TRAIN, steps=STEPS, base={}, scalar={3: {}, 4: {}}, native={}, matrix={}, seconds={})
    for b in BASES:
        out['base'][b] = rmse(bb, test, base=b, nfe=3)
        for nfe in (3, 4):
            if can_spend(b, nfe):
                sc = fit_solver(ScalarSolver(b, nfe, bb.path), bb, train, val, cfg(SCALAR_STEPS, 1e-2), progress=False).solver
                out['scalar'][nfe][b] = rmse(bb, test, solver=sc)
    ops = {}
    for b in BASES:
        t = time.time(); torch.manual_seed(0)
        ops[b] = fit_solver(SpanLift(b, 3, bb.path, shape), bb, train, val, cfg(STEPS, 3e-3), progress=False).solver
        out['seconds'][b] = time.time() - t; print(b, out['seconds'][b], flush=True)
    t = time.time(); torch.manual_seed(0)
    mix = fit_solver(MixedBases([SpanLift(b, 3, bb.path, shape) for b in BASES]), bb, train, val, cfg(STEPS, 3e-3), progress=False).solver
    out['seconds']['mixed'] = time.time() - t
    ops['mixed'] = mix.solvers[0]
    for src, op in ops.items():
        out['matrix'][src] = {b: rmse(bb, test, solver=op.with_base(b).eval()) for b in BASES}
    out['native'] = {b: out['matrix'][b][b] for b in BASES}
    out['wall'] = time.time() - t0
    print(json.dumps(out, indent=1)); write_json(OUT / 'transfer-digits-flow-nfe3.json', out)

if __name__ == '__main__': main()
