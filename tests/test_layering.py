"""The package's layering, read from the source with `ast`: no import cycles, no module reaching for another module's
`_private` name, and every import going down the layers (or sideways within one layer). Imports inside functions
count, as do `from . import x` and `importlib.import_module('spanlift_nb.x')` with a literal name."""
import ast, json, os, subprocess, sys
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1] / 'spanlift_nb'

# lowest first; a module may import from its own layer and the layers below it
LAYERS = [
    {'core'},
    {'data', 'backbones', 'archs', 'analytic', 'adapters', 'zoo'},
    {'solvers', 'teacher'},
    {'span'},
    {'scalar', 'spanlift'},
    {'train'},
    {'evaluate', 'diagnose', 'metrics', 'latent', 'nowcast'},
    {'cli', 'widgets', 'scheduler'},
]
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}
NOT_MODULES = {'__init__', '_modidx'}        # the package's version and nbdev's index: no imports of their own

def modules() -> dict:
    "Module name -> parsed source, for every spanlift_nb/*.py"
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PKG.glob('*.py')) if p.stem not in NOT_MODULES}

def _target(node: ast.ImportFrom, alias: ast.alias, known) -> tuple:
    "(module, name) imported by one alias of `from ... import ...`; name is None when the alias is a module itself"
    base = node.module or ''
    if node.level == 0 and base != 'spanlift_nb' and not base.startswith('spanlift_nb.'): return None, None
    mod = base.removeprefix('spanlift_nb').lstrip('.') if node.level == 0 else base
    if not mod: return (alias.name, None) if alias.name in known else (None, None)    # from . import x / from spanlift_nb import x
    return mod.split('.')[0], alias.name

def imports(tree: ast.Module, known) -> list:
    "(line, imported module, imported name or None, the statement as written) for every import of a spanlift_nb module"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                mod, name = _target(node, a, known)
                if mod: out.append((node.lineno, mod, name, ast.unparse(node)))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('spanlift_nb.'): out.append((node.lineno, a.name.split('.')[1], None, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'import_module'
              and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith('spanlift_nb.')):
            out.append((node.lineno, node.args[0].value.split('.')[1], None, ast.unparse(node)))
    return out

def private_attributes(tree: ast.Module, known) -> list:
    "(line, module, name, code) for `m._name` where `m` is bound to a spanlift_nb module by an import"
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                mod, name = _target(node, a, known)
                if mod and name is None: bound[a.asname or a.name] = mod
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('spanlift_nb.') and a.asname: bound[a.asname] = a.name.split('.')[1]
    return [(n.lineno, bound[n.value.id], n.attr, ast.unparse(n)) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in bound
            and n.attr.startswith('_') and not n.attr.startswith('__')]

def graph() -> dict:
    "Module -> {imported module: [(line, statement), ...]}, self-imports left out"
    trees = modules()
    g = {m: {} for m in trees}
    for m, tree in trees.items():
        for line, dep, _, code in imports(tree, trees):
            if dep != m and (line, code) not in g[m].get(dep, []): g[m].setdefault(dep, []).append((line, code))
    return g

def where(g, m, dep) -> str:
    return '; '.join(f"spanlift_nb/{m}.py:{line} `{code}`" for line, code in g[m][dep])

def test_every_module_has_a_layer():
    unplaced = sorted(set(modules()) - set(LAYER))
    assert not unplaced, (f"new module(s) {', '.join(unplaced)}: place each in a layer of LAYERS in tests/test_layering.py "
                          "(and in the layer picture of the design notes), then keep its imports going down")

def test_no_import_cycles():
    g = graph()
    cycles, state = [], {}                  # state: 1 on the current path, 2 finished

    def visit(m, path):
        state[m] = 1
        for dep in sorted(g[m]):
            if dep not in g: continue
            if state.get(dep) == 1:
                loop = path[path.index(dep):] + [dep]
                cycles.append(' -> '.join(loop) + '  (' + ' | '.join(where(g, a, b) for a, b in zip(loop, loop[1:])) + ')')
            elif dep not in state: visit(dep, path + [dep])
        state[m] = 2
    for m in sorted(g):
        if m not in state: visit(m, [m])
    assert not cycles, 'import cycle(s):\n' + '\n'.join(cycles)

def test_no_private_names_across_modules():
    trees = modules()
    bad = [f"spanlift_nb/{m}.py:{line} `{code}` uses {dep}'s private name {name}: make it public in {dep} (or move it)"
           for m, tree in trees.items()
           for line, dep, name, code in imports(tree, trees) + private_attributes(tree, trees)
           if dep != m and name and name.startswith('_') and not name.startswith('__')]
    assert not bad, '\n'.join(bad)

def test_imports_go_down_the_layers():
    g = graph()
    bad = [f"{m} (layer {LAYER[m]}) imports {dep} (layer {LAYER[dep]}), a higher layer: {where(g, m, dep)}"
           for m in sorted(g) if m in LAYER for dep in sorted(g[m]) if dep in LAYER and LAYER[dep] > LAYER[m]]
    assert not bad, 'imports that go up the layers:\n' + '\n'.join(bad)

def test_the_checks_see_every_kind_of_import():
    "The checks see `from . import x`, imports inside functions, and `import_module` with a literal name"
    src = ("from . import train\nfrom .solvers import _lo\ndef f():\n    import spanlift_nb.cli as c\n    c._usage()\n"
           "    import importlib; importlib.import_module('spanlift_nb.widgets')\n")
    tree, known = ast.parse(src), {'train', 'solvers', 'cli', 'widgets'}
    assert sorted((d, n or '') for _, d, n, _ in imports(tree, known)) == [('cli', ''), ('solvers', '_lo'), ('train', ''), ('widgets', '')]
    assert [(d, n) for _, d, n, _ in private_attributes(tree, known)] == [('cli', '_usage')]

def imported_at_run_time(code: str) -> list:
    "The spanlift_nb modules a fresh process has imported after running `code`"
    code += "\nimport sys, json\nprint(json.dumps(sorted(m.split('.')[1] for m in sys.modules if m.startswith('spanlift_nb.'))))"
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])

def above(mods, module='zoo') -> list: return [m for m in mods if LAYER.get(m, len(LAYERS)) > LAYER[module]]

def test_the_zoo_loads_every_shipped_file_without_importing_a_module_above_it():
    "What a checkpoint names (its architecture, its module) must not make the zoo import upward: only a run can see that"
    mods = imported_at_run_time("from spanlift_nb import zoo\nfor n in zoo.shipped(): zoo.load(n)\n"
                                "for n in zoo.shipped('backbone'): zoo.load_backbone(n)")
    assert {'zoo', 'archs', 'backbones'} <= set(mods)
    assert not above(mods), f"loading the shipped files imported {above(mods)}, above the zoo's layer: define their architectures in backbones or archs"

def test_the_run_time_check_sees_an_upward_import():
    mods = imported_at_run_time("from spanlift_nb import zoo\nimport importlib; importlib.import_module('spanlift_nb.' + 'latent')")
    assert 'latent' in above(mods)
