"diffusers adapters seen from outside the notebook: a fresh process without diffusers, and folders and checkpoints through `load_backbone` and the CLI."
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from spanlift_nb import zoo
from spanlift_nb.core import sample_shape

def py(code, **env):
    e = dict(os.environ, OMP_NUM_THREADS='1', **env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=e, timeout=600)

def test_without_diffusers_the_error_says_how_to_install():
    p = py("import sys; sys.modules['diffusers'] = None\n"
           "import spanlift_nb.adapters as a\n"             # importing the module needs no diffusers
           "try: a.load_diffusers('anything')\n"
           "except ImportError as e: print(e)\n")
    assert p.returncode == 0, p.stderr
    assert 'pip install "spanlift-nb[diffusers]"' in p.stdout

@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    d = pytest.importorskip('diffusers')
    d.utils.logging.set_verbosity_error()
    root = tmp_path_factory.mktemp('diffusers')
    torch.manual_seed(0)
    kw = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
              down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'))
    d.DDPMPipeline(unet=d.UNet2DModel(**kw), scheduler=d.DDPMScheduler()).save_pretrained(root / 'ddpm')
    d.UNet2DModel(**kw).save_pretrained(root / 'edm' / 'unet')
    d.EDMEulerScheduler().save_pretrained(root / 'edm' / 'scheduler')
    d.DDPMPipeline(unet=d.UNet2DModel(**kw, num_class_embeds=4), scheduler=d.DDPMScheduler()).save_pretrained(root / 'cond')
    return root

def test_load_backbone_takes_a_folder(folders):
    bb = zoo.load_backbone(str(folders / 'ddpm'))
    assert (bb.path.kind, bb.prediction, sample_shape(bb)) == ('vp', 'eps', (3, 8, 8))

def test_cli_samples_a_diffusers_folder(folders, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', SPANLIFT_CACHE=str(tmp_path / 'cache'), MPLBACKEND='Agg')
    p = subprocess.run(['spanlift', 'sample', '--backbone', str(folders / 'ddpm'), '--base', 'ddim', '--nfe', '3', '--n', '4',
                        '--out', str(tmp_path / 's.npy'), '--device', 'cpu', '--json'], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r['nfe'] == 3 and r['shape'] == [3, 8, 8]

def test_converted_checkpoint_loads_in_a_fresh_process(folders, tmp_path):
    from spanlift_nb.adapters import load_diffusers, diffusers_arch_kwargs
    bb = load_diffusers(folders / 'edm')
    ck = zoo.save(tmp_path / 'edm', bb, arch='diffusers', arch_kwargs=diffusers_arch_kwargs(bb.net), role='backbone')
    x, s = torch.randn(2, 3, 8, 8), torch.tensor([5.0, 0.2])
    torch.save(dict(x=x, s=s, d=bb(x, s).value), tmp_path / 'ref.pt')
    p = py("import torch; from spanlift_nb.zoo import load_backbone\n"           # no import of spanlift_nb.adapters here
           f"bb = load_backbone({str(ck)!r}); r = torch.load({str(tmp_path / 'ref.pt')!r})\n"
           "print(float((bb(r['x'], r['s']).value - r['d']).abs().max()))")
    assert p.returncode == 0, p.stderr
    assert float(p.stdout) < 1e-5

def test_cli_guides_a_class_conditional_folder_given_its_null_class(folders, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', SPANLIFT_CACHE=str(tmp_path / 'cache'), MPLBACKEND='Agg')
    run = lambda *a: subprocess.run(['spanlift', 'sample', '--backbone', str(folders / 'cond'), '--base', 'ddim', '--nfe', '2', '--n', '4',
                                     '--classes', '0', '2', '--guidance', '2', '--out', str(tmp_path / 's.npy'), '--device', 'cpu', '--json', *a],
                                    capture_output=True, text=True, env=env, timeout=600)
    p = run()                                                                     # the folder does not say which class is "no class"
    assert p.returncode != 0 and 'null_class' in p.stderr and 'Traceback' not in p.stderr
    p = run('--null-class', '3')
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r['nfe'], r['guidance'], r['classes']) == (2, 2.0, [0, 2])
    p = run('--null-class', '3', '--classes', '3')                                # the null class is not a class to sample
    assert p.returncode != 0 and 'Traceback' not in p.stderr

def test_encode_and_decode_take_a_latent_backbone_or_its_autoencoder():
    "One pair for every autoencoder: a latent backbone from the zoo decodes through its decoder, in batches, clamped, where its input was"
    import torch
    from spanlift_nb.adapters import encode, decode
    from spanlift_nb.zoo import load_backbone
    bb = load_backbone('fashion-latent-flow')
    z = torch.randn(5, 4, 7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = decode(z, bb, batch=2)
    assert x.dtype == torch.float32 and x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    assert torch.allclose(x, decode(z, bb.decoder), atol=1e-6)
    with torch.no_grad(): assert torch.allclose(x, bb.to_images(z.float()).clamp(-1, 1), atol=1e-5)
    assert encode(x, bb).shape == (5, 4, 7, 7)
    with pytest.raises(ValueError, match='has no encode and decode'): decode(z, torch.nn.Linear(2, 2))
