"The model zoo seen from a fresh process: every shipped checkpoint loads by path, and bad files get one-line errors that name them."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from spanlift_nb import zoo

def py(code):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=600)

@pytest.mark.parametrize('name', zoo.shipped())
def test_shipped_checkpoint_loads_by_path_in_a_fresh_process(name):
    path = zoo.WEIGHTS_DIR / f'{name}.safetensors'
    p = py("import torch\nfrom spanlift_nb import zoo\n"                         # nothing else imported: the zoo finds the module
           f"m = zoo.load({str(path)!r})\n"
           "print(type(m).__name__, m.meta['role'], type(getattr(m, 'decoder', None)).__name__)")
    assert p.returncode == 0, p.stderr
    kind, role, decoder = p.stdout.split()
    meta = zoo.info(name)
    assert role == meta['role']
    assert (kind == 'Backbone') == ('path' in meta)
    assert (decoder != 'NoneType') == ('autoencoder' in meta)

def _copy(tmp_path, name='digits-flow') -> Path:
    for suf in ('.safetensors', '.json'): shutil.copy(zoo.WEIGHTS_DIR / f'{name}{suf}', tmp_path / f'copy{suf}')
    return tmp_path / 'copy.safetensors'

@pytest.mark.parametrize('module', ['os', 'subprocess', 'spanlift_nbx.evil', '__main__'])
def test_a_json_naming_a_module_outside_the_package_is_refused(tmp_path, module):
    f = _copy(tmp_path)
    meta = json.loads(f.with_suffix('.json').read_text())
    f.with_suffix('.json').write_text(json.dumps(dict(meta, module=module, arch='not-registered')))
    p = py(f"from spanlift_nb import zoo\nzoo.load({str(f)!r})")
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith('ValueError: ') and f"names module {module!r}: the zoo imports only spanlift_nb modules" in last, p.stderr

def test_the_cli_refuses_it_in_one_line(tmp_path):
    f = _copy(tmp_path)
    meta = json.loads(f.with_suffix('.json').read_text())
    f.with_suffix('.json').write_text(json.dumps(dict(meta, module='os')))
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    p = subprocess.run(['spanlift', 'sample', '--backbone', str(f), '--base', 'euler', '--nfe', '2', '--n', '2', '--out', str(tmp_path / 's.npy'),
                        '--device', 'cpu'], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "only spanlift_nb modules" in p.stderr

def test_a_corrupted_file_gets_an_error_naming_it(tmp_path):
    f = _copy(tmp_path)
    raw = bytearray(f.read_bytes()); raw[-100] ^= 0xFF; f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f'{f} is corrupt'): zoo.load(f)
    meta = json.loads(f.with_suffix('.json').read_text()); meta.pop('sha256')
    f.with_suffix('.json').write_text(json.dumps(zoo.seal(meta)))       # without a recorded hash, safetensors itself refuses the file
    f.write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match=f'{f} is not a readable safetensors file'): zoo.load(f)

def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='No checkpoint at'): zoo.load(tmp_path / 'none.safetensors')
    f = _copy(tmp_path); f.with_suffix('.json').unlink()
    with pytest.raises(FileNotFoundError, match='has no metadata file copy.json'): zoo.load(f)

def _edit(f: Path, **change):
    m = f.with_suffix('.json'); m.write_text(json.dumps(dict(json.loads(m.read_text()), **change)))

def _last_line(code) -> str:
    p = py(code)
    assert p.returncode != 0
    return p.stderr.strip().splitlines()[-1]

@pytest.mark.parametrize('change', [dict(data_shape=[1, 28, 28]), dict(path=dict(kind='edm', t_max=80.0, t_min=0.0)),
                                    dict(prediction='eps'), dict(arch_kwargs=dict(base=16))])
def test_a_json_edited_after_saving_is_refused_in_one_line(tmp_path, change):
    f = _copy(tmp_path); _edit(f, **change)
    last = _last_line(f"from spanlift_nb import zoo\nzoo.load({str(f)!r})")
    assert last.startswith('ValueError: ') and f'{f.with_suffix(".json")} was edited after it was saved' in last, last

@pytest.mark.parametrize('shape', [[1, 0, 8], '1x8x8', [1.5, 8, 8], [], None])
def test_a_malformed_data_shape_is_refused_even_when_sealed(tmp_path, shape):
    f = _copy(tmp_path); m = f.with_suffix('.json')
    m.write_text(json.dumps(zoo.seal(dict(json.loads(m.read_text()), data_shape=shape))))
    with pytest.raises(ValueError, match='is not the shape of one sample'): zoo.load(f)

@pytest.mark.parametrize('top', [[1, 2], 'digits', 3, None])
def test_a_json_whose_top_level_is_not_an_object_is_refused(tmp_path, top):
    f = _copy(tmp_path); f.with_suffix('.json').write_text(json.dumps(top))
    last = _last_line(f"from spanlift_nb import zoo\nzoo.load({str(f)!r})")
    assert last.startswith('ValueError: ') and 'at its top level, not an object' in last, last

def test_every_shipped_json_is_sealed():
    for name in zoo.shipped():
        meta = zoo.info(name)
        assert meta.get('meta_sha256') == zoo.meta_hash(meta), name

def test_the_reference_features_are_small_checked_and_tied_to_their_classifier(tmp_path):
    assert zoo.shipped('reference-stats') == ['ref-digits', 'ref-fashion']
    for name in zoo.shipped('reference-stats'):
        assert (zoo.WEIGHTS_DIR / f'{name}.safetensors').stat().st_size < 2e6, name
        ref, clf = zoo.load(name), zoo.load(zoo.info(name)['classifier'])
        assert ref.meta['classifier_sha256'] == clf.meta['sha256'], name
    f = _copy(tmp_path, 'ref-fashion')
    raw = bytearray(f.read_bytes()); raw[-10] ^= 0xFF; f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f'{f} is corrupt'): zoo.load(f)
    with pytest.raises(ValueError, match='is a saved reference-stats, not a backbone'): zoo.load_backbone('ref-digits')

def test_fashion_features_without_the_data_come_from_the_shipped_reference(tmp_path):
    "In a process that sees no Fashion-MNIST, clf_fid_kid scores 28×28 images against the shipped features"
    code = ("import torch\nfrom spanlift_nb import metrics\nassert not metrics.has_images('fashion')\n"
            "f = metrics.real_features('fashion')\nassert f.shape == (10000, 64) and f.dtype == torch.float32\n"
            "r = metrics.clf_fid_kid(torch.rand(64, 1, 28, 28) * 2 - 1, 'fashion')\n"
            "assert r['fid'] > 10 * r['fid_floor'] > 0, r\nprint('ok')")
    env = dict(os.environ, OMP_NUM_THREADS='1', SPANLIFT_FASHION_ROOT=str(tmp_path / 'none'))
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0 and p.stdout.strip() == 'ok', p.stderr

def test_the_fashion_reference_remade_from_the_data_matches_the_shipped_one(tmp_path):
    from spanlift_nb.data import fashion_installed
    if not fashion_installed():
        if os.environ.get('SPANLIFT_REQUIRE_FASHION') == '1': pytest.fail('Fashion-MNIST is not installed (SPANLIFT_REQUIRE_FASHION=1)')
        pytest.skip('needs Fashion-MNIST: apt-get install dataset-fashion-mnist (or set SPANLIFT_FASHION_ROOT)')
    new, old = zoo.load(zoo.make('ref-fashion', out_dir=tmp_path, progress=False)), zoo.load('ref-fashion')
    assert sorted(new) == sorted(old) and new.meta['classifier_sha256'] == old.meta['classifier_sha256']
    for k in old:
        a, b = new[k].double(), old[k].double()
        assert (a - b).abs().max() <= 1e-3 * b.abs().max(), (k, (a - b).abs().max())

@pytest.mark.parametrize('name,module', [('fashion-ae', 'spanlift_nb.latent'), ('rain-nowcast', 'spanlift_nb.nowcast')])
def test_a_file_naming_the_module_an_architecture_used_to_live_in_still_loads(tmp_path, name, module):
    "The architecture is found by its name; the recorded spanlift_nb module is not imported"
    f = _copy(tmp_path, name); m = f.with_suffix('.json')
    m.write_text(json.dumps(zoo.seal(dict(json.loads(m.read_text()), module=module))))
    p = py(f"import sys\nfrom spanlift_nb import zoo\nnet = zoo.load({str(f)!r})\nprint(type(getattr(net, 'net', net)).__name__, {module!r} in sys.modules)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [{'fashion-ae': 'ConvAE', 'rain-nowcast': 'NowcastNet'}[name], 'False']
