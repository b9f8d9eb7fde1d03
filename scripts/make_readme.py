"""The README's results and the front page's figures, made from the artefacts; and the check that no number in prose drifts.

    python scripts/make_readme.py            # rewrite the README's generated regions and nbs/images/*.png from bench/*.json
    python scripts/make_readme.py --check    # exit 1, naming each number, when README or front-page prose differs from its source

Generated regions sit between `<!-- generated: NAME -->` and `<!-- /generated: NAME -->`; everything else in the README is
hand-written and must carry no measured number (a decimal or a percentage), except inside `<!-- cited -->` regions, which
quote other people's results. Notebook prose (markdown cells) may quote a number only when the notebook's own outputs print it.
"""
from __future__ import annotations
import argparse, json, math, re, statistics, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS, GPU, THESIS = ROOT / 'bench' / 'RESULTS.json', ROOT / 'bench' / 'gpu_check_h100.json', ROOT / 'bench' / 'THESIS.json'
README, INDEX, IMAGES = ROOT / 'README.md', ROOT / 'nbs' / 'index.ipynb', ROOT / 'nbs' / 'images'
sys.path.insert(0, str(ROOT / 'bench'))
from levers_report import RECIPE_LEVER, HALF_LEVER, CHOSEN_ON, against, ms  # bench/levers.py's runs of the recipe, of the recipe on half its budget, and the backbones that chose it
NAMES = {'euler': 'Euler', 'heun': 'Heun', 'dpmpp_2m': 'DPM-Solver++(2M)', 'ipndm': 'iPNDM', 'ipndm_v': 'iPNDM (velocity)', 'unipc': 'UniPC', 'dopri5': 'dopri5'}

def load(path=RESULTS) -> dict:
    "The benchmark's JSON, or a one-line error naming the command that makes it"
    p = Path(path)
    if not p.exists(): raise FileNotFoundError(f'{p} is missing: run `python bench/run.py` to make it')
    return json.loads(p.read_text())

# ---- reading the benchmark -------------------------------------------------------------------------------------------
def label(key: str) -> str:
    "'digits-flow@3' -> 'digits-flow, NFE 3'; 'fashion-cond-flow@3@w1' -> 'fashion-cond-flow, NFE 3, w = 1'"
    name, nfe, *w = key.split('@')
    return f'{name}, NFE {nfe}' + (f', w = {w[0][1:]}' if w else '')

def _plain(rows, method):
    return [r for r in rows if r['method'] == method and 'transfer_from' not in r and 'guidance_range' not in r]

def _by_val(rows):
    return min(rows, key=lambda r: r.get('val_rmse', r['teacher_rmse'])) if rows else None

def summary(run: dict) -> dict:
    "One run's rows that the front page reports: the best base (held-out), the learned solvers (picked on validation), the rest"
    rows = run['rows']
    return dict(base=min(_plain(rows, 'base'), key=lambda r: r['teacher_rmse']), scalar=_by_val(_plain(rows, 'scalar')),
                spanlift=_by_val(_plain(rows, 'spanlift')), teacher=next((r for r in rows if r['method'] == 'teacher'), None),
                range=next((r for r in rows if 'guidance_range' in r), None),
                transfer=next((r for r in rows if 'transfer_from' in r), None), config=run['config'])

def summaries(results: dict) -> dict:
    "`summary` of every run, keyed like RESULTS.json: unguided runs first, each backbone's NFE in order"
    key = lambda k: ('@w' in k, k.split('@')[0] != 'digits-flow', k)
    return {k: summary(results['results'][k]) for k in sorted(results['results'], key=key)}

# ---- text --------------------------------------------------------------------------------------------------------------
def f3(x) -> str: return f'{x:.3f}'
def f2(x) -> str: return f'{x:.2f}'
def pct(x) -> str: return f'{100 * x:.0f}%'
def base_name(r) -> str: return NAMES.get(r['base'], r['base'])

def sizes_cell(c: dict) -> str:
    "A run's training pairs and SpanLift steps, as its config records them (runs that predate the recorded recipe show the pairs alone)"
    steps = (c.get('recipe') or {}).get('steps_spanlift') or c.get('steps_spanlift')
    return f"{c.get('n_train', '–')}, {steps if steps else 'not recorded'}"

def results_table(results: dict) -> str:
    "One row per benchmark setting: held-out teacher RMSE and classifier FID of the best base, the learned scalars and SpanLift"
    head = ('| setting | best base | learned scalars | SpanLift | SpanLift ÷ learned scalars | one SpanLift over w 1 to 5 | clf-FID floor | training pairs, SpanLift steps |\n'
            '|---|---|---|---|---|---|---|---|')
    out = [head]
    for k, s in summaries(results).items():
        cell = lambda r: (f"{f3(r['teacher_rmse'])} / {f2(r['fid_clf'])}" if 'fid_clf' in r else f3(r['teacher_rmse'])) if r else '–'
        out.append(f"| {label(k)} | {base_name(s['base'])}: {cell(s['base'])} | {cell(s['scalar'])} | {cell(s['spanlift'])} | "
                   f"{f2(s['spanlift']['teacher_rmse'] / s['scalar']['teacher_rmse']) if s['spanlift'] and s['scalar'] else '–'} | "
                   f"{cell(s['range'])} | {f2(s['base']['fid_clf_floor']) if 'fid_clf_floor' in s['base'] else '–'} | {sizes_cell(s['config'])} |")
    return '\n'.join(out)

def headline_key(results: dict) -> str:
    "The run the headline is about: digits-flow at NFE 3 when the benchmark has it, else its first unguided run"
    keys = list(summaries(results))
    return 'digits-flow@3' if 'digits-flow@3' in keys else next((k for k in keys if '@w' not in k), keys[0])

def headline(results: dict, key: str | None = None) -> str:
    "Bullets on the headline run, the matched-cost comparison, transfer and the operator's cost, all read from `results`"
    key = key or headline_key(results)
    s = summary(results['results'][key]); c = s['config']; b, sc, sl = s['base'], s['scalar'], s['spanlift']
    ratio = lambda a, r: f2(a['teacher_rmse'] / r['teacher_rmse'])
    out = [f"- On **{c['backbone']}** at **{c['nfe']} NFE** ({c['n_train']} training pairs, {c['n_test']} held-out test pairs): "
           f"SpanLift over {base_name(sl)} reaches a teacher RMSE of {f3(sl['teacher_rmse'])}, against {f3(b['teacher_rmse'])} for the best "
           f"base solver ({base_name(b)}, **{ratio(sl, b)}x**) and {f3(sc['teacher_rmse'])} for the learned scalars (**{ratio(sl, sc)}x**). "
           f"Its classifier FID is {f2(sl['fid_clf'])}, against {f2(b['fid_clf'])} and {f2(sc['fid_clf'])}, with a real-vs-real floor of {f2(b['fid_clf_floor'])}."]
    oc = c.get('operator_cost')
    if oc: out.append(f"- The operator is not free on a backbone this small: {pct(oc['params_ratio'])} of the backbone's parameters, "
                      f"{pct(oc['flops_ratio'])} of its FLOPs and {f2(oc['wall_ratio'])}x its wall time per step.")
    for m in matched_cost(results, key):
        better = 'beats' if m['spanlift'] < m['scalar'] else 'does not beat'
        out.append(f"- **Matched cost**: SpanLift at {m['nfe']} NFE ({f3(m['spanlift'])}) {better} the learned scalars at {m['nfe'] + 1} NFE "
                   f"({f3(m['scalar'])}); the best base at {m['nfe'] + 1} NFE, {m['base_name']}, scores {f3(m['base'])}. "
                   f"The operator's time over {m['nfe']} steps is worth {f2(m['overhead'])} backbone calls.")
    t = s['transfer']
    if t:
        own = _by_val([r for r in _plain(results['results'][key]['rows'], 'spanlift') if r['base'] == t['base']])
        alone = min((r for r in _plain(results['results'][key]['rows'], 'base') if r['base'] == t['base']), key=lambda r: r['teacher_rmse'])
        out.append(f"- **Transfer** across base solvers: the operator trained over {NAMES.get(t['transfer_from'], t['transfer_from'])}, applied unchanged "
                   f"over {base_name(t)}, scores {f3(t['teacher_rmse'])}, where {base_name(t)} alone scores {f3(alone['teacher_rmse'])}"
                   + (f" and SpanLift trained over it {f3(own['teacher_rmse'])}." if own else '.'))
    return '\n'.join(out)

def matched_cost(results: dict, key: str) -> list:
    "SpanLift at NFE n against the learned scalars and the best base at n + 1, when the benchmark has both runs"
    name, n = key.split('@')[0], int(key.split('@')[1])
    nxt = results['results'].get(f'{name}@{n + 1}')
    if nxt is None or '@w' in key: return []
    if not (summary(nxt)['scalar'] and summary(results['results'][key])['spanlift']): return []
    a, b = summary(results['results'][key]), summary(nxt)
    wall = (a['config'].get('operator_cost') or {}).get('wall_ratio')
    return [dict(nfe=n, spanlift=a['spanlift']['teacher_rmse'], scalar=b['scalar']['teacher_rmse'], base=b['base']['teacher_rmse'],
                 base_name=base_name(b['base']), overhead=n * wall if wall else float('nan'))]

def recipe_runs(results: dict) -> dict:
    "{(backbone, nfe): the recipe's runs} from RESULTS.json's levers, digits-flow first"
    lv = results.get('levers') or {}
    runs = {(k.split('@')[0], int(k.split('@')[1])): v for k, v in lv.items() if k.split('@')[2] == RECIPE_LEVER}
    return dict(sorted(runs.items(), key=lambda kv: (not kv[0][0].startswith('digits'), kv[0])))

def matched_bullets(results: dict) -> list:
    "Per backbone and NFE n: SpanLift at n against the best learned scalars at n + 1 measured (the recipe's, the transfer run's, other initial grids)"
    out, m = [], statistics.mean
    for mc in results.get('matched_cost_recipe') or []:
        n, t = mc['nfe'], results.get('transfer') or {}
        other = t.get('scalar', {}).get(str(n + 1), {}) if mc['backbone'] == t.get('backbone', 'digits-flow') else {}   # the transfer run's scalars, over more bases
        start = [(mc['scalar_next_other']['base'], mc['scalar_next_other']['test'])] if mc.get('scalar_next_other') else []   # the same stage from another initial grid
        best_base, best = min([(mc['scalar_next_base'][0], m(mc['scalar_next']))] + list(other.items()) + start, key=lambda kv: kv[1])
        tm = (f", and {'is faster' if m(mc['spanlift_seconds']) < m(mc['scalar_next_seconds']) else 'is not faster'} per sample "
              f"({m(mc['spanlift_seconds']) * 1e3:.2f} ms against {m(mc['scalar_next_seconds']) * 1e3:.2f} ms, one thread)") if mc.get('scalar_next_seconds') and best_base == mc['scalar_next_base'][0] else ''
        how = 'under the recipe' if mc.get('lever', RECIPE_LEVER) == RECIPE_LEVER else f"with {mc['n_train']} pairs and {mc['steps']} SpanLift steps"
        out.append(f"- **Matched cost {how}** ({mc['backbone']}): SpanLift at {n} NFE ({ms(mc['spanlift'])}) "
                   f"{dict(better='beats', tie='ties, inside its seed-to-seed sd, with', worse='does not beat')[against(mc['spanlift'], best)]} "
                   f"the best learned scalars at {n + 1} NFE ({NAMES.get(best_base, best_base)}, {best:.4f}){tm}.")
    return out

def projection_bullet(p: dict | None) -> list:
    "SpanLift at NFE 3 against the learned scalars at the same cost where the operator costs what the GPU check measured (bench/levers_report.py)"
    if not p: return []
    return [f"- **Projected to a CIFAR-size U-Net**, where the GPU check measured a 3-NFE SpanLift sample {p['share']:.1%} slower than its base solver's, SpanLift at NFE 3 "
            f"costs {p['cost']:.2f} backbone calls; on {p['backbone']}'s error curve the learned scalars at that cost reach {p['scalar_at_cost']:.4f} "
            f"(interpolated), against SpanLift's {p['spanlift3']:.4f} (`bench/RESULTS.md`, *Projected to a CIFAR-size U-Net*)."]

def init_bullets(results: dict, runs: dict) -> list:
    "The recipe's ratio against learned scalars from the best initial grid tried, and where that start matters"
    out, m = [], statistics.mean
    init = results.get('scalar_init') or []
    better = [(bb, n, v, min((r for r in init if (r['backbone'], r['nfe']) == (bb, n)), key=lambda r: r['test'])) for (bb, n), v in runs.items()
              if any((r['backbone'], r['nfe']) == (bb, n) for r in init)]
    better = [(bb, n, v, b) for bb, n, v, b in better if b['test'] < m(v['scalar'])]
    if better:
        out.append("- **Against learned scalars from the best initial grid tried** (`bench/scalar_init.py`): " + '; '.join(
            f"{bb} at {n} NFE, SpanLift {m(v['spanlift']):.4f} against {b['test']:.4f}, **{m(v['spanlift']) / b['test']:.2f}x**" for bb, n, v, b in better)
            + ". The recipe's SpanLift starts from the recipe's own scalars.")
    for key in dict.fromkeys((r['backbone'], r['nfe']) for r in init):
        rs = [r for r in init if (r['backbone'], r['nfe']) == key]; uni = next((r for r in rs if r['init'] == 'uniform'), None); best = min(rs, key=lambda r: r['test'])
        if uni and best['test'] < 0.9 * uni['test']:
            out.append(f"- **The learned scalars depend on their initial grid** ({key[0]}, {key[1]} NFE): their 200 steps barely move the times, so "
                       f"started from the base's uniform grid they end at {uni['test']:.4f}, and from the grid {best['init']} at {best['test']:.4f} "
                       "(`bench/scalar_init.py`). The recipe therefore picks the base and its starting grid together on validation pairs, "
                       "among grids that include one dense near the noise (`noise_quadratic`, $t_i = 1 - (i/N)^2$ on a flow path).")
    return out

def half_bullets(results: dict) -> list:
    "The recipe on half its distinct pairs for half its steps (bench/levers.py), the size of the benchmark tables, against the same learned scalars"
    lv, m = results.get('levers') or {}, statistics.mean
    runs = [(k.split('@')[0], k.split('@')[1], v) for k, v in lv.items() if k.split('@')[2] == HALF_LEVER]
    return [f"- **The recipe on half its pairs and steps** ({v['n_train']} pairs, {v['settings']['steps']} SpanLift steps, the size of the tables below): "
            f"{bb} at {n} NFE, SpanLift {ms(v['spanlift'])} against {m(v['scalar']):.4f}, **{ms(v['ratio'], 2)}x** "
            f"({len(v['seeds'])} seed{'s' if len(v['seeds']) > 1 else ''}"
            + (f"; its fit took {m(v['seconds']) / m(ref['seconds']):.2f}x the recipe's on the shared machine" if (ref := lv.get(f'{bb}@{n}@{RECIPE_LEVER}')) else '')
            + ")." for bb, n, v in runs]

def longer_bullets(results: dict) -> list:
    "SpanLift trained twice as long (bench/levers_report.py's `longer` rows), per backbone: each seed against the recipe's run of the same seed"
    by = {}
    for r in results.get('longer') or []: by.setdefault((r['backbone'], r['nfe'], r['steps']), []).append(r)
    return [f"- **Trained twice as long** ({steps} SpanLift steps, {bb} at {n} NFE, against the recipe's run of the same seed): " + '; '.join(
            f"seed {r['seed']} {r['spanlift']:.4f} against {r['ref_spanlift']:.4f} (**{r['spanlift'] / r['scalar']:.2f}x** the learned scalars against "
            f"{r['ref_spanlift'] / r['scalar']:.2f}x; train-set RMSE {r['ref_train']:.4f} to {r['train']:.4f})" for r in rs)
            + ('. The fit itself improves, so on this backbone the recipe\'s step budget under-fits.' if all(r['train'] < r['ref_train'] - 0.005 for r in rs) else '.')
            for (bb, n, steps), rs in by.items()]

def recipe_lines(results: dict) -> list:
    "Bullets on the recipe's own runs (bench/levers.py, over seeds): its ratio per backbone and NFE, and SpanLift at NFE 3 against learned scalars at NFE 4"
    runs = recipe_runs(results)
    if not runs: return []
    m = statistics.mean
    r3 = next(iter(runs.values()))
    eq = {(r['backbone'], r['nfe']): r for r in results.get('equal_flops') or []}
    said = lambda rs, each=False: '; '.join(f"{bb} at {n} NFE {ms(v['spanlift'])} against {m(v['scalar']):.4f}, **{ms(v['ratio'], 2)}x** "
                                            f"({len(v['seeds'])} seed{'s' if len(v['seeds']) > 1 else ''}"
                                            + (f": {', '.join(f'{x:.2f}' for x in v['ratio'])}" if each and len(v['seeds']) > 1 else '') + ')'
                                            + (f", its operator {v['flops_ratio']:.2f} of a backbone call in FLOPs, so a sample costs {n * (1 + v['flops_ratio']):.1f} calls' FLOPs"
                                               if each and v['flops_ratio'] > 0.25 else '')
                                            + (f", where the learned scalars at NFE {e['scalar_nfe']} reach {m(e['scalar']):.4f}" if each and (e := eq.get((bb, n))) else '')
                                            for (bb, n), v in rs)
    out = [f"- **The recipe** (`evaluate.SPANLIFT_RECIPE`, {r3['n_train']} training pairs, 512 held-out test pairs, mean ± sd over seeds), "
           "SpanLift against the learned scalars over the same base: " + said((k, v) for k, v in runs.items() if k[0] in CHOSEN_ON)
           + ". On digits-flow the error keeps falling with distinct pairs and steps (`bench/RESULTS.md`, Levers)."]
    if new := [(k, v) for k, v in runs.items() if k[0] not in CHOSEN_ON]:
        out.append(f"- **The same recipe on backbones that chose none of its settings** (those were chosen on {' and '.join(CHOSEN_ON)}; "
                   f"`bench/RESULTS.md`, *The recipe on backbones it was not chosen on*, which also says where the spread between seeds comes from): {said(new, each=True)}.")
    out += longer_bullets(results) + half_bullets(results) + matched_bullets(results) + init_bullets(results, runs) + projection_bullet(results.get('projection'))
    t = results.get('transfer') or {}
    if t.get('matrix', {}).get('mixed'):
        mx, bs = t['matrix']['mixed'], t['bases']; wins = [b for b in bs if mx[b] < t['base'][b]]
        out.append(f"- **Transfer** ({t['n_train']} pairs, {t['steps']} steps per operator): one operator trained over a random base per step ({', '.join(NAMES.get(b, b) for b in bs)}) "
                   f"beats the base alone under {len(wins)} of its {len(bs)} bases (for example {NAMES.get(bs[0], bs[0])}: {mx[bs[0]]:.4f} against {t['base'][bs[0]]:.4f}), "
                   f"and {'falls short of' if all(mx[b] > t['native'][b] for b in bs) else 'matches or beats'} each base's own operator "
                   f"({NAMES.get(bs[0], bs[0])}: {t['native'][bs[0]]:.4f}); the full matrix is in `bench/RESULTS.md`.")
    return out

def gpu_table(gpu: dict) -> str:
    "The GPU check's throughput, from bench/gpu_check_h100.json"
    b = gpu['bench']; s, tr, te = b['sample'], b['train'], b['teacher']
    u = b['unet']
    rows = [f"Measured by `bash scripts/gpu_check.sh` on one {b.get('device_name', 'GPU')} ({u['params'] / 1e6:.0f}M-parameter U-Net with random weights, "
            f"NFE {s['fp32']['nfe']}, sampling batch {s['fp32']['batch']}):", '',
            '| measure | plain base solver | SpanLift |', '|---|---|---|']
    for k, name in (('bf16', 'bf16'), ('fp32', 'fp32')):
        rows.append(f"| sampling, {name}, images/s | {s[k]['base_images_per_s']:.0f} (Euler) | {s[k]['spanlift_images_per_s']:.0f} "
                    f"({100 * s[k]['overhead']:.1f}% operator overhead) |")
    rows.append(f"| training, it/s | {tr['scalar']['it_per_s']:.2f} (learned scalars) | {tr['spanlift']['it_per_s']:.2f} |")
    rows.append(f"| teacher pairs/s | {te['heun']['pairs_per_s']:.0f} (Heun, {te['heun']['nfe_per_sample']} NFE); "
                f"{te['dopri5']['pairs_per_s']:.0f} (dopri5, {te['dopri5']['nfe_per_sample']:.0f} NFE) | |")
    d = gpu.get('ddp', {})
    if 'cpu_gloo' in d and 'device_gloo' in d:
        rows += ['', f"DDP: 2 gloo processes on CPU match 1 process to {d['cpu_gloo']['max_abs_diff']:.0e}; 2 processes sharing the GPU "
                     f"match to a relative L2 of {d['device_gloo']['rel_l2_diff']:.1e} under bf16."]
    return '\n'.join(rows)

def guided_notes(results: dict, backbone: str = 'fashion-cond-flow') -> str:
    "What the guided runs add beyond RMSE: the one solver over a range of scales, and class accuracy"
    runs = {k: summary(results['results'][k]) for k in summaries(results) if k.startswith(backbone + '@')}
    if not runs: return f'No guided run of {backbone} in bench/RESULTS.json.'
    gaps = [s['range']['teacher_rmse'] / s['spanlift']['teacher_rmse'] - 1 for s in runs.values() if s['range']]
    out = []
    if gaps: out.append(f"- One SpanLift trained over w 1 to 5 trails SpanLift trained at each scale by {pct(min(gaps))} to {pct(max(gaps))} in teacher RMSE, "
                        f"and beats the best base at {sum(s['range']['teacher_rmse'] < s['base']['teacher_rmse'] for s in runs.values() if s['range'])} "
                        f"of {len(gaps)} settings and the learned scalars at {sum(s['range']['teacher_rmse'] < s['scalar']['teacher_rmse'] for s in runs.values() if s['range'])}.")
    acc = lambda s: [s[m]['class_acc'] for m in ('base', 'scalar', 'spanlift') if s[m] and 'class_acc' in s[m]]
    for k, s in runs.items():
        if s['teacher'] and 'class_acc' in s['teacher'] and acc(s):
            lo, hi = f2(min(acc(s))), f2(max(acc(s)))
            out.append(f"- {label(k)}: the shipped classifier assigns {lo if lo == hi else lo + ' to ' + hi} of the few-step samples to the class asked for, "
                       f"the teacher's {f2(s['teacher']['class_acc'])}.")
    return '\n'.join(out)

def settings(results: dict) -> str:
    "Where the numbers were measured, and how to remeasure them"
    return (f"Measured by `python bench/run.py` on {results['machine']}; held-out teacher RMSE / classifier FID (`08_metrics`), "
            "each learned solver over the base and grid it picked on validation pairs; every row, its sizes and its settings: `bench/RESULTS.md`.")

def euler_dpm_note(results: dict, backbone: str = 'digits-flow') -> str:
    "Euler's and DPM-Solver++(2M)'s base rows side by side at each NFE the benchmark ran on `backbone`: equal at 3 NFE on a flow path"
    cells = []
    for key in sorted(k for k in results['results'] if k.startswith(backbone + '@') and k.count('@') == 1):
        rmse = {r['base']: r['teacher_rmse'] for r in _plain(results['results'][key]['rows'], 'base') if not r.get('tuned')}
        if {'euler', 'dpmpp_2m'} <= set(rmse):
            same = 'the same' if abs(rmse['euler'] - rmse['dpmpp_2m']) < 5e-5 else 'different'
            cells.append(f"at {key.split('@')[1]} NFE, {rmse['euler']:.4f} and {rmse['dpmpp_2m']:.4f} ({same})")
    return f"Held-out teacher RMSE of Euler and DPM-Solver++(2M) on `{backbone}` in `bench/RESULTS.json`: " + '; '.join(cells) + '.'

def thesis_note(results: dict, thesis: dict) -> str:
    "The thesis study's verdicts (`bench/THESIS.json`), in the words chapter 06a prints"
    from spanlift_nb.diagnose import claims_verdict, study_verdict
    return claims_verdict(thesis['settings'], results['results']) + '\n\n' + study_verdict(thesis['settings'], thesis['law'])

def sections(results: dict, gpu: dict | None = None, thesis: dict | None = None) -> dict:
    "Every generated region of the README, by name"
    out = {'results': '\n\n'.join(['\n'.join([headline(results), *recipe_lines(results)]), results_table(results), settings(results),
                                   '![Held-out teacher RMSE, from bench/RESULTS.json](nbs/images/quality_vs_nfe.png)',
                                   '![The guided runs, from bench/RESULTS.json](nbs/images/guided.png)'])}
    out['guided'] = guided_notes(results)
    out['euler_dpm'] = euler_dpm_note(results)
    if gpu: out['gpu'] = gpu_table(gpu)
    if thesis: out['thesis'] = thesis_note(results, thesis)
    return out

def regenerate(text: str, parts: dict) -> str:
    "`text` with each `<!-- generated: NAME -->` region replaced by `parts[NAME]`"
    for name, body in parts.items():
        pat = re.compile(rf'(<!-- generated: {name} -->\n).*?(<!-- /generated: {name} -->)', re.S)
        if not pat.search(text): raise ValueError(f'the README has no region `<!-- generated: {name} -->`; add its two marker lines')
        text = pat.sub(lambda m: m.group(1) + body + '\n' + m.group(2), text)
    return text

# ---- figures -----------------------------------------------------------------------------------------------------------
def plot_quality(results: dict, backbone: str = 'digits-flow'):
    "Held-out teacher RMSE against NFE: every base solver, the learned scalars and SpanLift, from `results`"
    import matplotlib.pyplot as plt
    runs = {int(k.split('@')[1]): r for k, r in results['results'].items() if k.split('@')[0] == backbone and '@w' not in k}
    if not runs: return None
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    nfes = sorted(runs)
    for name in sorted({r['base'] for n in nfes for r in _plain(runs[n]['rows'], 'base')}):
        pts = [(n, min(r['teacher_rmse'] for r in _plain(runs[n]['rows'], 'base') if r['base'] == name)) for n in nfes
               if any(r['base'] == name for r in _plain(runs[n]['rows'], 'base'))]
        ax.plot(*zip(*pts), 'o-', color='0.65', lw=1, ms=4); ax.annotate(NAMES.get(name, name), pts[-1], fontsize=7, xytext=(4, 0), textcoords='offset points')
    for m, style in (('scalar', dict(marker='D', color='tab:blue', label='learned scalars')), ('spanlift', dict(marker='*', ms=12, color='tab:orange', label='SpanLift'))):
        pts = [(n, summary(runs[n])[m]['teacher_rmse']) for n in nfes if summary(runs[n])[m]]
        if not pts: continue
        ax.plot(*zip(*pts), '-', **style)
        for x, y in pts: ax.annotate(f3(y), (x, y), fontsize=7, xytext=(5, -8), textcoords='offset points')
    ax.set(xlabel='NFE (measured)', ylabel='held-out teacher RMSE', xticks=nfes, title=f'{backbone}: bench/RESULTS.json')
    ax.set_xlim(nfes[0] - 0.3, nfes[-1] + 0.6); ax.grid(alpha=.3); ax.legend(fontsize=8); fig.tight_layout()
    return fig

def plot_guided(results: dict, backbone: str = 'fashion-cond-flow'):
    "One panel per guided run (titled 'NFE 3, w = 1'): the best base, the learned scalars, SpanLift and the one solver over a range"
    import matplotlib.pyplot as plt
    keys = [k for k in summaries(results) if k.startswith(backbone + '@')]
    if not keys: return None
    fig, axs = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), sharey=True, squeeze=False)
    for ax, k in zip(axs[0], keys):
        s = summary(results['results'][k])
        bars = [(f"best base\n{base_name(s['base']).replace('(', chr(10) + '(')}", s['base'], '0.6'), ('learned\nscalars', s['scalar'], 'tab:blue'),
                ('SpanLift', s['spanlift'], 'tab:orange')] + ([('SpanLift\nw 1 to 5', s['range'], 'tab:red')] if s['range'] else [])
        xs = range(len(bars))
        ax.bar(xs, [r['teacher_rmse'] for _, r, _ in bars], color=[c for *_, c in bars])
        for x, (_, r, _) in zip(xs, bars): ax.text(x, r['teacher_rmse'], f3(r['teacher_rmse']), ha='center', va='bottom', fontsize=7)
        ax.set_xticks(list(xs), [n for n, *_ in bars], fontsize=7); ax.set_title(label(k).split(', ', 1)[1], fontsize=10)
    axs[0, 0].set_ylabel('held-out teacher RMSE'); fig.suptitle(f'{backbone}: bench/RESULTS.json', fontsize=10); fig.tight_layout()
    return fig

def plot_idea():
    "The idea in one picture: scalar solvers move inside the span of the buffer; SpanLift's operator reaches the teacher outside it"
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.add_patch(Polygon([(0, 0), (6, 0), (8, 2.2), (2, 2.2)], closed=True, color='tab:blue', alpha=.12))
    ax.text(6.4, 0.12, 'span of the buffer\n(states, velocities)', color='tab:blue', fontsize=9, ha='center', va='bottom')
    x0, base, best, teacher = (1.2, 0.6), (4.4, 0.9), (4.9, 1.5), (4.9, 3.3)
    arrow = lambda a, b, c, **k: ax.annotate('', b, a, arrowprops=dict(arrowstyle='->', color=c, lw=2, **k))
    arrow(x0, base, '0.4'); arrow(x0, best, 'tab:blue'); arrow(best, teacher, 'tab:orange', ls='--')
    ax.plot(*teacher, 'k*', ms=14); ax.plot(*x0, 'ko', ms=5); ax.plot([best[0], best[0]], [best[1], teacher[1]], ':', color='0.5', lw=.8)
    ax.text(x0[0] - .1, x0[1] - .35, 'buffer', fontsize=9)
    ax.text(base[0] - 1.4, base[1] - .45, 'base solver step', fontsize=9, color='0.3')
    ax.text(best[0] + .15, best[1] - .05, 'best scalars can do\n(learned-scalar solvers)', fontsize=9, color='tab:blue', va='top')
    ax.text(teacher[0] + .2, teacher[1], "teacher's step", fontsize=9)
    ax.text(best[0] + .2, (best[1] + teacher[1]) / 2, "SpanLift's operator $R_\\phi$:\nthe part outside the span,\nat no extra NFE",
            fontsize=9, color='tab:orange', va='center')
    ax.set(xlim=(0, 9), ylim=(-.3, 3.8), aspect='equal'); ax.axis('off'); fig.tight_layout()
    return fig

def write_figures(results: dict, folder=IMAGES) -> list:
    "Write the front page's figures from `results` into `folder`; returns their paths"
    import matplotlib.pyplot as plt
    out = []
    for name, fig in (('idea.png', plot_idea()), ('quality_vs_nfe.png', plot_quality(results)), ('guided.png', plot_guided(results))):
        if fig is None: continue
        p = Path(folder) / name; fig.savefig(p, dpi=100); plt.close(fig); out.append(p)
    return out

# ---- drift -------------------------------------------------------------------------------------------------------------
NUMBER = re.compile(r'(?<![\w.\-/])(-?\d+\.\d+|\d+(?=\s?%))(?:\s?(%)|x\b)?')
HIDDEN = re.compile(r'```.*?```|`[^`\n]*`|<!--.*?-->|\$\$.*?\$\$|\$[^$\n]+\$|\]\([^)]*\)|https?://\S+', re.S)

def prose_numbers(md: str) -> list:
    "The measured-looking numbers (decimals and percentages) in Markdown prose, outside code, maths, links and comments"
    return [m.group(0).strip() for m in NUMBER.finditer(HIDDEN.sub(' ', md))]

def values(obj) -> list:
    "Every number in a JSON-like object, or printed in a string"
    if isinstance(obj, bool): return []
    if isinstance(obj, (int, float)): return [float(obj)] if math.isfinite(obj) else []
    if isinstance(obj, dict): return [v for x in obj.values() for v in values(x)]
    if isinstance(obj, (list, tuple)): return [v for x in obj for v in values(x)]
    if isinstance(obj, str): return [float(x) for x in re.findall(r'-?\d+(?:\.\d+)?(?:e-?\d+)?', obj)]
    return []

def matches(shown: str, source: list) -> bool:
    "True when a number shown in prose is one of `source` at the precision shown (a percentage may be a fraction times 100)"
    txt = shown.rstrip('%x ').strip()
    p, d = float(txt), len(txt.split('.')[1]) if '.' in txt else 0
    tol = 0.5 * 10 ** -d + 1e-12
    cands = source + ([100 * v for v in source] if shown.endswith('%') else [])
    return any(abs(v - p) <= tol for v in cands)

def unsourced(md: str, source: list) -> list:
    "Numbers in the prose `md` that no value of `source` explains"
    return [n for n in prose_numbers(md) if not matches(n, source)]

def hand_written(readme: str) -> str:
    "The README without its generated and cited regions"
    return re.sub(r'<!-- (generated: \w+|cited) -->.*?<!-- /(generated: \w+|cited) -->', ' ', readme, flags=re.S)

def check_readme(readme: str, results: dict, gpu: dict | None = None, thesis: dict | None = None) -> list:
    "Problems: a generated region that differs from what the artefacts give now, or a measured number typed into prose"
    out = []
    for name, body in sections(results, gpu, thesis).items():
        m = re.search(rf'<!-- generated: {name} -->\n(.*?)\n<!-- /generated: {name} -->', readme, re.S)
        if m is None: out.append(f'README: no region `<!-- generated: {name} -->`'); continue
        old, new = prose_numbers(m.group(1)), prose_numbers(body)
        if m.group(1) != body:
            diff = [f'{a} (source: {b})' for a, b in zip(old, new) if a != b] or ['text differs']
            out.append(f"README region `{name}` differs from the artefact: {', '.join(diff[:8])}; run `python scripts/make_readme.py`")
    out += [f'README prose has a number with no source: {n}' for n in unsourced(hand_written(readme), [])]
    return out

def notebook_text(nb: dict) -> tuple:
    "The markdown cells' text and every output's text of a notebook"
    md = '\n\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    outs = []
    for c in nb['cells']:
        for o in c.get('outputs', []):
            if 'text' in o: outs.append(''.join(o['text']))
            for k in ('text/markdown', 'text/plain', 'text/html'):
                if k in o.get('data', {}): outs.append(''.join(o['data'][k]))
    return md, '\n'.join(outs)

def check_notebook(path, extra: list = ()) -> list:
    "Numbers in a notebook's markdown cells that its own outputs (and `extra` values) do not print"
    md, outs = notebook_text(json.loads(Path(path).read_text()))
    return [f'{Path(path).name}: prose number with no source in its outputs: {n}' for n in unsourced(md, values(outs) + list(extra))]

def check_index(results: dict, path=INDEX) -> list:
    "The front page: its prose quotes only what it prints, and what it prints from RESULTS.json is what RESULTS.json gives now"
    nb = json.loads(Path(path).read_text())
    out = check_notebook(path)
    _, outs = notebook_text(nb)
    for name, body in index_sections(results).items():
        if body not in outs: out.append(f'{Path(path).name}: its printed `{name}` differs from bench/RESULTS.json; re-run the notebook')
    return out

def index_sections(results: dict) -> dict:
    "What the front page prints from RESULTS.json"
    return {'headline': headline(results), 'table': results_table(results) + '\n\n' + settings(results), 'euler_dpm': euler_dpm_note(results)}

def optional(path) -> dict | None:
    "A JSON artefact that may be absent (the GPU check, the thesis study)"
    return json.loads(Path(path).read_text()) if Path(path).exists() else None

def check_all(root=ROOT) -> list:
    "Every drift problem in the README and the front page"
    results = load(Path(root) / 'bench' / 'RESULTS.json')
    gpu, thesis = (optional(Path(root) / 'bench' / f) for f in ('gpu_check_h100.json', 'THESIS.json'))
    return check_readme((Path(root) / 'README.md').read_text(), results, gpu, thesis) + check_index(results, Path(root) / 'nbs' / 'index.ipynb')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='only check; exit 1 and name each drifted number')
    ap.add_argument('--no-figures', action='store_true', help='leave nbs/images alone')
    a = ap.parse_args(argv)
    if a.check:
        problems = check_all()
        print('\n'.join(problems) or 'no drift'); return 1 if problems else 0
    results = load()
    README.write_text(regenerate(README.read_text(), sections(results, optional(GPU), optional(THESIS))))
    if not a.no_figures:
        import matplotlib; matplotlib.use('Agg')
        for p in write_figures(results): print('wrote', p.relative_to(ROOT))
    print('wrote README.md'); return 0

if __name__ == '__main__': sys.exit(main())
