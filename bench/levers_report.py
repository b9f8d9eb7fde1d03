"""Gather bench/LEVERS/*.json (written by bench/levers.py) into the "Levers" section of bench/RESULTS.md, its
`levers` entry in RESULTS.json, and the figure bench/LEVERS/pairs.png.

    python bench/levers_report.py"""
import json, re, statistics as st
from pathlib import Path
from spanlift_nb.core import atomic_write, write_json

HERE = Path(__file__).parent
BEGIN, END = '<!-- levers: written by bench/levers_report.py -->', '<!-- /levers -->'
ABOUT = dict(recipe='the recipe: scalars first, then SpanLift from them, scalars learning beside it (width 32, 3 blocks)',
             frozen='staging: scalars first, then the operator alone (scalars frozen)',
             joint='staging: scalars and operator jointly from the base, 550 steps (no scalar stage)',
             proposal="operator input: + the base's proposed next state and the step size",
             out_of_span="out-of-span operator: its output projected off the buffer's span, per sample",
             w16b2='capacity: width 16, 2 blocks', w64b3='capacity: width 64, 3 blocks', w32b6='capacity: width 32, 6 blocks',
             pairs256='pairs: the first 256 training pairs', pairs512='pairs: the first 512 training pairs', pairs1k='pairs: the first 1024 training pairs', pairs2k='pairs: the first 2048 training pairs',
             steps700b64='700 steps at batch 64 (the same number of samples seen)')

def about(lever: str) -> str:
    "What a lever changes; 'short-' marks the short budget (scalars 100 steps, SpanLift 120, batch 32)"
    return ABOUT.get(lever[6:], lever[6:]) + ' [short budget]' if lever.startswith('short-') else ABOUT.get(lever, lever)

def order(lever: str) -> tuple:
    base = lever[6:] if lever.startswith('short-') else lever
    return (lever.startswith('short-'), list(ABOUT).index(base) if base in ABOUT else 99)

def load() -> list: return [json.loads(f.read_text()) for f in sorted((HERE / 'LEVERS').glob('*.json'))]

def ms(xs, nd=4):
    "mean ± sd (sample sd; a single run shows its value and n = 1)"
    return f'{st.mean(xs):.{nd}f} ± {st.stdev(xs):.{nd}f}' if len(xs) > 1 else f'{xs[0]:.{nd}f}'

def groups(runs) -> dict:
    g = {}
    for r in runs:
        if 'lever' in r: g.setdefault((r['backbone'], r['nfe'], r['lever']), []).append(r)
    return g

def table(runs) -> tuple:
    g = groups(runs); lines = ['| backbone | lever | seeds | learned scalars | SpanLift | SpanLift / scalars | SpanLift train-set RMSE | SpanLift fit s | operator FLOPs / backbone |',
                               '|---|---|---|---|---|---|---|---|---|']
    summary = {}
    for (bb, nfe, lever), rs in sorted(g.items(), key=lambda kv: (kv[0][0], *order(kv[0][2]))):
        sc, sl, ra = [r['scalar_rmse'] for r in rs], [r['spanlift_rmse'] for r in rs], [r['ratio'] for r in rs]
        summary[f'{bb}@{nfe}@{lever}'] = dict(seeds=[r['seed'] for r in rs], scalar=sc, spanlift=sl, ratio=ra, spanlift_train=[r['spanlift_train_rmse'] for r in rs],
                                              seconds=[r['spanlift_seconds'] for r in rs], settings=rs[0]['settings'], base=rs[0]['base'], n_train=rs[0]['settings']['n_train'],
                                              flops_ratio=rs[0]['cost']['flops_ratio'], params_operator=rs[0]['cost']['params_operator'])
        lines.append(f"| {bb} | {about(lever)} | {len(rs)} | {ms(sc)} | {ms(sl)} | {ms(ra, 2)} | {ms([r['spanlift_train_rmse'] for r in rs])} | "
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

NOT_MEASURED = ['intermediate supervision (a loss on the student\'s states at its grid times against the teacher\'s dense output): it needs the trainer; not tried',
                'fashion-flow levers and the fashion-flow ratio under the recipe: its teacher pairs did not fit the CPU budget (the base-solver table '
                'below is its only measurement here)',
                'every lever at the recipe\'s full budget (200 + 350 steps at batch 128): only the recipe itself, where a row says so',
                'more than 1024 distinct pairs (streamed, or from the cheaper teacher), a two-level operator, training over several bases, '
                'the transfer matrix and the matched-cost curve']

def verdicts(summary) -> list:
    "One line per lever against the recipe on the same budget and backbone, then the ratio against the 0.70 target, then what was not measured"
    out = []
    for key, v in summary.items():
        bb, nfe, lever = key.split('@')
        ref = summary.get(f"{bb}@{nfe}@{'short-recipe' if lever.startswith('short-') else 'recipe'}")
        if ref is None or v is ref: continue
        m, r, sd = st.mean(v['spanlift']), st.mean(ref['spanlift']), (st.stdev(ref['spanlift']) if len(ref['spanlift']) > 1 else float('nan'))
        out.append(f"- {bb}, {about(lever)}: SpanLift {m:.4f} against the recipe's {r:.4f} ({m - r:+.4f}; the recipe's seed-to-seed sd {sd:.4f}, "
                   f"{len(v['spanlift'])} seed(s) against {len(ref['spanlift'])}).")
    for key, v in summary.items():
        if key.endswith('@recipe') or key.endswith('@short-recipe'):
            ra = st.mean(v['ratio'])
            out.append(f"- **{key.split('@')[0]}, {about(key.split('@')[2])}: SpanLift / learned scalars {ra:.2f}** over {len(v['ratio'])} seed(s); "
                       f"the target 0.70 is {'met' if ra <= 0.70 else f'missed by {ra - 0.70:.2f}'}.")
    return (['\nAgainst the recipe on the same budget (a difference inside the seed-to-seed spread is no difference):\n', *out] if out else []) + \
           ['\nNot measured in this sweep:\n', *[f'- {x}' for x in NOT_MEASURED]]

def pairs_figure(summary) -> Path | None:
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    pts = sorted((v['n_train'], st.mean(v['spanlift']), st.mean(v['scalar']), st.mean(v['spanlift_train'])) for k, v in summary.items()
                 if k.startswith('digits-flow@3@short-') and (k.endswith('@short-recipe') or '@short-pairs' in k))
    if len(pts) < 2: return None
    n, sl, sc, tr = zip(*pts)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(n, sc, 'D-', label='learned scalars (held out)'); ax.plot(n, sl, 'o-', label='SpanLift (held out)'); ax.plot(n, tr, 'o--', label='SpanLift (training pairs)')
    ax.set_xscale('log', base=2); ax.set_xlabel('distinct training pairs'); ax.set_ylabel('teacher RMSE'); ax.set_title('digits-flow, NFE 3, short budget')
    ax.grid(alpha=.3); ax.legend(fontsize=8); fig.tight_layout()
    f = HERE / 'LEVERS' / 'pairs.png'; fig.savefig(f, dpi=110); return f

def main():
    runs = load(); lines, summary = table(runs)
    fig = pairs_figure(summary)
    block = [BEGIN, '\n## Levers: what moves SpanLift at NFE 3\n',
             'Measured by `bench/levers.py` (one process per lever and seed; `python bench/levers_report.py` writes this section). '
             'Settings, unless a row says otherwise: NFE 3; teacher dopri5 (rtol = atol = 1e-4); training pairs seed 0 '
             '(digits-flow: 1024 + 256 validation; the demo trains on 3072), 512 held-out test pairs at seed 1; the base picked on '
             'validation among the recipe\'s bases and grids; learned scalars 200 steps at lr 1e-2, SpanLift 350 steps at lr 3e-3 '
             '(its scalars at 1e-2), batch 128, EMA 0.995 with warm-up; **[short budget]**: the same, but learned scalars 100 steps and SpanLift 120 steps '
             '(220 for joint staging) at batch 32, about a twelfth of the recipe\'s compute. The seed is that of the fits (the pairs stay fixed). '
             'RMSE is `teacher_rmse` on the test pairs (the train-set column: the same averaged weights on the first 512 training pairs). '
             'One torch thread on a 2-core machine shared with five other jobs: the seconds are upper bounds. mean ± sd over seeds where there are several.\n',
             *lines]
    block += verdicts(summary)
    bl = bases_lines([dict(r, backbone=p.stem.split('-nfe')[0]) for p, r in zip(sorted((HERE / 'LEVERS').glob('*.json')), runs) if 'rows' in r])
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
    block.append(END)
    md = HERE / 'RESULTS.md'; old = md.read_text()
    pat = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END), re.S)
    text = pat.sub(lambda m: '\n'.join(block), old) if pat.search(old) else old.rstrip('\n') + '\n\n' + '\n'.join(block) + '\n'
    with atomic_write(md, 'w') as f: f.write(text)
    js = HERE / 'RESULTS.json'; data = json.loads(js.read_text()) if js.exists() else {}
    data['levers'] = summary; write_json(js, data)
    print('\n'.join(block))

if __name__ == '__main__': main()
