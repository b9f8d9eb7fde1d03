"The public face: every name in `spanlift_nb.__all__` resolves to the object of its home module, and `import spanlift_nb` imports neither diffusers nor the heavy modules."
import importlib, os, subprocess, sys
import pytest
import spanlift_nb

ENV = dict(os.environ, OMP_NUM_THREADS='1')

def test_all_is_small_and_regular():
    assert 15 <= len(spanlift_nb.__all__) <= 30 and len(set(spanlift_nb.__all__)) == len(spanlift_nb.__all__)
    assert spanlift_nb.__version__ and '__version__' not in spanlift_nb.__all__

@pytest.mark.parametrize('name', [n for n in spanlift_nb.__all__ if spanlift_nb._HOMES[n] != 'scheduler'])
def test_every_name_resolves_to_its_home(name):
    home = importlib.import_module(f'spanlift_nb.{spanlift_nb._HOMES[name]}')
    assert getattr(spanlift_nb, name) is getattr(home, name) and name in home.__all__

def test_scheduler_names_resolve_with_diffusers():
    pytest.importorskip('diffusers')
    from spanlift_nb import SpanLiftScheduler, export_scheduler
    from spanlift_nb import scheduler
    assert SpanLiftScheduler is scheduler.SpanLiftScheduler and export_scheduler is scheduler.export_scheduler

def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match='no attribute'): spanlift_nb.no_such_name
    with pytest.raises(ImportError): exec('from spanlift_nb import no_such_name', {})

def run(code):
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600, env=ENV)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()

def test_import_does_not_import_diffusers_or_heavy_modules():
    out = run("import sys, spanlift_nb; print(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'torch', 'spanlift_nb')))")
    assert out == "['spanlift_nb']", out

def test_names_work_without_diffusers():
    code = ("import sys; sys.modules['diffusers'] = None\nimport spanlift_nb\n"
            "print(spanlift_nb.SpanLift.__name__, spanlift_nb.load_backbone.__name__)\n"
            "try: spanlift_nb.SpanLiftScheduler\nexcept ImportError as e: print('scheduler:', e)")
    out = run(code)
    assert out.startswith('SpanLift load_backbone') and 'pip install "spanlift-nb[diffusers]"' in out, out

@pytest.mark.parametrize('name,leading', [('ScalarSolver', ['base', 'nfe', 'path']), ('SpanLift', ['base', 'nfe', 'path', 'shape'])])
def test_solver_options_after_the_first_few_are_keyword_only(name, leading):
    "The learned solvers take (base, nfe, path[, shape]) by position and every option by keyword, in one order for both"
    import inspect
    cls = getattr(spanlift_nb, name)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == leading
    assert all(p.kind is p.KEYWORD_ONLY for p in params[len(leading):]) and len(params) > len(leading)
    assert 'schedule' in [p.name for p in params[len(leading):]]
    with pytest.raises(TypeError, match='positional'): cls('euler', 3, None, *([(1, 8, 8)] if name == 'SpanLift' else []), 'karras')
    s = cls('euler', 3, None, *([(1, 8, 8)] if name == 'SpanLift' else []), schedule='karras')
    assert cls.from_config(s.config()).config() == s.config() and s.config()['schedule'] == 'karras'
