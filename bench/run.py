"""The spanlift-nb benchmark: base solvers (tuned grid included), the learned-scalar solver and SpanLift over two bases,
on the shipped backbones, at several NFE, from the same held-out noise and teacher. Every figure is measured in this run.

    python bench/run.py                                   # digits-flow and fashion-flow, NFE 3 4 5 6 (long)
    python bench/run.py --backbones digits-flow --nfes 3 4 5 --out bench/RESULTS.md

Writes RESULTS.md (tables, machine, settings) and results.json beside it. Speed goals live here, never in unit tests."""
import argparse, json, os, platform, sys, time
from pathlib import Path
import torch
from spanlift_nb.core import write_json, atomic_write, get_device
from spanlift_nb.evaluate import compare, results_markdown

SIZES = dict(digits=dict(n_train=8192, n_val=512, n_test=1024, steps_scalar=300, steps_spanlift=900, batch=128),
             fashion=dict(n_train=2048, n_val=256, n_test=512, steps_scalar=200, steps_spanlift=500, batch=64))

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except Exception: pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}"

def matched_cost(results: dict) -> list:
    "SpanLift at NFE n beside the best base and the learned-scalar solver at NFE n+1 (the operator is not free)"
    out = []
    for (bb, nfe), r in results.items():
        nxt = results.get((bb, nfe + 1))
        if nxt is None: continue
        pick = lambda rows, m, **kw: min((x for x in rows if x['method'] == m and all(x.get(k) == v for k, v in kw.items())),
                                         key=lambda x: x['teacher_rmse'], default=None)
        sl = pick(r['rows'], 'spanlift', transfer_from=None)
        out.append(dict(backbone=bb, spanlift_nfe=nfe, spanlift=sl['teacher_rmse'], spanlift_fid=sl.get('fid_clf'),
                        base_nfe=nfe + 1, best_base=pick(nxt['rows'], 'base')['teacher_rmse'], best_base_name=pick(nxt['rows'], 'base')['base'],
                        scalar=pick(nxt['rows'], 'scalar')['teacher_rmse'], scalar_fid=pick(nxt['rows'], 'scalar').get('fid_clf'),
                        overhead_wall=r['config']['operator_cost']['wall_ratio'] * nfe))
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--backbones', nargs='+', default=['digits-flow', 'fashion-flow'])
    ap.add_argument('--nfes', nargs='+', type=int, default=[3, 4, 5, 6])
    ap.add_argument('--fashion-nfes', nargs='+', type=int, default=None, help='NFEs for fashion-flow (default: --nfes)')
    ap.add_argument('--out', default=str(Path(__file__).parent / 'RESULTS.md'))
    ap.add_argument('--device', default=None)
    ap.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch decides)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    t0, results = time.time(), {}
    for name in a.backbones:
        sizes = SIZES[name.split('-')[0]]
        for nfe in (a.fashion_nfes or a.nfes) if name.startswith('fashion') else a.nfes:
            print(f'== {name} NFE {nfe}', flush=True)
            r = compare(name, nfe, spanlift_bases=2, transfer=True, device=a.device, progress=False, **sizes)
            results[(name, nfe)] = dict(rows=r['rows'], config=r['config'])
            print(results_markdown(r['rows']), flush=True)
            write(a, results, t0)                       # after every run, so an interrupted benchmark keeps what it measured
    print(f'wrote {a.out}')

def write(a, results: dict, t0: float):
    "Write RESULTS.md and results.json for the runs measured so far"
    mc = matched_cost(results)
    lines = [f"# spanlift-nb benchmark\n", f"Measured by `python bench/run.py {' '.join(sys.argv[1:])}` on {machine()}; "
             f"wall time so far {time.time() - t0:.0f} s. Teacher: dopri5 (rtol = atol = 1e-4), test noise held out (seed 1), "
             "training pairs seed 0 with a validation split. RMSE is `teacher.teacher_rmse` (mean per-sample RMSE to the teacher "
             "endpoint); clf-FID/KID use the shipped feature classifiers, each beside its real-vs-real floor. The learned solvers "
             "build on the base (and grid) with the lowest *validation* RMSE; 'op. from' marks an operator trained over another base.\n"]
    for (name, nfe), r in results.items():
        c = r['config']; oc = c['operator_cost']
        lines += [f"\n## {name}, NFE {nfe}\n", results_markdown(r['rows']),
                  f"\nTraining pairs: {c['n_train']} (+{c['n_val']} validation), test pairs {c['n_test']}; teacher pairs made in "
                  f"{c['pairs_seconds']:.0f} s. Operator: {oc['params_operator']:,} parameters ({oc['params_ratio']:.3f}x the backbone's), "
                  f"{oc['flops_ratio']:.3f}x its FLOPs and {oc['wall_ratio']:.3f}x its wall time per step.\n"]
    if mc:
        lines += ["\n## Matched cost: SpanLift at NFE n against NFE n+1\n",
                  "| backbone | SpanLift NFE | SpanLift RMSE | best base at n+1 | learned-scalar at n+1 | operator wall time, in backbone calls |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['backbone']} | {m['spanlift_nfe']} | {m['spanlift']:.4f} | {m['best_base']:.4f} ({m['best_base_name']}) | "
                  f"{m['scalar']:.4f} | {m['overhead_wall']:.2f} |" for m in mc]
    with atomic_write(a.out, 'w') as f: f.write('\n'.join(lines) + '\n')
    write_json(Path(a.out).with_suffix('.json'), dict(results={f'{k[0]}@{k[1]}': v for k, v in results.items()}, matched_cost=mc, machine=machine()))

if __name__ == '__main__': main()
