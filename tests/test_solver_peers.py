"Our DPM-Solver++(3M), UniPC, Euler and Heun against diffusers' schedulers (flow, VP and EDM paths, Karras sigmas), and iPNDM against the reference loop, step for step, on exact Gaussian backbones."
import pytest
import torch
from spanlift_nb.core import GaussianPath
from spanlift_nb.analytic import gaussian_backbone
from spanlift_nb.solvers import sample, get_solver, make_grid

d = pytest.importorskip('diffusers')
from spanlift_nb.adapters import scheduler_grid, vp_alphas_cumprod

MEAN = torch.randn(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
SCALE = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.1
NOISE = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
AC = vp_alphas_cumprod(dict(d.DDPMScheduler().config))
N_TRAIN = len(AC)

def backbone(kind):
    "An exact Gaussian on diffusers' default DDPM schedule (VP, eps) or on the flow path (velocity)"
    path = GaussianPath('vp', t_max=1.0, t_min=1 / N_TRAIN, alphas_cumprod=AC) if kind == 'vp' else GaussianPath('flow')
    return gaussian_backbone(MEAN, SCALE, path)

def scheduler(cls, kind, steps, **kw):
    "A diffusers scheduler on `kind`'s path: VP stops at alphas_cumprod[0] (as our discrete path does), flow at sigma = 0"
    path_kw = dict(final_sigmas_type='sigma_min') if kind == 'vp' else dict(use_flow_sigmas=True, prediction_type='flow_prediction')
    s = cls(**kw, **path_kw); s.set_timesteps(steps)
    return s

def diffusers_run(sch, bb, kind):
    "diffusers' loop; the network output is the exact eps (VP) or velocity (flow) at the scheduler's own time"
    x, states = NOISE.clone(), []
    for i, k in enumerate(sch.timesteps):
        t = (k.double() + 1) / N_TRAIN if kind == 'vp' else sch.sigmas[i].double()
        o = bb(x, t)
        x = sch.step(o.eps if kind == 'vp' else o.velocity, k, x).prev_sample
        states.append(x)
    return states

def ours(bb, sch, solver):
    g = scheduler_grid(sch)
    _, traj = sample(bb, NOISE, solver, solver.nfe_for_steps(len(g) - 1), grid=g, return_trajectory=True)
    return traj[1:]

def max_diff(a, b): return float((a - b).abs().max())

@pytest.mark.parametrize('kind', ['vp', 'flow'])
@pytest.mark.parametrize('steps', [5, 8])
def test_unipc_matches_diffusers_defaults(kind, steps):
    "UniPC-bh2, order 2, lower_order_final=True (diffusers' defaults) is our `unipc`; onto sigma = 0 with final='newest'"
    bb = backbone(kind)
    sch = scheduler(d.UniPCMultistepScheduler, kind, steps)
    ref, mine = diffusers_run(sch, bb, kind), ours(bb, sch, get_solver('unipc'))
    assert max_diff(mine[-1], ref[-1]) < 1e-6 * float(ref[-1].abs().max())
    if kind == 'flow':                                         # the extrapolated final step is a different method
        other = ours(bb, sch, get_solver('unipc', final='extrapolate'))[-1]
        assert max_diff(other, ref[-1]) > 1e-3

def test_unipc_without_lower_order_final_differs_in_the_last_step_only():
    "diffusers' lower_order_final=False keeps order 2 in the last predictor step: every state but the endpoint agrees"
    bb = backbone('vp')
    sch = scheduler(d.UniPCMultistepScheduler, 'vp', 8, lower_order_final=False)
    ref, mine = diffusers_run(sch, bb, 'vp'), ours(bb, sch, get_solver('unipc'))
    scale = float(ref[-1].abs().max())
    assert all(max_diff(a, b) < 1e-6 * scale for a, b in zip(mine[:-1], ref[:-1]))
    assert max_diff(mine[-1], ref[-1]) > 1e-2 * scale

@pytest.mark.parametrize('kind', ['vp', 'flow'])
@pytest.mark.parametrize('steps', [5, 8])
def test_dpmpp_3m_matches_diffusers(kind, steps):
    "DPMSolverMultistepScheduler(solver_order=3, dpmsolver++) is our dpmpp_3m with weight='half' (the default)"
    bb = backbone(kind)
    # solver_type='heun': diffusers' second-order warm-up step in the form ours uses; lower_order_final=False: no drop at the end
    # (onto sigma = 0, diffusers always takes the newest estimate, our final='newest')
    sch = scheduler(d.DPMSolverMultistepScheduler, kind, steps, algorithm_type='dpmsolver++', solver_order=3,
                    solver_type='heun', lower_order_final=False)
    ref = diffusers_run(sch, bb, kind)
    mine, taylor = ours(bb, sch, get_solver('dpmpp_3m')), ours(bb, sch, get_solver('dpmpp_3m', weight='taylor'))
    scale = float(ref[-1].abs().max())
    assert max_diff(mine[-1], ref[-1]) < 1e-5 * scale        # diffusers keeps its sigmas in float32
    assert max_diff(taylor[-1], ref[-1]) > 1e-3 * scale      # the 2*phi_3 weight is not diffusers' method

# iPNDM as DEIS and diff-sampler write it: their loop runs in the EDM variables x^ = x/alpha, s^ = sigma/alpha, with
# d = (x^ - D)/s^ (= eps) and the fixed Adams-Bashforth coefficients by order min(i + 1, 4). Written out step by step
# here, independent of `solvers.ipndm`, on the exact Gaussian of each path (no diffusers scheduler implements iPNDM).
AB = {1: [1.], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}

def ipndm_reference(bb, x, grid):
    "diff-sampler's `get_ipndm` loop in (x^, s^); a flow path's start (alpha = 0) takes DDIM in data form: x = sigma_t x + alpha_t D"
    p, buf, xh = bb.path, [], None
    for i in range(len(grid) - 1):
        t_cur, t_next = grid[i], grid[i + 1]
        a_c, s_c, a_n, s_n = (float(f(torch.tensor(u, dtype=torch.float64))) for u in (t_cur, t_next) for f in (p.alpha, p.sigma))
        x_cur = x if xh is None else a_c * xh
        den = bb(x_cur, torch.tensor(t_cur, dtype=torch.float64)).denoised
        if a_c == 0.0:                                   # t = 1 on a flow path: x^ is infinite, eps = x
            d_cur, xh = x_cur, (s_n * x_cur + a_n * den) / a_n
        else:
            xc = x_cur / a_c
            d_cur = (xc - den) / (s_c / a_c)
            order = min(4, len(buf) + 1)
            upd = AB[order][0] * d_cur + sum(c * b for c, b in zip(AB[order][1:], reversed(buf)))
            xh = xc + (s_n / a_n - s_c / a_c) * upd
        buf = (buf + [d_cur])[-3:]
    return a_n * xh

@pytest.mark.parametrize('kind', ['vp', 'flow', 'edm'])
@pytest.mark.parametrize('steps', [3, 4, 6, 10])
def test_ipndm_matches_reference(kind, steps):
    "`ipndm` is the reference loop to round-off on VP (eps), flow and EDM exact Gaussians; `ipndm_v` (AB on the velocity) is another method off EDM"
    path = dict(vp=GaussianPath('vp'), flow=GaussianPath('flow'), edm=GaussianPath('edm', t_max=80.0, t_min=0.002))[kind]
    bb = gaussian_backbone(MEAN, SCALE, path)
    x = NOISE * path.sigma(torch.tensor(path.t_max, dtype=torch.float64))
    g = make_grid(None, path, steps)
    ref = ipndm_reference(bb, x, g.tolist())
    mine, vel = sample(bb, x, 'ipndm', steps, grid=g), sample(bb, x, 'ipndm_v', steps, grid=g)
    scale = float(ref.abs().max())
    assert max_diff(mine, ref) < 1e-9 * scale
    if kind == 'edm': assert max_diff(vel, ref) < 1e-9 * scale          # alpha = 1, sigma = t: the two coincide
    else: assert max_diff(vel, ref) > 1e-4 * scale

def test_ipndm_beats_ipndm_v_on_the_vp_gaussian():
    "On an exact VP Gaussian at 3 and 4 NFE, iPNDM in the exponential-integrator variables is several times closer to the exact endpoint"
    path = GaussianPath('vp'); bb = gaussian_backbone(MEAN, SCALE, path)
    exact = bb.net.solve(NOISE, path.t_max, path.t_min)
    err = lambda name, n: float((sample(bb, NOISE, name, n) - exact).pow(2).mean().sqrt())
    for n in (3, 4): assert err('ipndm', n) < 0.5 * err('ipndm_v', n), (n, err('ipndm', n), err('ipndm_v', n))

@pytest.mark.parametrize('name,cls', [('euler', 'FlowMatchEulerDiscreteScheduler'), ('heun', 'FlowMatchHeunDiscreteScheduler')])
@pytest.mark.parametrize('steps', [3, 5])
def test_flow_euler_heun_match_diffusers(name, cls, steps):
    "diffusers' flow-matching Euler and Heun schedulers (shift 1) are our `euler` and `heun` (last step Euler) on their sigma grid"
    bb = backbone('flow')
    sch = getattr(d, cls)(shift=1.0); sch.set_timesteps(steps)
    x = NOISE.clone()
    for t in sch.timesteps:
        cur = sch.sigmas[sch.step_index if sch.step_index is not None else 0].double()
        x = sch.step(bb(x, cur).velocity, t, x).prev_sample
    grid = torch.tensor(sorted(set(sch.sigmas.double().tolist()), reverse=True), dtype=torch.float64)
    mine = sample(bb, NOISE, name, len(sch.timesteps), grid=grid)
    assert max_diff(mine, x) < 1e-6 * float(x.abs().max())        # diffusers keeps its sigmas in float32
    if name == 'heun': assert max_diff(sample(bb, NOISE, 'euler', len(grid) - 1, grid=grid), x) > 1e-3   # the test can tell the two apart

# The EDM path (x = x0 + sigma * eps, t = sigma) against diffusers' sigma-space schedulers. The exact Gaussian is asked at the
# scheduler's own sigma, so these compare the solvers' arithmetic and grids, not diffusers' sigma-to-timestep interpolation
# (a real VP network is called at an interpolated discrete timestep, which no exact model can stand in for).
# Where they match: Euler (s_churn = 0) and Heun onto sigma = 0, whose last step is an Euler step in both (neither evaluates the
# model at sigma = 0); Euler on a sigma list passed explicitly; EDMEulerScheduler's own Karras schedule.
# Where they cannot: diffusers' HeunDiscreteScheduler always ends at sigma = 0, so our `heun` onto a sigma_min > 0 (a full Heun step
# there) has no peer; EulerDiscreteScheduler(final_sigmas_type='sigma_min') with Karras sigmas repeats sigma_min, a step of length 0
# that costs a model call (our grids never repeat a time: we match it with one step fewer); EDMEulerScheduler.set_timesteps(sigmas=)
# reads its argument as ramp positions for its Karras formula, not as sigmas, so a sigma list cannot be passed to it; s_churn > 0
# (Euler's noise injection) is stochastic and ours is not. diffusers keeps sigmas in float32: the tolerance is float32 round-off.
EDM = GaussianPath('edm', t_max=80.0, t_min=0.0)

def edm_run(sch, bb, out):
    "diffusers' loop from the scheduler's own starting noise; `out(o, sigma, x)` turns our ModelOutput into what the scheduler reads"
    x = NOISE * sch.init_noise_sigma
    start = x.clone()
    for t in sch.timesteps:
        s = sch.sigmas[sch.step_index if sch.step_index is not None else 0].double()
        x = sch.step(out(bb(x, s), s, x), t, x).prev_sample
    return start, x

def distinct_sigmas(sch): return torch.tensor(sorted(set(sch.sigmas.double().tolist()), reverse=True), dtype=torch.float64)

@pytest.mark.parametrize('name,cls', [('euler', 'EulerDiscreteScheduler'), ('heun', 'HeunDiscreteScheduler')])
@pytest.mark.parametrize('steps', [3, 5])
def test_edm_euler_heun_match_diffusers_karras(name, cls, steps):
    "EulerDiscreteScheduler and HeunDiscreteScheduler with Karras sigmas (epsilon prediction) are our `euler` and `heun` on the EDM Gaussian, on their grid"
    bb = gaussian_backbone(MEAN, SCALE, EDM)
    sch = getattr(d, cls)(use_karras_sigmas=True); sch.set_timesteps(steps)
    start, ref = edm_run(sch, bb, lambda o, s, x: o.eps)
    grid = distinct_sigmas(sch)
    assert float(grid[-1]) == 0.0 and len(grid) == steps + 1
    mine = sample(bb, start, name, get_solver(name).nfe_for_steps(steps), grid=grid)
    assert max_diff(mine, ref) < 1e-6 * float(ref.abs().max())
    alt = 'heun' if name == 'euler' else 'euler'
    assert max_diff(sample(bb, start, alt, get_solver(alt).nfe_for_steps(steps), grid=grid), ref) > 1e-3 * float(ref.abs().max())   # tells them apart

def test_euler_onto_sigma_min_spends_a_call_on_a_zero_step():
    "EulerDiscreteScheduler(final_sigmas_type='sigma_min') with Karras sigmas: its sigma list already ends at sigma_min, so the last step has length 0"
    bb = gaussian_backbone(MEAN, SCALE, EDM)
    sch = d.EulerDiscreteScheduler(use_karras_sigmas=True, final_sigmas_type='sigma_min'); sch.set_timesteps(5)
    assert float(sch.sigmas[-1]) == float(sch.sigmas[-2]) > 0            # 5 model calls, 4 steps that move: no grid of ours repeats a time
    start, ref = edm_run(sch, bb, lambda o, s, x: o.eps)
    grid = distinct_sigmas(sch)
    assert max_diff(sample(bb, start, 'euler', 4, grid=grid), ref) < 1e-6 * float(ref.abs().max())

@pytest.mark.parametrize('steps', [3, 5])
def test_euler_with_our_sigmas_passed_explicitly(steps):
    "EulerDiscreteScheduler.set_timesteps(sigmas=...) with our EDM Karras grid (80 to 0.002, then 0) is our `euler` on that grid"
    bb = gaussian_backbone(MEAN, SCALE, EDM)
    grid = torch.cat([make_grid('karras', GaussianPath('edm', t_max=80.0, t_min=0.002), steps - 1), torch.zeros(1, dtype=torch.float64)])
    sch = d.EulerDiscreteScheduler(); sch.set_timesteps(sigmas=grid.tolist())
    assert max_diff(sch.sigmas.double(), grid) < 1e-6 * 80                  # it runs them as given (in float32)
    start, ref = edm_run(sch, bb, lambda o, s, x: o.eps)
    mine = sample(bb, start, 'euler', steps, grid=grid)
    assert max_diff(mine, ref) < 1e-6 * float(ref.abs().max())
    assert max_diff(sample(bb, start, 'euler', steps, grid=make_grid('uniform', EDM, steps)), ref) > 1e-2   # another grid gives another answer

@pytest.mark.parametrize('steps', [3, 6])
def test_karras_grid_is_diffusers(steps):
    "Our Karras grid (rho = 7) is diffusers' Karras sigmas, with the scheduler's sigma_max and sigma_min, to float32 round-off"
    sch = d.EulerDiscreteScheduler(use_karras_sigmas=True); sch.set_timesteps(steps)
    theirs = sch.sigmas.double()[:-1]
    ours_ = make_grid('karras', GaussianPath('edm', t_max=float(theirs[0]), t_min=float(theirs[-1])), steps - 1)
    assert max_diff(ours_ / theirs, torch.ones_like(theirs)) < 1e-6
    edm = d.EDMEulerScheduler(); edm.set_timesteps(steps)                       # EDM's own schedule: sigma 80 to 0.002, then 0
    karras = make_grid('karras', GaussianPath('edm', t_max=80.0, t_min=0.002), steps - 1)
    assert max_diff(edm.sigmas.double()[:-1] / karras, torch.ones(steps)) < 1e-6 and float(edm.sigmas[-1]) == 0.0
    assert max_diff(make_grid('uniform', GaussianPath('edm', t_max=80.0, t_min=0.002), steps - 1), karras) > 1.0   # it tells grids apart

@pytest.mark.parametrize('steps', [3, 5])
def test_edm_euler_scheduler(steps):
    "EDMEulerScheduler (Karras sigmas 80 to 0.002, then 0), fed the network output F with D = c_skip x + c_out F, is our `euler` on our Karras grid"
    bb = gaussian_backbone(MEAN, SCALE, EDM)
    sch = d.EDMEulerScheduler(); sch.set_timesteps(steps)
    sd = sch.config.sigma_data
    def raw(o, s, x):                       # the preconditioned network output F that gives our exact denoised D
        c_skip, c_out = sd ** 2 / (s ** 2 + sd ** 2), s * sd / (s ** 2 + sd ** 2) ** 0.5
        return (o.denoised - c_skip * x) / c_out
    start, ref = edm_run(sch, bb, raw)
    grid = torch.cat([make_grid('karras', GaussianPath('edm', t_max=80.0, t_min=0.002), steps - 1), torch.zeros(1, dtype=torch.float64)])
    mine = sample(bb, start, 'euler', steps, grid=grid)
    assert max_diff(mine, ref) < 1e-5 * float(ref.abs().max())
