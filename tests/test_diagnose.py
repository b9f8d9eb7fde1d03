"""`diagnose`: the headroom of learned scalars and the gain the law predicts from it, on exact Gaussians (small sizes)."""
import pytest, torch
from spanlift_nb.analytic import gaussian_backbone
from spanlift_nb.scalar import ScalarSolver
from spanlift_nb.spanlift import SpanLift
from spanlift_nb.teacher import HELD_OUT_SEED, teacher_solve
from spanlift_nb.solvers import start_noise
import spanlift_nb.diagnose as dg

LAW_T = dg.fit_law([0.0, 0.2, 0.4, 0.6], [0.0, 0.1, 0.2, 0.3])          # a synthetic law: gain = rho / 2
SMALL = dict(pairs=48, probe=8, steps=3, batch=16, law=LAW_T)

@pytest.fixture(scope='module')
def gaussians():
    g = torch.Generator().manual_seed(0)
    mu, sc = torch.rand(1, 8, 8, generator=g, dtype=torch.float64) - 0.5, torch.rand(1, 8, 8, generator=g, dtype=torch.float64) * 0.5 + 0.05
    return dict(iso=gaussian_backbone(mu, torch.full_like(sc, float(sc.mean()))), pixel=gaussian_backbone(mu, sc))

def test_headroom_is_zero_exactly_where_the_derivation_says(gaussians):
    d_iso, d_px = dg.diagnose_model(gaussians['iso'], 3, **SMALL), dg.diagnose_model(gaussians['pixel'], 3, **SMALL)
    assert d_iso.rho_needed < 1e-8 < 1e-3 < d_px.rho_needed
    assert len(d_px.rho_by_row) == 3 and d_px.scalar_rmse > 0 and d_px.base in dg.STUDY_BASES

def test_prediction_is_the_law_at_the_measured_headroom(gaussians):
    d = dg.diagnose_model(gaussians['pixel'], 3, **SMALL)
    assert d.predicted_gain == pytest.approx(d.rho_needed / 2, abs=1e-9)
    assert (d.predicted_gain, d.predicted_gain_sd) == dg.predict_gain(d.rho_needed, LAW_T)
    assert d.in_range == (-0.02 <= d.rho_needed <= 0.62) and d.recommendation

def test_a_given_solver_is_measured_not_refitted(gaussians):
    bb = gaussians['pixel']
    given = ScalarSolver('euler', 3, bb.path)
    d = dg.diagnose_model(bb, 3, solver=given, **SMALL)
    probe = dg.setting_pairs(bb, 8, seed=HELD_OUT_SEED)
    assert d.base == 'euler' and d.rho_needed == pytest.approx(dg.solver_headroom(given, bb, probe.noise).rho, abs=1e-12)
    sl = SpanLift.from_scalars(given, (1, 8, 8))                             # a SpanLift gives its scalars
    assert dg.diagnose_model(bb, 3, solver=sl, **SMALL).rho_needed == pytest.approx(d.rho_needed, abs=1e-12)
    with pytest.raises(ValueError, match='spends 3 NFE, not 4'): dg.diagnose_model(bb, 4, solver=given, **SMALL)

def test_recommendations():
    assert dg.recommend(0.3, 0.05, True, LAW_T).startswith('train SpanLift')
    assert dg.recommend(-0.1, 0.02, True, LAW_T).startswith('keep learned scalars')
    assert dg.recommend(0.03, 0.05, True, LAW_T).startswith('uncertain')
    assert dg.recommend(0.3, 0.05, False, LAW_T).startswith('measure directly')

@pytest.mark.parametrize('kw, msg', [(dict(nfe=0), 'nfe must be a positive integer'), (dict(pairs=8), 'pairs must be at least 32'),
                                     (dict(seed=HELD_OUT_SEED), 'HELD_OUT_SEED'), (dict(guidance=-1.0), 'guidance must be a positive scale'),
                                     (dict(law=dict(a=0.0)), 'law must be a fitted law')])
def test_bad_input_is_refused_before_any_work(gaussians, monkeypatch, kw, msg):
    monkeypatch.setattr(dg, 'setting_pairs', lambda *a, **k: pytest.fail('work started before the input was checked'))
    args = dict(SMALL, **kw); nfe = args.pop('nfe', 3)
    with pytest.raises(ValueError, match=msg): dg.diagnose_model(gaussians['pixel'], nfe, **args)

def test_cli_function_refuses_in_one_line(monkeypatch):
    monkeypatch.setattr(dg, 'diagnose_model', lambda *a, **k: pytest.fail('work started before the input was checked'))
    with pytest.raises(ValueError, match='--backbone is required'): dg.diagnose()
    with pytest.raises(OSError, match='--checkpoint: no checkpoint'): dg.diagnose('digits-flow', checkpoint='no/such.safetensors')

def test_stationary_gaussian_is_exact():
    st = dg.stationary_gaussian((1, 6, 6), length=1.2, std=0.4)
    z = start_noise(st.path, (1, 6, 6), 8, seed=0, dtype=torch.float64)
    assert torch.allclose(st.net.solve(z, 1.0, 0.4), teacher_solve(st, z, 1.0, 0.4, rtol=1e-8, atol=1e-8), atol=1e-5)

def test_fit_law_and_summary():
    assert LAW_T['b'] == pytest.approx(0.5) and LAW_T['r2'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='at least 3 settings'): dg.fit_law([0.1, 0.2], [0.0, 0.1])

def test_summary_keeps_degenerate_and_held_out_settings_out_of_the_law():
    def rec(setting, rho, gain, seed, held=False):
        return dict(setting=setting, nfe=3, guidance=None, held_out=held, base='euler', seed=seed, rmse=dict(control=1.0, spanlift=1 - gain),
                    rho_needed=rho, gain=gain, gain_in_span=0.0, gain_vs_scalar=gain, correction_share=0.5, cosine=0.1)
    rows = [rec(s, r, g, i) for i in range(2) for s, r, g in (('a', 0.1, 0.05), ('b', 0.2, 0.1), ('c', 0.3, 0.15))]
    rows += [rec('iso', 0.0, -20.0, 0), rec('new', 0.5, 0.9, 0, held=True)]
    sm = dg.summarise_rows(rows)
    by = {s['setting']: s for s in sm['settings']}
    assert by['a']['seeds'] == 2 and not by['iso']['in_law'] and not by['new']['in_law'] and by['a']['in_law']
    assert sm['law']['n'] == 3 and sm['law']['b'] == pytest.approx(0.5)
