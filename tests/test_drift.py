"""No number in the README or on the front page drifts from its source (bench/RESULTS.json, bench/gpu_check_h100.json,
or a notebook's own outputs); and the checker catches a planted drift, so a pass means something."""
import json, shutil, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
import make_readme as mr                                    # noqa: E402

# Notebooks whose prose may quote only what their own outputs print
PROSE_FROM_OUTPUTS = ['index.ipynb', '00_core.ipynb', '05_scalar.ipynb', 'tutorials/sampling_in_20_lines.ipynb',
                      'tutorials/span_bottleneck_gaussian.ipynb', 'tutorials/bring_your_own_backbone.ipynb',
                      'tutorials/guided_sampling.ipynb', 'tutorials/nowcasting.ipynb', 'tutorials/latent_flow_matching.ipynb']

@pytest.fixture
def copy(tmp_path):
    "A scratch copy of the files the checker reads"
    for rel in ('README.md', 'bench/RESULTS.json', 'bench/gpu_check_h100.json', 'bench/THESIS.json', 'nbs/index.ipynb'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path

def test_readme_and_index_match_their_sources():
    assert mr.check_all() == []

@pytest.mark.parametrize('nb', PROSE_FROM_OUTPUTS)
def test_notebook_prose_quotes_its_outputs(nb):
    assert mr.check_notebook(ROOT / 'nbs' / nb) == []

def test_prose_numbers_skip_code_maths_and_links():
    md = 'RMSE 0.112 and 12% here; `0.5` and $0.25$ and ```\n0.75\n``` and [x](a0.9.png) and <!-- 0.33 --> are not prose; 28×28 neither.'
    assert mr.prose_numbers(md) == ['0.112', '12%']
    assert mr.matches('0.112', [0.11207]) and not mr.matches('0.113', [0.11207])
    assert mr.matches('12%', [0.1231]) and not mr.matches('13%', [0.1231])

def test_catches_a_changed_number_in_the_readme(copy):
    "Plant a drift: change one number inside the README's generated results"
    readme = (copy / 'README.md').read_text()
    s = mr.summary(mr.load(copy / 'bench/RESULTS.json')['results']['digits-flow@3'])
    shown = mr.f3(s['spanlift']['teacher_rmse'])
    planted = f'{float(shown) + 0.011:.3f}'
    assert f'teacher RMSE of {shown}' in readme
    (copy / 'README.md').write_text(readme.replace(f'teacher RMSE of {shown}', f'teacher RMSE of {planted}', 1))
    problems = mr.check_all(copy)
    assert any(f'{planted} (source: {shown})' in p for p in problems), problems

def test_catches_a_number_typed_into_readme_prose(copy):
    readme = (copy / 'README.md').read_text().replace('## Reading order', 'SpanLift is 0.55x the learned scalars.\n\n## Reading order', 1)
    (copy / 'README.md').write_text(readme)
    assert 'README prose has a number with no source: 0.55x' in mr.check_all(copy)

def test_catches_a_benchmark_that_changed_under_the_front_page(copy):
    "Plant a drift the other way: the artefact changes, the committed README and front page do not"
    res = json.loads((copy / 'bench/RESULTS.json').read_text())
    row = mr.summary(res['results']['digits-flow@3'])['scalar']
    row['teacher_rmse'] += 0.02
    (copy / 'bench/RESULTS.json').write_text(json.dumps(res))
    problems = mr.check_all(copy)
    assert any(p.startswith('README region `results` differs') for p in problems), problems
    assert any('index.ipynb: its printed `headline` differs' in p for p in problems), problems

def test_catches_a_thesis_study_that_changed_under_the_readme(copy):
    "The README's verdicts come from bench/THESIS.json: a changed law is a drift"
    th = json.loads((copy / 'bench/THESIS.json').read_text())
    th['law']['r2'] = 0.9 if th['law']['r2'] < 0.5 else 0.1
    (copy / 'bench/THESIS.json').write_text(json.dumps(th))
    assert any(p.startswith('README region `thesis` differs') for p in mr.check_all(copy))

def test_catches_notebook_prose_that_its_outputs_do_not_print(tmp_path):
    nb = dict(cells=[dict(cell_type='markdown', source='The error falls to 0.0151.'),
                     dict(cell_type='code', source='print(x)', outputs=[dict(output_type='stream', text='0.0152\n')])])
    (tmp_path / 'a.ipynb').write_text(json.dumps(nb))
    assert mr.check_notebook(tmp_path / 'a.ipynb') == ['a.ipynb: prose number with no source in its outputs: 0.0151']
    nb['cells'][1]['outputs'][0]['text'] = '0.0151\n'
    (tmp_path / 'a.ipynb').write_text(json.dumps(nb))
    assert mr.check_notebook(tmp_path / 'a.ipynb') == []

def test_regenerate_needs_its_markers():
    with pytest.raises(ValueError, match='no region `<!-- generated: results -->`'): mr.regenerate('no markers', {'results': 'x'})

def test_sections_survive_a_smaller_benchmark():
    "A benchmark with fewer runs (no NFE 4, no guided runs, no transfer rows, no lever runs) still gives every section and figure"
    res = mr.load()
    small = dict(res, levers={}, transfer={}, results={k: dict(v, rows=[r for r in v['rows'] if 'transfer_from' not in r])
                               for k, v in res['results'].items() if k in ('digits-flow@3', 'fashion-flow@3')})
    parts = mr.sections(small)
    assert 'Matched cost' not in parts['results'] and 'Transfer' not in parts['results']
    assert mr.plot_guided(small) is None and mr.plot_quality(small) is not None
    assert parts['guided'].startswith('No guided run')

def test_recipe_runs_on_other_backbones_are_reported_apart():
    "A recipe run on a backbone that chose none of its settings gets its own bullet, never the tuned backbones' bullet"
    res = mr.load(); key = next(k for k in res['levers'] if k.endswith(f'@3@{mr.RECIPE_LEVER}') and k.split('@')[0] in mr.CHOSEN_ON)
    other = dict(res['levers'][key], spanlift=[0.05, 0.06], scalar=[0.1, 0.1], ratio=[0.5, 0.6], seeds=[0, 1])
    lines = mr.recipe_lines(dict(res, levers={**res['levers'], f'not-a-chosen-backbone@3@{mr.RECIPE_LEVER}': other}))
    tuned = next(l for l in lines if l.startswith('- **The recipe**')); apart = [l for l in lines if 'not-a-chosen-backbone' in l]
    assert 'not-a-chosen-backbone' not in tuned and len(apart) == 1
    assert 'chose none of its settings' in apart[0] and '**0.55 ± 0.07x** (2 seeds: 0.50, 0.60)' in apart[0]
