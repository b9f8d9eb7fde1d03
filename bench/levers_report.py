"""Gather bench/LEVERS/*.json (written by bench/levers.py) into the "Levers" section of bench/RESULTS.md, its
`levers` entry in RESULTS.json, and the figure bench/LEVERS/pairs.png.

    python bench/levers_report.py"""
import json, math, re, statistics as st
from pathlib import Path
from spanlift_nb.core import atomic_write, write_json

HERE = Path(__file__).parent
BEGIN, END = '<!-- levers: written by bench/levers_report.py -->', '<!-- /levers -->'
ABOUT = dict(recipe='1024 pairs, SpanLift 350 steps: scalars first, then SpanLift from them, scalars learning beside it (width 32, 3 blocks)',
             frozen='staging: scalars first, then the operator alone (scalars frozen)',
             joint='staging: scalars and operator jointly from the base, 550 steps (no scalar stage)',
             proposal="operator input: + the base's proposed next state and the step size",
             out_of_span="out-of-span operator: its output projected off the buffer's span, per sample",
             w16b2='capacity: width 16, 2 blocks', w64b3='capacity: width 64, 3 blocks', w32b6='capacity: width 32, 6 blocks',
             pairs256='pairs: the first 256 training pairs', pairs512='pairs: the first 512 training pairs', pairs1k='pairs: the first 1024 training pairs', pairs2k='pairs: the first 2048 training pairs',
             steps700b64='700 steps at batch 64 (the same number of samples seen)',
             **{f'pairs{n}': f'pairs: {n} distinct training pairs' for n in (2048, 4096, 8192)},
             pairs8192s900='pairs: 8192, and SpanLift 900 steps', pairs8192s2000='the recipe on half its pairs and steps: 8192 pairs, SpanLift 2000 steps (the size of the benchmark tables)', pairs16384s2000='pairs: 16384, and SpanLift 2000 steps', pairs16384s4000='the recipe (`evaluate.SPANLIFT_RECIPE`, `RECIPE_PAIRS`): 16384 pairs, SpanLift 4000 steps', pairs16384s8000='the recipe with SpanLift trained twice as long: 16384 pairs, 8000 steps', **{f'pairs{n}s{k}det': f"pairs: {n}, SpanLift {k} steps, no gradient through the frozen backbone (`detach_backbone`)" for n in (8192, 16384) for k in (2000, 3200, 4000)}, pairs8192inter1='pairs: 8192, and path supervision (weight 1, annealed)',
             **{f'inter{w}': f"path supervision: the student's interior states against the teacher's path, weight {w}, annealed to 0" for w in ('0.3', '1', '3')},
             inter1c="path supervision, weight 1, held constant")
RECIPE_LEVER = 'pairs16384s4000'                # bench/levers.py's run of the recipe (`evaluate.SPANLIFT_RECIPE` on `RECIPE_PAIRS` pairs)
HALF_LEVER = FRONTIER_LEVER = 'pairs8192s2000'  # the recipe on half its pairs for half its steps: the benchmark tables' size, and the learned solvers on the cost curve
LONG_LEVER = 'pairs16384s8000'                  # the recipe with SpanLift trained twice as long

CHOSEN_ON = ('digits-flow', 'fashion-flow')     # the backbones whose lever runs chose the recipe's settings and budget
UNTUNED = {'digits-edm': 'the same digits, a diffusion model on the EDM path (σ from 80 to 0, data prediction)',
           'fashion-latent-flow': "Fashion-MNIST through an autoencoder: flow matching in its 4×7×7 latent (RMSE in the latent)",
           'rain-nowcast': 'synthetic rain fields: a flow model of the next two 32×32 frames given the past four (each pair with its own past)'}

def about(lever: str) -> str:
    "What a lever changes; 'short-' marks the short budget (scalars 100 steps, SpanLift 120, batch 32)"
    return ABOUT.get(lever[6:], lever[6:]) + ' [short budget]' if lever.startswith('short-') else ABOUT.get(lever, lever)

def order(lever: str) -> tuple:
    base = lever[6:] if lever.startswith('short-') else lever
    return (lever.startswith('short-'), list(ABOUT).index(base) if base in ABOUT else 99)

def load() -> list: return [json.loads(f.read_text()) for f in sorted((HERE / 'LEVERS').glob('*.json')) if not f.name.startswith(('transfer-', 'demo-', 'scalar-init'))]

def demo_row(i, r) -> str:
    "One `spanlift demo` run (its results.json) as a table row: budget, times, and the three solvers' held-out RMSE"
    rows, c = r['rows'], r['config']
    best = min((x for x in rows if x['method'] == 'base'), key=lambda x: x['teacher_rmse'])
    sc, sl = (next(x for x in rows if x['method'] == m) for m in ('scalar', 'spanlift'))
    return (f"| {i} | {c['n_train']}, {c['recipe']['steps_spanlift']} | {c['wall_seconds']:.0f} | {c['pairs_seconds']:.0f} | {sc['train_seconds']:.0f} | {sl['train_seconds']:.0f} | "
            f"{best['teacher_rmse']:.4f} ({NAMES.get(best['base'], best['base'])}) | {sc['teacher_rmse']:.4f} | {sl['teacher_rmse']:.4f} | {sl['teacher_rmse'] / sc['teacher_rmse']:.2f} |")

def demo_lines() -> list:
    "The demo as a new user runs it (`spanlift demo` from an empty cache; its results.json copied to LEVERS/demo-*.json), and the budgets tried for it"
    runs = [json.loads(f.read_text()) for f in sorted((HERE / 'LEVERS').glob('demo-*.json'))]
    tried = [json.loads(f.read_text()) for f in sorted((HERE / 'LEVERS' / 'demo-budget').glob('budget-*.json'), key=lambda f: int(f.stem.split('-')[1]))]
    if not runs: return []
    from spanlift_nb.evaluate import DEMO_SIZES
    full, head = DEMO_SIZES['full'], ['| run | pairs, SpanLift steps | wall s | teacher pairs s | learned scalars fit s | SpanLift fit s | best base | learned scalars | SpanLift | SpanLift / scalars |',
                                      '|---|---|---|---|---|---|---|---|---|---|']
    out = ['\n### The demo\n', f"`spanlift demo` (digits-flow, NFE 3: the recipe on the demo's own budget, `DEMO_SIZES['full']`, now {full['n_train']} pairs and "
           f"{full['steps_spanlift']} SpanLift steps) in a fresh venv from an empty teacher-pair cache, two torch threads on the idle 2-core machine; "
           'each row one run at the budget it names, its own `results.json`.\n', *head, *[demo_row(i, r) for i, r in enumerate(runs, 1)]]
    if tried: out += ['\nBudgets tried for the demo (`run_demo` with `n_train` and `steps_spanlift` overridden, one torch thread on the machine shared with '
                      'another job, so the seconds are upper bounds; `LEVERS/demo-budget/`):\n', *head, *[demo_row(i, r) for i, r in enumerate(tried, 1)]]
    return out

def against(xs, ref: float) -> str:
    "'better', 'tie' or 'worse': the mean of `xs` (over seeds) against `ref`; a difference inside the seeds' sd is a tie"
    m, sd = st.mean(xs), (st.stdev(xs) if len(xs) > 1 else 0.0)
    return 'tie' if abs(m - ref) <= sd else 'better' if m < ref else 'worse'

def ms(xs, nd=4):
    "mean ± sd (sample sd; a single run shows its value and n = 1)"
    return f'{st.mean(xs):.{nd}f} ± {st.stdev(xs):.{nd}f}' if len(xs) > 1 else f'{xs[0]:.{nd}f}'

def groups(runs) -> dict:
    "The runs of each (backbone, NFE, lever) that trained SpanLift"
    g = {}
    for r in runs:
        if 'spanlift_rmse' in r: g.setdefault((r['backbone'], r['nfe'], r['lever']), []).append(r)
    return g

def scalar_rows(runs) -> dict:
    "The learned scalars alone (lever 'scalars'), per backbone and NFE: their test RMSE and wall seconds per sample, over seeds"
    out = {}
    for r in runs:
        if r.get('lever') != 'scalars': continue
        v = out.setdefault(f"{r['backbone']}@{r['nfe']}", dict(seeds=[], scalar=[], sample_seconds=[], base=r['base'], n_train=r['settings']['n_train']))
        v['seeds'].append(r['seed']); v['scalar'].append(r['scalar_rmse']); v['sample_seconds'].append(r['sample_seconds']['scalar'])
    return out

def table(runs) -> tuple:
    g = groups(runs); lines = ['| backbone | lever | seeds | learned scalars | SpanLift | SpanLift / scalars | SpanLift train-set RMSE | SpanLift fit s | operator FLOPs / backbone |',
                               '|---|---|---|---|---|---|---|---|---|']
    summary = {}
    for (bb, nfe, lever), rs in sorted(g.items(), key=lambda kv: (kv[0][0], *order(kv[0][2]))):
        sc, sl, ra = [r['scalar_rmse'] for r in rs], [r['spanlift_rmse'] for r in rs], [r['ratio'] for r in rs]
        summary[f'{bb}@{nfe}@{lever}'] = dict(seeds=[r['seed'] for r in rs], scalar=sc, spanlift=sl, ratio=ra, spanlift_train=[r['spanlift_train_rmse'] for r in rs],
                                              seconds=[r['spanlift_seconds'] for r in rs], val=[r['spanlift_val'] for r in rs], curves=[r.get('spanlift_curve') for r in rs], settings=rs[0]['settings'], base=rs[0]['base'], n_train=rs[0]['settings']['n_train'],
                                              flops_ratio=rs[0]['cost']['flops_ratio'], wall_ratio=st.mean(r['cost']['wall_ratio'] for r in rs), params_operator=rs[0]['cost']['params_operator'])
        lines.append(f"| {bb}{'' if nfe == 3 else f', NFE {nfe}'} | {about(lever)} | {len(rs)} | {ms(sc)} | {ms(sl)} | {ms(ra, 2)} | {ms([r['spanlift_train_rmse'] for r in rs])} | "
                     f"{ms([r['spanlift_seconds'] for r in rs], 0)} | {rs[0]['cost']['flops_ratio']:.3f} |")
    return lines, summary

def bases_lines(runs) -> list:
    out = []
    for r in runs:
        if 'rows' in r and r['rows'] and 'base' in r['rows'][0]:
            name = r.get('backbone') or '?'
            nfes = sorted({x['nfe'] for x in r['rows']})
            where = '256 pairs at seed 0, on which nothing is trained' if name.startswith('fashion') else 'the 512 held-out test pairs'
            out += [f"\n{name}: teacher RMSE of each base solver on its default grid, {where}\n", '| base | ' + ' | '.join(f'NFE {n}' for n in nfes) + ' |',
                    '|---|' + '---|' * len(nfes)]
            for b in dict.fromkeys(x['base'] for x in r['rows']):
                cell = {x['nfe']: x['rmse'] for x in r['rows'] if x['base'] == b}
                out.append(f'| {b} | ' + ' | '.join(f"{cell[n]:.4f}" if n in cell else '–' for n in nfes) + ' |')
    return out

NOT_MEASURED = ['fashion-flow levers other than the recipe and the recipe on half its budget (a fashion-flow fit takes several times as long as a digits-flow one: the "fit s" column)',
                'the operator levers (inputs, capacity, the out-of-span projection, staging) at the recipe\'s budget: each was measured at the short '
                'budget only, where none moved SpanLift beyond the spread between seeds',
                'streamed pairs, pairs from the cheaper teacher, a two-level operator, the base as an operator input; under the recipe: NFE 2, '
                'NFE 4 to 6 on fashion-flow, and NFE 4 to 6 on digits-flow over three seeds',
                'the recipe on the class-conditional fashion-cond-flow under guidance; SpanLift trained longer than the recipe on any backbone but digits-edm']

def verdicts(summary) -> list:
    "One line per lever against the recipe on the same budget and backbone, then the ratio of the reference rows, then what was not measured"
    out = []
    for key, v in summary.items():
        bb, nfe, lever = key.split('@')
        ref = summary.get(f"{bb}@{nfe}@{'short-recipe' if lever.startswith('short-') else 'recipe'}")
        if ref is None or v is ref: continue
        m, r, sd = st.mean(v['spanlift']), st.mean(ref['spanlift']), (st.stdev(ref['spanlift']) if len(ref['spanlift']) > 1 else float('nan'))
        out.append(f"- {bb}, {about(lever)}: SpanLift {m:.4f} against {r:.4f} ({m - r:+.4f}; that row's seed-to-seed sd {sd:.4f}, "
                   f"{len(v['spanlift'])} seed(s) against {len(ref['spanlift'])}).")
    for key, v in summary.items():
        if key.endswith(('@recipe', '@short-recipe', f'@{RECIPE_LEVER}', f'@{HALF_LEVER}')):
            ra = st.mean(v['ratio'])
            bb, nfe, lever = key.split('@')
            out.append(f"- **{bb}, NFE {nfe}, {about(lever)}: SpanLift / learned scalars {ra:.2f}** over {len(v['ratio'])} seed(s).")
    return (['\nEach lever against the row it changes (1024 pairs and SpanLift 350 steps, or the short budget; a difference inside the seed-to-seed spread is no difference):\n', *out] if out else []) + \
           ['\nNot measured in this sweep:\n', *[f'- {x}' for x in NOT_MEASURED]]

def pairs_points(summary, short: bool) -> list:
    "(n_train, scalar, SpanLift, SpanLift train-set, SpanLift sd) per pair count, on one budget, the recipe's other settings"
    pre = 'short-' if short else ''
    keep = lambda lever: lever == f'{pre}recipe' or (lever.startswith(f'{pre}pairs') and lever[len(pre) + 5:].isdigit())
    sd = lambda xs: st.stdev(xs) if len(xs) > 1 else 0.0
    return sorted((v['n_train'], st.mean(v['scalar']), st.mean(v['spanlift']), st.mean(v['spanlift_train']), sd(v['spanlift']))
                  for k, v in summary.items() if k.startswith('digits-flow@3@') and keep(k.split('@')[2]))

def pairs_figure(summary) -> Path | None:
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    short = len(pairs_points(summary, False)) < 2; pts = pairs_points(summary, short)
    if len(pts) < 2: return None
    n, sc, sl, tr, sd = zip(*pts)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(n, sc, 'D-', label='learned scalars (held out)'); ax.errorbar(n, sl, yerr=sd, fmt='o-', capsize=3, label='SpanLift (held out, ± sd)')
    ax.plot(n, tr, 'o--', label='SpanLift (training pairs)')
    ax.set_xscale('log', base=2); ax.set_xlabel('distinct training pairs'); ax.set_ylabel('teacher RMSE')
    ax.set_title(f"digits-flow, NFE 3, {'short budget' if short else 'the recipe'}")
    ax.grid(alpha=.3); ax.legend(fontsize=8); fig.tight_layout()
    f = HERE / 'LEVERS' / 'pairs.png'; fig.savefig(f, dpi=110); return f

def frontier(runs) -> tuple:
    "(figure path, lines): teacher RMSE against wall seconds and FLOPs per sample, base solvers at NFE 2-10, learned ones at each NFE measured"
    fr = [r for r in runs if r.get('kind') == 'frontier']
    pts = [r for r in runs if r.get('lever') == FRONTIER_LEVER and 'sample_seconds' in r and r['backbone'] == 'digits-flow']   # the frontier's base solvers are digits-flow's
    if not fr or not pts: return None, []
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    gflop = pts[0]['cost']['flops_backbone'] / 1e9 / 16                     # operator_cost counts a batch of 16
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    series = {b: [(x['seconds'], x['nfe'] * gflop, x['rmse']) for x in fr[0]['rows'] if x['base'] == b] for b in dict.fromkeys(x['base'] for x in fr[0]['rows'])}
    by_nfe = {}
    for r in pts: by_nfe.setdefault(r['nfe'], []).append(r)
    mean = lambda xs: sum(xs) / len(xs)
    series['learned scalars'] = [(mean([r['sample_seconds']['scalar'] for r in rs]), n * gflop, mean([r['scalar_rmse'] for r in rs])) for n, rs in sorted(by_nfe.items())]
    series['SpanLift'] = [(mean([r['sample_seconds']['spanlift'] for r in rs]), n * gflop * (1 + rs[0]['cost']['flops_ratio']), mean([r['spanlift_rmse'] for r in rs]))
                          for n, rs in sorted(by_nfe.items())]
    for name, xs in series.items():
        st_ = dict(lw=2.2, marker='o') if name == 'SpanLift' else dict(marker='.', alpha=.7)
        for ax, j in zip(axs, (0, 1)): ax.plot([x[j] for x in xs], [x[2] for x in xs], label=name, **st_)
    axs[0].set_xlabel('wall seconds per sample (1 thread)'); axs[1].set_xlabel('GFLOPs per sample'); axs[0].set_ylabel('teacher RMSE')
    for ax in axs: ax.set_yscale('log'); ax.grid(alpha=.3)
    axs[1].legend(fontsize=7); fig.suptitle('digits-flow: error against cost (base solvers NFE 2-10)', fontsize=10); fig.tight_layout()
    f = HERE / 'LEVERS' / 'frontier.png'; fig.savefig(f, dpi=110)
    others = [x for k, xs in series.items() if k != 'SpanLift' for x in xs]
    lines = ['\n### Error against cost\n', f"Learned solvers: the recipe on {pts[0]['settings']['n_train']} pairs ({len(pts)} fit(s)); base solvers on their default grids. "
             "Wall seconds: one torch thread, the whole held-out batch, on the shared machine (upper bounds).\n",
             '| SpanLift NFE | RMSE | GFLOPs | s / sample | cheapest other method with lower RMSE (GFLOPs) |', '|---|---|---|---|---|']
    for (sec, fl, e), n in zip(series['SpanLift'], sorted(by_nfe)):
        better = sorted((x for x in others if x[2] < e), key=lambda x: x[1])
        lines.append(f"| {n} | {e:.4f} | {fl:.3f} | {sec * 1e3:.2f} ms | " + (f"{better[0][2]:.4f} ({better[0][1]:.3f})" if better else 'none') + ' |')
    return f, lines

def recipe_run(summary, backbone: str, nfe: int) -> dict | None:
    "The recipe's runs at one NFE, or where it did not run there, those of the recipe on half its budget (the same learned-scalar stage)"
    return summary.get(f'{backbone}@{nfe}@{RECIPE_LEVER}') or summary.get(f'{backbone}@{nfe}@{HALF_LEVER}')

def untuned_lines(summary, scalars: dict) -> list:
    "The recipe at NFE 3, unchanged, on backbones that chose none of its settings, beside the runs that chose them"
    rows = [(k.split('@')[0], v) for k, v in summary.items() if k.endswith(f'@3@{RECIPE_LEVER}')]
    new = [(bb, v) for bb, v in rows if bb not in CHOSEN_ON]
    if not new: return []
    out = ['\n### The recipe on backbones it was not chosen on\n',
           f"The recipe's settings and budget were chosen from runs on {' and '.join(CHOSEN_ON)} only. The same `bench/levers.py {RECIPE_LEVER}` run, "
           "nothing changed, on other shipped backbones: " + '; '.join(f'{bb}, {UNTUNED.get(bb, bb)}' for bb, _ in new) + '. NFE 3, mean ± sd over seeds.\n',
           '| backbone | chose the recipe | seeds | base (grid) | learned scalars | SpanLift | SpanLift / scalars | the same, per seed | SpanLift train-set RMSE | SpanLift fit s | operator FLOPs / backbone | a SpanLift sample, in backbone calls of FLOPs |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for bb, v in sorted(rows, key=lambda r: (r[0] not in CHOSEN_ON, r[0])):
        out.append(f"| {bb} | {'yes' if bb in CHOSEN_ON else 'no'} | {len(v['seeds'])} | {NAMES.get(v['base'][0], v['base'][0])} ({v['base'][1]}) | {ms(v['scalar'])} | "
                   f"{ms(v['spanlift'])} | {ms(v['ratio'], 2)} | {', '.join(f'{x:.2f}' for x in v['ratio'])} | {ms(v['spanlift_train'])} | {ms(v['seconds'], 0)} | {v['flops_ratio']:.2f} | {3 * (1 + v['flops_ratio']):.2f} |")
    return out + flops_lines(summary, scalars) + longer_lines(summary) + ['\nWhere the spread between seeds comes from (the same pairs; the seed sets the fits\' initialisation and batch order):\n',
                  *[spread_line(bb, v) for bb, v in rows if len(v['seeds']) > 1]]

def equal_flops(summary, scalars) -> list:
    "Where the operator is a large share of a backbone call: SpanLift under the recipe against the learned scalars at the NFE of at least equal FLOPs"
    out = []
    for key, v in summary.items():
        bb, nfe, lever = key.split('@'); n = int(nfe); calls = n * (1 + v['flops_ratio'])
        if lever == RECIPE_LEVER and v['flops_ratio'] > 0.25 and (at := scalars.get(f'{bb}@{math.ceil(calls)}')):
            out.append(dict(backbone=bb, nfe=n, share=v['flops_ratio'], calls=calls, wall_share=v['wall_ratio'], spanlift=v['spanlift'], scalar_nfe=math.ceil(calls), scalar=at['scalar'], base=at['base']))
    return out

def flops_lines(summary, scalars) -> list:
    return [f"\n{r['backbone']}'s operator costs {r['share']:.2f} of a backbone call in FLOPs, so SpanLift at NFE {r['nfe']} spends {r['calls']:.2f} calls' FLOPs. "
            f"The learned scalars at NFE {r['scalar_nfe']} ({NAMES.get(r['base'][0], r['base'][0])}, {r['base'][1]} grid, one fit) spend no more and reach {ms(r['scalar'])}, "
            f"against SpanLift's {ms(r['spanlift'])}: at equal FLOPs SpanLift {dict(better='wins', tie='ties, inside its seed-to-seed sd', worse='loses')[against(r['spanlift'], st.mean(r['scalar']))]}. "
            f"In wall time (one thread, on the shared machine) the operator takes {r['wall_share']:.2f} of a backbone call, so SpanLift at NFE {r['nfe']} takes about "
            f"{r['nfe'] * (1 + r['wall_share']):.1f} calls' time; the matched-cost table below compares measured seconds per sample." for r in equal_flops(summary, scalars)]

def longer(summary) -> list:
    "SpanLift trained twice as long against the recipe's run of the same seed (the same pairs, scalars and operator start), one row per seed"
    out = []
    for key, v in summary.items():
        bb, nfe, lever = key.split('@')
        if lever != LONG_LEVER or not (ref := summary.get(f'{bb}@{nfe}@{RECIPE_LEVER}')): continue
        for i, s in enumerate(v['seeds']):
            if s not in ref['seeds']: continue
            j, c = ref['seeds'].index(s), v['curves'][i]
            out.append(dict(backbone=bb, nfe=int(nfe), seed=s, steps=v['settings']['steps'], ref_steps=ref['settings']['steps'], scalar=ref['scalar'][j],
                            spanlift=v['spanlift'][i], ref_spanlift=ref['spanlift'][j], train=v['spanlift_train'][i], ref_train=ref['spanlift_train'][j],
                            seconds=v['seconds'][i], ref_seconds=ref['seconds'][j], ref_val=ref['val'][j],
                            val_at_ref_end=dict(zip(c['val_step'], c['val'])).get(ref['settings']['steps']) if c else None))   # the longer run's validation RMSE at the recipe's last step
    return out

def longer_lines(summary) -> list:
    out = [f"- {r['backbone']}, NFE {r['nfe']}, seed {r['seed']}, SpanLift trained for {r['steps']} steps instead of {r['ref_steps']}: held-out {r['spanlift']:.4f} against "
           f"{r['ref_spanlift']:.4f}, train-set {r['train']:.4f} against {r['ref_train']:.4f} ({r['seconds']:.0f} s of fit against {r['ref_seconds']:.0f} s)."
           + (f" At step {r['ref_steps']}, with its learning rate still about half its peak, its validation RMSE was already {r['val_at_ref_end']:.4f}, against "
              f"{r['ref_val']:.4f} at the end of the recipe's run, whose schedule had reached 0 there." if r['val_at_ref_end'] is not None else '') for r in longer(summary)]
    return (['\nTrained twice as long:\n'] + out) if out else []

def spread_line(bb: str, v: dict) -> str:
    "Whether one backbone's seed-to-seed spread in held-out RMSE is in the fit (train-set RMSE moves with it) or in generalisation"
    held, fit = v['spanlift'], v['spanlift_train']
    in_fit = max(fit) - min(fit) >= 0.5 * (max(held) - min(held)) and st.correlation(held, fit) > 0.8   # the fit's spread is large and moves with the held-out one
    gap = st.mean(h - f for h, f in zip(held, fit))
    return (f"- {bb}: held-out RMSE {min(held):.4f} to {max(held):.4f}, train-set RMSE {min(fit):.4f} to {max(fit):.4f}, held-out minus train-set {gap:.4f} on average: "
            + ("the seeds that score worse also fit their own training pairs worse, so the spread is in the optimisation" if in_fit
               else "the train-set RMSE does not move with the held-out RMSE across seeds, so the spread is not in the optimisation alone"))

def matched(summary, scalars, runs) -> list:
    "Per backbone, NFE n and lever (the recipe, and the recipe on half its budget): SpanLift at n against the learned scalars at n + 1 (the recipe's base), RMSE and wall seconds per sample"
    out = []
    for key, v in summary.items():
        bb, nfe, lever = key.split('@'); n = int(nfe)
        if lever not in (RECIPE_LEVER, HALF_LEVER): continue
        nxt = scalars.get(f'{bb}@{n + 1}') or recipe_run(summary, bb, n + 1)
        if nxt is None: continue
        sec = [r['sample_seconds']['spanlift'] for r in runs if r.get('lever') == lever and r['backbone'] == bb and r['nfe'] == n]
        other = [r for r in init_rows() if r['backbone'] == bb and r['nfe'] == n + 1]
        out.append(dict(backbone=bb, nfe=n, lever=lever, n_train=v['n_train'], steps=v['settings']['steps'], spanlift=v['spanlift'], spanlift_seconds=sec,
                        scalar_next=nxt['scalar'], scalar_next_base=nxt['base'], scalar_next_seconds=nxt.get('sample_seconds'),
                        scalar_next_other=min(other, key=lambda r: r['test']) if other else None))   # the same stage from other starts (bench/scalar_init.py)
    return out

def matched_lines(rows) -> list:
    if not rows: return []
    out = ['\n### Matched cost: SpanLift at NFE n against learned scalars at NFE n + 1\n',
           'SpanLift by the recipe, and by the recipe on half its pairs for half its steps; the learned scalars by the recipe, over the base each picks on validation, and from the best start `bench/scalar_init.py` tried; '
           'wall seconds per sample with one torch thread on the shared machine (upper bounds).\n',
           '| backbone | SpanLift trained on | n | SpanLift at NFE n | s / sample | learned scalars at NFE n + 1 (base) | s / sample | the same, best start tried | SpanLift better in RMSE | and in time |',
           '|---|---|---|---|---|---|---|---|---|---|']
    m = st.mean
    for r in rows:
        t, o = (m(r['scalar_next_seconds']) if r['scalar_next_seconds'] else None), r['scalar_next_other']
        best = min(m(r['scalar_next']), o['test'] if o else float('inf'))
        cells = [r['backbone'], f"{r['n_train']} pairs, {r['steps']} steps", str(r['nfe']), ms(r['spanlift']), f"{m(r['spanlift_seconds']) * 1e3:.2f} ms",
                 f"{ms(r['scalar_next'])} ({NAMES.get(r['scalar_next_base'][0], r['scalar_next_base'][0])})",
                 f"{t * 1e3:.2f} ms" if t else '–', f"{o['test']:.4f} ({NAMES.get(o['base'], o['base'])})" if o else '–',
                 dict(better='yes', tie='a tie (inside the sd)', worse='no')[against(r['spanlift'], best)], '–' if t is None else ('yes' if m(r['spanlift_seconds']) < t else 'no')]
        out.append('| ' + ' | '.join(cells) + ' |')
    return out

def projection(summary, gpu=HERE / 'gpu_check_h100.json', backbone='digits-flow') -> dict | None:
    "SpanLift at NFE 3 against learned scalars at the same cost, with the operator's share of a sample's time measured on a CIFAR-size U-Net (GPU check)"
    three, four = recipe_run(summary, backbone, 3), recipe_run(summary, backbone, 4)
    if not (Path(gpu).exists() and three and four): return None
    share = json.loads(Path(gpu).read_text())['bench']['sample']['fp32']['overhead']
    sc3, sc4 = st.mean(three['scalar']), st.mean(four['scalar']); cost = 3 * (1 + share)
    return dict(backbone=backbone, share=share, cost=cost, scalar3=sc3, scalar4=sc4, spanlift3=st.mean(three['spanlift']), spanlift3_seeds=three['spanlift'],
                scalar_at_cost=sc3 * (sc4 / sc3) ** (cost - 3))       # log-linear in NFE between the measured NFE 3 and 4

def projection_lines(p: dict | None) -> list:
    "The lever report's section on `projection`'s numbers"
    if p is None: return []
    return ['\n### Projected to a CIFAR-size U-Net\n',
            f"The GPU check (`bench/gpu_check_h100.json`, H100, fp32, batch 1024) measured SpanLift's 3-NFE sample to take {p['share']:.1%} longer than the base solver's "
            f"on a CIFAR-size U-Net, so there SpanLift at NFE 3 costs {p['cost']:.2f} backbone calls. Carried over to {p['backbone']}'s error curve (an assumption: "
            f"the error of a CIFAR model is not measured here), with the learned scalars' RMSE interpolated log-linearly between NFE 3 and 4:\n",
            '| method | cost, backbone calls | teacher RMSE |', '|---|---|---|',
            f"| learned scalars, NFE 3 | 3.00 | {p['scalar3']:.4f} |", f"| **SpanLift, NFE 3** | {p['cost']:.2f} | {p['spanlift3']:.4f} |",
            f"| learned scalars at the same cost (interpolated) | {p['cost']:.2f} | {p['scalar_at_cost']:.4f} |", f"| learned scalars, NFE 4 | 4.00 | {p['scalar4']:.4f} |",
            f"\nAt equal cost SpanLift {'beats' if p['spanlift3'] < p['scalar_at_cost'] else 'does not beat'} the learned scalars on this curve; against one more NFE it "
            f"{dict(better='wins', tie='ties inside its seed-to-seed sd', worse='loses')[against(p['spanlift3_seeds'], p['scalar4'])]}: {ms(p['spanlift3_seeds'])} against {p['scalar4']:.4f}, for {4 - p['cost']:.2f} fewer backbone calls."]

def init_rows() -> list:
    "Rows of bench/scalar_init.py's runs (one file per invocation)"
    return [r for f in sorted((HERE / 'LEVERS').glob('scalar-init*.json')) for r in json.loads(f.read_text())['rows']]

def init_lines() -> list:
    "The learned scalars from several initial grids (bench/scalar_init.py): the recipe's scalar stage, started elsewhere"
    rows = init_rows()
    if not rows: return []
    g = lambda xs: '[' + ', '.join(f'{x:.2f}' for x in xs) + ']'
    out = ['\n### The learned scalars depend on where their grid starts\n',
           '`python bench/scalar_init.py`: the recipe\'s learned-scalar stage (200 steps, lr 1e-2, batch 128, 8192 pairs, seed 0) started from the base\'s '
           'uniform grid and from other grids; teacher RMSE on the 512 held-out test pairs. The grids that help on fashion-flow are close to '
           '`noise_quadratic` (dense near the noise), which the recipe counts among the starts it picks from on validation.\n',
           '| backbone | NFE | base | initial grid | learned grid | teacher RMSE |', '|---|---|---|---|---|---|']
    for r in rows:
        out.append(f"| {r['backbone']} | {r['nfe']} | {NAMES.get(r['base'], r['base'])} | {r['init'] if r['init'] == 'uniform' else g(r['init'])} | {g(r['grid'])} | {r['test']:.4f} |")
    for key in dict.fromkeys((r['backbone'], r['nfe']) for r in rows):
        rs = [r for r in rows if (r['backbone'], r['nfe']) == key]; uni = [r['test'] for r in rs if r['init'] == 'uniform' and r['base'] == rs[0]['base']]
        best = min(rs, key=lambda r: r['test'])
        if uni: out.append(f"- {key[0]}, NFE {key[1]}: from the uniform grid {uni[0]:.4f}; the best start tried gives {best['test']:.4f} "
                           f"({NAMES.get(best['base'], best['base'])}, {'uniform' if best['init'] == 'uniform' else g(best['init'])}).")
    return out

NAMES = dict(euler='Euler', heun='Heun', ipndm_v='iPNDM (velocity)', ipndm='iPNDM', unipc='UniPC', dpmpp_2m='DPM-Solver++(2M)', mixed='a random base per step')

def transfer_lines() -> list:
    "The transfer matrix (bench/transfer.py): operators trained over one base (or a random one per step), applied over each base at NFE 3"
    f = HERE / 'LEVERS' / 'transfer-digits-flow-nfe3.json'
    if not f.exists(): return []
    t = json.loads(f.read_text()); bases = t['bases']; n = lambda b: NAMES.get(b, b)
    out = ['\n### Transfer across base solvers\n',
           f"`python bench/transfer.py`: digits-flow, NFE 3, {t['n_train']} training pairs, each operator {t['steps']} steps over its base's own scalars "
           "(frozen, so the operator is all that is learned), applied unchanged over every base (`SpanLift.with_base`); the 512 held-out test pairs. "
           "Rows: the base an operator was trained over; columns: the base it runs over.\n",
           '| trained over \\ applied over | ' + ' | '.join(n(b) for b in bases) + ' |', '|---|' + '---|' * len(bases)]
    for src, row in t['matrix'].items(): out.append(f'| {n(src)} | ' + ' | '.join(f"{row[b]:.4f}" for b in bases) + ' |')
    out.append('| the base alone | ' + ' | '.join(f"{t['base'][b]:.4f}" for b in bases) + ' |')
    for k in ('3', '4'):
        sc = t['scalar'].get(k, {})
        out.append(f'| learned scalars, NFE {k} | ' + ' | '.join(f"{sc[b]:.4f}" if b in sc else '–' for b in bases) + ' |')
    off = [(s, b) for s in t['matrix'] for b in bases if s != b]
    beat_base = sum(t['matrix'][s][b] < t['base'][b] for s, b in off)
    beat_sc4 = [(s, b) for s, b in off if b in t['scalar'].get('4', {}) and t['matrix'][s][b] < t['scalar']['4'][b]]
    n4 = sum(b in t['scalar'].get('4', {}) for s, b in off)
    kept = [(t['base'][b] - t['matrix'][s][b]) / (t['base'][b] - t['native'][b]) for s, b in off if s != 'mixed' and t['base'][b] > t['native'][b]]
    out.append(f"\nOff the diagonal, an operator applied over a base it was not trained over beats that base alone in {beat_base} of {len(off)} cases, "
               f"and beats that base's learned scalars at NFE 4 in {len(beat_sc4)} of {n4}. "
               + (f"A single-base operator keeps {min(kept):.0%} to {max(kept):.0%} of the native operator's gain over the base." if kept else ''))
    return out

def main():
    runs = load(); lines, summary = table(runs)
    fig = pairs_figure(summary)
    block = [BEGIN, '\n## Levers: what moves SpanLift at NFE 3\n',
             'Measured by `bench/levers.py` (one process per lever and seed; `python bench/levers_report.py` writes this section). '
             'Settings, unless a row says otherwise: NFE 3; teacher dopri5 (rtol = atol = 1e-4); training pairs seed 0 '
             '(the digits backbones: 1024 + 256 validation; the fashion ones: 8192 + 256; rows with more pairs add pairs at seeds 2 and 3), 512 held-out test pairs at seed 1; the base picked on '
             'validation among the recipe\'s bases and grids; learned scalars 200 steps at lr 1e-2, SpanLift 350 steps at lr 3e-3 '
             '(its scalars at 1e-2), batch 128, EMA 0.995 with warm-up; **[short budget]**: the same, but learned scalars 100 steps and SpanLift 120 steps '
             '(220 for joint staging) at batch 32, about a twelfth of the recipe\'s compute. The seed is that of the fits (the pairs stay fixed). '
             'RMSE is `teacher_rmse` on the test pairs (the train-set column: the same averaged weights on the first 512 training pairs). '
             'One torch thread on a 2-core machine shared with other jobs: the seconds are upper bounds. mean ± sd over seeds where there are several.\n',
             *lines]
    block += verdicts(summary)
    bl = bases_lines([dict(r, backbone=p.stem.split('-nfe')[0]) for p, r in zip(sorted((HERE / 'LEVERS').glob('*.json')), runs) if 'rows' in r and r.get('kind') != 'frontier'])
    if bl: block += ['\n### iPNDM: in the exponential-integrator variables (`ipndm`) or on the velocity (`ipndm_v`)', *bl]
    tl = [r for r in runs if r.get('dopri5_nfe') is not None or (r.get('rows') and 'rmse_vs_dopri5' in r['rows'][0])]
    if tl:
        block += ['\n### A cheaper teacher\n', '| teacher | NFE | endpoint RMSE vs dopri5 | seconds (512 pairs) |', '|---|---|---|---|']
        for r in tl: block += [f"| RK4, {x['steps']} steps | {x['nfe']} | {x['rmse_vs_dopri5']:.4f} | {x['seconds']:.1f} |" for x in r['rows']]
        block.append(f"\ndopri5 spent {tl[0]['dopri5_nfe']:.0f} NFE per pair on the same noise.")
        ref = summary.get('digits-flow@3@short-recipe') or summary.get('digits-flow@3@recipe')
        if ref:
            tol = 0.1 * st.mean(ref['spanlift']); ok = [x for x in tl[0]['rows'] if x['rmse_vs_dopri5'] <= tol]
            block.append(f"The tolerance for a teacher: a tenth of SpanLift's RMSE ({tol:.4f}). " + (
                f"The cheapest RK4 within it spends {ok[0]['nfe']} NFE per pair, {ok[0]['nfe'] / tl[0]['dopri5_nfe']:.0%} of dopri5's." if ok else "No RK4 tried is within it."))
    if fig: block.append(f'\n![held-out RMSE against distinct pairs](LEVERS/{fig.name})')
    block += untuned_lines(summary, scalar_rows(runs)) + transfer_lines()
    mrows = matched(summary, scalar_rows(runs), runs); block += matched_lines(mrows) + projection_lines(projection(summary)) + init_lines() + demo_lines()
    ffig, flines = frontier(runs)
    if ffig: block += [*flines, f'\n![error against cost](LEVERS/{ffig.name})']
    block.append(END)
    md = HERE / 'RESULTS.md'; old = md.read_text()
    pat = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END), re.S)
    text = pat.sub(lambda m: '\n'.join(block), old) if pat.search(old) else old.rstrip('\n') + '\n\n' + '\n'.join(block) + '\n'
    with atomic_write(md, 'w') as f: f.write(text)
    js = HERE / 'RESULTS.json'; data = json.loads(js.read_text()) if js.exists() else {}
    data['levers'] = summary; data['levers_scalars'] = scalar_rows(runs); data['equal_flops'] = equal_flops(summary, scalar_rows(runs)); data['longer'] = longer(summary); data['matched_cost_recipe'] = mrows; data['projection'] = projection(summary)
    if init_rows(): data['scalar_init'] = init_rows()
    tf = HERE / 'LEVERS' / 'transfer-digits-flow-nfe3.json'
    if tf.exists(): data['transfer'] = json.loads(tf.read_text())
    write_json(js, data)
    print('\n'.join(block))

if __name__ == '__main__': main()
