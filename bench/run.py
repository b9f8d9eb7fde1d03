"""The spanlift-nb benchmark: base solvers (tuned grid included), the learned-scalar solver and SpanLift over two bases,
on the shipped backbones, at several NFE, from the same held-out noise and teacher. Every figure is measured in this run.

    python bench/run.py                                   # digits-flow and fashion-flow, NFE 3 4 5 6 (long)
    python bench/run.py --backbones digits-flow --nfes 3 4 5 --out bench/RESULTS.md
    python bench/run.py --backbones fashion-cond-flow --nfes 3 4 --guidance 1 3 --range 1:5 --keep   # guided, into RESULTS.md

Writes RESULTS.md (tables, machine, settings) and results.json beside it. Speed goals live here, never in unit tests."""
import argparse, json, os, platform, re, sys, time
from pathlib import Path
import torch
from spanlift_nb.core import write_json, atomic_write, get_device, parse_guidance
from spanlift_nb.evaluate import compare, results_markdown, fit_range, run_method, pairs_kw, score, dataset_of, RECIPE_PAIRS
from spanlift_nb.metrics import class_accuracy
from spanlift_nb.teacher import guidance_grid

SIZES = dict(digits=dict(n_train=RECIPE_PAIRS, n_val=512, n_test=1024), fashion=dict(n_train=RECIPE_PAIRS, n_val=256, n_test=512))   # pairs only:
# every learned solver trains by the one recipe, `evaluate.SPANLIFT_RECIPE` (via `compare` -> `fit_spanlift`), the same on every data set
GUIDED = dict(n_train=512, n_val=128, n_test=256, steps_scalar=100, steps_spanlift=200, batch=64)   # per scale; a class-conditional backbone
RANGE_STEPS = 400                                                                                 # the solver trained over the whole range

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
        sl = pick(r['rows'], 'spanlift', transfer_from=None, guidance_range=None)
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
    ap.add_argument('--guidance', nargs='+', type=float, default=[1.0, 3.0], help='guidance scales of a class-conditional backbone')
    ap.add_argument('--range', default='1:5', help='the range lo:hi of the one solver trained over all scales (class-conditional backbones)')
    ap.add_argument('--keep', action='store_true', help='keep the sections of --out that this run does not measure')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    t0, results = time.time(), {}
    a.kept = kept_results(a) if a.keep else {}
    if any(n.startswith('fashion-cond') for n in a.backbones):
        return guided_main(a, t0)
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
    "Write RESULTS.md and results.json for the runs measured so far (with --keep, beside the unguided runs of earlier invocations)"
    earlier = {(k.split('@')[0], int(k.split('@')[1])): v for k, v in getattr(a, 'kept', {}).items() if k.count('@') == 1}
    results = dict(sorted({**{k: v for k, v in earlier.items() if k not in results}, **results}.items()))
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
                  f"{oc['flops_ratio']:.3f}x its FLOPs and {oc['wall_ratio']:.3f}x its wall time per step.\n",
                  "SpanLift recipe (`evaluate.SPANLIFT_RECIPE`): " + ', '.join(f'{k} {v}' for k, v in c.get('recipe', {}).items() if k not in ('bases', 'schedules')) + ".\n"]
    if mc:
        lines += ["\n## Matched cost: SpanLift at NFE n against NFE n+1\n",
                  "| backbone | SpanLift NFE | SpanLift RMSE | best base at n+1 | learned-scalar at n+1 | operator wall time, in backbone calls |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['backbone']} | {m['spanlift_nfe']} | {m['spanlift']:.4f} | {m['best_base']:.4f} ({m['best_base_name']}) | "
                  f"{m['scalar']:.4f} | {m['overhead_wall']:.2f} |" for m in mc]
    old = Path(a.out).read_text() if Path(a.out).exists() else ''
    kept = [m.group(0) for m in re.finditer(r'<!-- (levers|guided): written by .*?<!-- /\1 -->', old, re.S)]   # sections other scripts write
    with atomic_write(a.out, 'w') as f: f.write('\n'.join(lines + kept) + '\n')
    js = Path(a.out).with_suffix('.json'); keep_js = {k: v for k, v in (json.loads(js.read_text()) if js.exists() else {}).items() if k not in ('results', 'matched_cost', 'machine')}
    write_json(js, dict(keep_js, results={**getattr(a, 'kept', {}), **{f'{k[0]}@{k[1]}': v for k, v in results.items()}}, matched_cost=mc, machine=machine()))

def kept_results(a) -> dict:
    "With --keep: the results.json entries this run does not measure (the guided rows, other backbones), kept beside the new ones"
    js = Path(a.out).with_suffix('.json')
    return (json.loads(js.read_text()).get('results') or {}) if js.exists() else {}

GUIDED_BEGIN, GUIDED_END = '<!-- guided: written by bench/run.py -->', '<!-- /guided -->'

def class_acc(data: str):
    "`compare`'s extra metric: how often the shipped classifier gives the class asked for"
    return lambda xs, test: dict(class_acc=class_accuracy(xs, test.cond['class_labels'], data))

def guided_runs(a, name: str, nfe: int, rng: tuple, results: dict, save):
    "`compare` at each guidance scale, then one SpanLift trained over the range `rng` (on the base picked nearest its middle), scored at each"
    acc = class_acc('fashion')
    for w in a.guidance:
        print(f'== {name} NFE {nfe} w={w:g}', flush=True)
        r = compare(name, nfe, spanlift_bases=1, device=a.device, progress=False, guidance=w, metrics=acc, **GUIDED)
        results[(name, nfe, w)] = r; print(results_markdown(r['rows']), flush=True); save()
    mid = results[(name, nfe, min(a.guidance, key=lambda w: abs(w - sum(rng) / 2)))]['config']
    print(f'== {name} NFE {nfe}: one SpanLift over w {rng[0]:g} to {rng[1]:g} on {mid["base"]} ({mid["schedule"]} grid)', flush=True)
    fit = fit_range(name, nfe, rng, 'spanlift', mid['base'], mid['schedule'], n_train=GUIDED['n_train'], n_val=GUIDED['n_val'],
                    steps=RANGE_STEPS, batch=GUIDED['batch'], device=a.device, progress=False)
    for w in a.guidance:
        r = results[(name, nfe, w)]; test = r['test']
        xs, n = run_method(r['backbone'], test.noise, solver=fit.solver, device=a.device, **pairs_kw(test))
        r['rows'].insert(len(r['rows']) - 1, dict(method='spanlift', base=mid['base'], schedule=mid['schedule'], guidance_range=list(rng), nfe=n,
                                                  train_seconds=fit.seconds, val_rmse=fit.best_val, n_train=GUIDED['n_train'] * len(guidance_grid(*rng)),
                                                  **score(xs, test.target, 'fashion'), **acc(xs, test)))
        r['config']['range'] = dict(guidance=list(rng), scales=guidance_grid(*rng), steps=RANGE_STEPS, base=mid['base'], schedule=mid['schedule'])
        print(results_markdown(r['rows']), flush=True)
    save()

def guided_summary(results: dict) -> list:
    "One line per (NFE, w): teacher RMSE, clf-FID and class accuracy of the best base, learned scalars, SpanLift, the range SpanLift and the teacher"
    lines = ['| NFE | w | best base | learned scalars (trained at w) | SpanLift (trained at w) | one SpanLift trained over the range | teacher |', '|---|---|---|---|---|---|---|']
    cell = lambda x: f"{x['teacher_rmse']:.4f} / {x['fid_clf']:.2f} / {x['class_acc']:.2f}" if x else '–'
    for (name, nfe, w), r in sorted(results.items(), key=lambda kv: kv[0][1:]):
        rows = r['rows']
        best = min((x for x in rows if x['method'] == 'base'), key=lambda x: x['teacher_rmse'])
        one = lambda m, **kw: next((x for x in rows if x['method'] == m and all(x.get(k) == v for k, v in kw.items())), None)
        rng = next((x for x in rows if x.get('guidance_range')), None)
        lines.append(f"| {nfe} | {w:g} | {cell(best)} ({best['base']}{', ' + best['schedule'] + ' grid' if best.get('schedule') else ''}) | {cell(one('scalar'))} | "
                     f"{cell(one('spanlift', guidance_range=None))} | {cell(rng)} | {cell(one('teacher'))} |")
    return lines

def write_guided(a, results: dict, t0: float):
    "Write the guided sections into --out between their markers (the rest of the file kept with --keep) and merge results.json"
    c0 = next(iter(results.values()))['config']
    block = [GUIDED_BEGIN, f"\n## {c0['backbone']}: class-conditional, under classifier-free guidance\n",
             f"Measured by `python bench/run.py {' '.join(sys.argv[1:])}` on {machine()}; wall time {time.time() - t0:.0f} s. "
             f"Per scale: {GUIDED['n_train']} training pairs (+{GUIDED['n_val']} validation), {GUIDED['n_test']} held-out test pairs (seed 1), "
             f"{GUIDED['steps_scalar']} steps for the learned scalars and {GUIDED['steps_spanlift']} for SpanLift, batch {GUIDED['batch']}. "
             f"'trained over w lo to hi' is one SpanLift trained on pairs at {', '.join(f'{w:g}' for w in guidance_grid(*parse_guidance(a.range)))} "
             f"({GUIDED['n_train']} + {GUIDED['n_val']} each, {RANGE_STEPS} steps), over the base picked nearest the middle of the range, "
             "and scored at each w on the same test pairs as the rest. The teacher and every method sample the same guided field; "
             "class acc. is how often the shipped Fashion classifier assigns a sample to the class asked for "
             "(the teacher's row is the reference). Cells of the summary: teacher RMSE / clf-FID / class acc.; 'best base' is the base row "
             "with the lowest RMSE in the table below it.\n", *guided_summary(results)]
    for (name, nfe, w), r in sorted(results.items(), key=lambda kv: kv[0][1:]):
        block += [f"\n### {name}, NFE {nfe}, guidance w = {w:g}\n", results_markdown(r['rows'])]
    block.append(GUIDED_END)
    old = Path(a.out).read_text() if a.keep and Path(a.out).exists() else ''
    pat = re.compile(re.escape(GUIDED_BEGIN) + '.*?' + re.escape(GUIDED_END), re.S)
    text = pat.sub(lambda m: '\n'.join(block), old) if pat.search(old) else old.rstrip('\n') + '\n\n' + '\n'.join(block)
    with atomic_write(a.out, 'w') as f: f.write(text.lstrip('\n') + '\n')
    js = Path(a.out).with_suffix('.json'); data = json.loads(js.read_text()) if a.keep and js.exists() else {}
    data.setdefault('results', {}).update({f'{k[0]}@{k[1]}@w{k[2]:g}': dict(rows=v['rows'], config=v['config']) for k, v in results.items()})
    write_json(js, dict(data, machine_guided=machine()))

def guided_main(a, t0: float):
    "The guided benchmark: each class-conditional backbone at each NFE and scale, with one solver over the range beside"
    rng, results = parse_guidance(a.range), {}
    if not isinstance(rng, tuple): raise SystemExit(f"--range must be lo:hi, got {a.range!r}")
    for name in a.backbones:
        for nfe in a.nfes: guided_runs(a, name, nfe, rng, results, lambda: write_guided(a, results, t0))
    print(f'wrote {a.out}')

if __name__ == '__main__': main()
