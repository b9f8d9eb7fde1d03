"""spanlift-nb: learned few-step ODE samplers for diffusion and flow models.

The names a user needs, importable from the package itself (`from spanlift_nb import load_backbone, SpanLift, fit_solver`).
Each is imported from its home module on first use, so `import spanlift_nb` stays cheap and diffusers stays optional:
only `SpanLiftScheduler` and `export_scheduler` need it."""
__version__ = "0.1.0"
import importlib

_HOMES = {
    # a backbone, and views of it
    'load_backbone': 'zoo', 'shipped': 'zoo', 'Backbone': 'core', 'GaussianPath': 'core', 'with_condition': 'core',
    'with_guidance': 'core', 'count_nfe': 'core',
    # teacher pairs
    'teacher_pairs': 'teacher', 'teacher_rmse': 'teacher',
    # base solvers and learned solvers
    'sample': 'solvers', 'start_noise': 'solvers', 'SOLVERS': 'solvers', 'ScalarSolver': 'scalar', 'SpanLift': 'spanlift',
    # fitting a learned solver
    'fit_solver': 'train', 'TrainConfig': 'train', 'load_solver': 'train',
    # comparing methods from the same noise
    'compare': 'evaluate', 'run_method': 'evaluate', 'score': 'evaluate', 'run_demo': 'evaluate',
    # when leaving the span pays, measured before an operator is trained
    'diagnose_model': 'diagnose',   # (the name `diagnose` is the module itself)
    # diffusers (optional dependency)
    'SpanLiftScheduler': 'scheduler', 'export_scheduler': 'scheduler',
}

__all__ = list(_HOMES)

def __getattr__(name: str):
    "Import a public name from its home module on first use"
    if name not in _HOMES: raise AttributeError(f"module 'spanlift_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f'{__name__}.{_HOMES[name]}'), name)
    globals()[name] = value
    return value

def __dir__(): return sorted(set(globals()) | set(__all__))
