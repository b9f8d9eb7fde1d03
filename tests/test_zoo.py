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
    f.with_suffix('.json').write_text(json.dumps(meta))                 # without a recorded hash, safetensors itself refuses the file
    f.write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match=f'{f} is not a readable safetensors file'): zoo.load(f)

def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='No checkpoint at'): zoo.load(tmp_path / 'none.safetensors')
    f = _copy(tmp_path); f.with_suffix('.json').unlink()
    with pytest.raises(FileNotFoundError, match='has no metadata file copy.json'): zoo.load(f)
