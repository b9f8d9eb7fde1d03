"""A new user's probe list, walked through: bad input, damaged files and interrupted work each give one line and exit 2 before any work
(or work correctly). Fast: the exact Gaussian of test_cli.py, tiny sizes, no data set needed."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from test_cli import GAUSS, run, ok_json, one_line_error
from spanlift_nb.zoo import seal

@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    "A folder with the Gaussian backbone, images, labels, and one trained solver checkpoint"
    d = tmp_path_factory.mktemp('probe')
    (d / 'gauss.py').write_text(GAUSS)
    np.save(d / 'imgs.npy', np.random.default_rng(0).integers(0, 256, (16, 8, 8), dtype=np.uint8))
    np.save(d / 'y.npy', np.arange(16) % 4)
    (d / 'empty.npy').write_bytes(b'')
    np.save(d / 'none.npy', np.zeros(0, dtype=np.int64))
    np.save(d / 'huge.npy', np.append(np.arange(15) % 4, 100000))
    np.save(d / 'f255.npy', np.full((16, 8, 8), 200.0, dtype=np.float32))
    (d / 'afile').write_text('x')
    ok_json(run(d, *FIT, '--out', d / 's.safetensors', '--json'))
    return d

SPEC = 'gauss.py:make'       # run() works in the fixture folder
FIT = ('fit-solver', '--backbone', SPEC, '--method', 'spanlift', '--base', 'euler', '--nfe', 3, '--pairs', 48, '--val', 16, '--steps', 4, '--scalar-steps', 4,
       '--batch', 16, '--width', 8, '--blocks', 1)
SPANLIFT_ONLY = ('--width', '--blocks', '--scalar-steps', '--staging')
FB = ('fit-backbone', '--data', 'imgs.npy', '--steps', 2, '--batch', 4)
EV = ('eval', '--backbone', SPEC, '--base', 'euler', '--nfe', 3, '--n', 8)

def last_line_error(p, *needles):
    "Exit 2, no traceback, and the error in the last line of stderr (after progress bars or a library's own warnings)"
    assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith('spanlift ') and all(n in last for n in needles), p.stderr

BAD_ARGS = [
    ((*FB, '--labels', 'empty.npy', '--out', 'x.safetensors'), 'is not a readable .npy file'),
    ((*FB, '--labels', 'none.npy', '--out', 'x.safetensors'), 'holds no labels'),
    ((*FIT, '--width', 0, '--out', 'x.safetensors'), '--width must be a positive integer'),
    ((*FIT, '--pairs', -100, '--out', 'x.safetensors'), '--pairs must be a positive integer'),
    ((*FIT, '--pairs', 0, '--out', 'x.safetensors'), '--pairs must be a positive integer'),
    ((*FIT, '--val', 0, '--out', 'x.safetensors'), '--val must be a positive integer'),
    ((*FIT, '--ckpt-every', 0, '--out', 'x.safetensors'), '--ckpt-every must be a positive integer'),
    ((*EV[:-1], -5), '--n must be a positive integer'),
    ((*EV[:-1], 0), '--n must be a positive integer'),
    ((*EV, '--device', 'tpu'), "--device 'tpu' is not"),
    ((*FIT, '--device', 'tpu', '--out', 'x.safetensors'), "--device 'tpu' is not"),
    (('demo', '--nfe', 0), '--nfe must be a positive integer'),
    (('demo', '--dataset', 'cifar'), 'valid: digits, fashion'),
    ((*FIT, '--seed', 1, '--out', 'x.safetensors'), 'held-out seed'),
    ((*FIT, '--lr', 0, '--out', 'x.safetensors'), '--lr must be a positive number'),
    ((*FIT, '--lr', -1e-3, '--out', 'x.safetensors'), '--lr must be a positive number'),
    ((*FB, '--num-classes', 3, '--out', 'x.safetensors'), '--num-classes needs --labels'),
    ((*FB, '--labels', 'huge.npy', '--out', 'x.safetensors'), 'pass --num-classes K'),
    ((*FIT, '--out', 'afile/x.safetensors'), 'is a file, not a folder'),
    ((*FIT, '--out', '/proc/x.safetensors'), 'cannot be written'),
    ((*FB, '--out', '/proc/x.safetensors'), 'cannot be written'),
    (('sample', '--backbone', SPEC, '--base', 'euler', '--nfe', 3, '--out', '/proc/x.png'), 'cannot be written'),
    (('export', '--checkpoint', 's.safetensors', '--backbone', '.', '--out', 'afile'), 'is an existing file'),
]
if not torch.cuda.is_available():
    BAD_ARGS.append(((*EV, '--device', 'cuda'), 'this machine has no CUDA GPU'))

@pytest.mark.parametrize('argv,msg', BAD_ARGS, ids=[' '.join(map(str, a[0][:1] + a[0][-3:])) for a in BAD_ARGS])
def test_bad_argument_is_one_line(ws, argv, msg):
    one_line_error(run(ws, *argv), msg)
    assert not (ws / 'x.safetensors').exists() and not (ws / 'x.json').exists()

def test_hints_name_cli_options(ws):
    p = run(ws, 'fit-backbone', '--data', 'f255.npy', '--steps', 1, '--batch', 4, '--out', 'x.safetensors')
    one_line_error(p, '--value-range'); assert 'value_range=' not in p.stderr
    r = ok_json(run(ws, 'fit-backbone', '--data', 'f255.npy', '--value-range', 0, 255, '--steps', 1, '--batch', 4, '--out', 'vr.safetensors', '--json'))
    assert r['shape'] == [1, 8, 8]
    p = run(ws, 'fit-backbone', '--data', 'fashion', '--data-root', ws / 'nowhere', '--steps', 1, '--out', 'x.safetensors')
    one_line_error(p, '--data-root'); assert 'root=' not in p.stderr

def _edited_copy(ws, name, edit=None, edit_bytes=None):
    for suf in ('.safetensors', '.json'): shutil.copy(ws / f's{suf}', ws / f'{name}{suf}')
    if edit is not None:
        j = json.loads((ws / f'{name}.json').read_text()); edit(j); (ws / f'{name}.json').write_text(json.dumps(j))
    if edit_bytes is not None:
        b = bytearray((ws / f'{name}.safetensors').read_bytes()); edit_bytes(b); (ws / f'{name}.safetensors').write_bytes(bytes(b))
    return f'{name}.safetensors'

def _header_name(b):
    "Rename a tensor in the safetensors header (same length, so the file still parses): only the recorded SHA-256 can tell"
    i = b.find(b'"best.scalar.dA"'); assert i > 0
    b[i:i + 16] = b'"best.scalar.dZ"'

SOLVER_EDITS = {
    'nfe': dict(edit=lambda j: j['solver'].update(nfe=4)),
    'patch': dict(edit=lambda j: j['solver'].update(patch=2)),
    'method': dict(edit=lambda j: j['solver'].update(method='scalar')),
    'base': dict(edit=lambda j: j['solver'].update(base='heun')),
    'no-solver': dict(edit=lambda j: j.pop('solver')),
    'weight': dict(edit_bytes=lambda b: b.__setitem__(slice(len(b) - 8, len(b)), b'\x00\x00\x80\x7f' * 2)),
    'header': dict(edit_bytes=_header_name),
}

@pytest.mark.parametrize('what', list(SOLVER_EDITS))
def test_damaged_solver_is_refused(ws, what):
    f = _edited_copy(ws, f'bad-{what}', **SOLVER_EDITS[what])
    one_line_error(run(ws, 'eval', '--backbone', SPEC, '--checkpoint', f, '--n', 8), f'bad-{what}')

def test_malformed_solver_json(ws):
    f = _edited_copy(ws, 'bad-json'); (ws / 'bad-json.json').write_text('{"solver": ')
    one_line_error(run(ws, 'eval', '--backbone', SPEC, '--checkpoint', f, '--n', 8), 'is not valid JSON')

def test_damaged_backbone_json(ws):
    ok_json(run(ws, *FB, '--out', 'bb.safetensors', '--json'))
    meta = json.loads((ws / 'bb.json').read_text())
    for k, (shape, msg) in enumerate((([3, 8, 8], 'cannot run on a sample'), ([2, 8, 8], 'cannot run on a sample'), ([0, 8, 8], 'positive integers'),
                                      ('8x8', 'positive integers'))):
        shutil.copy(ws / 'bb.safetensors', ws / f'bb{k}.safetensors')
        (ws / f'bb{k}.json').write_text(json.dumps(dict(meta, data_shape=shape)))      # edited by hand: its recorded hash no longer fits
        one_line_error(run(ws, 'sample', '--backbone', f'bb{k}.safetensors', '--base', 'euler', '--nfe', 2, '--n', 2, '--out', 'x.npy'), 'was edited after it was saved')
        (ws / f'bb{k}.json').write_text(json.dumps(seal(dict(meta, data_shape=shape))))  # saved that way: the shape itself is checked
        one_line_error(run(ws, 'sample', '--backbone', f'bb{k}.safetensors', '--base', 'euler', '--nfe', 2, '--n', 2, '--out', 'x.npy'), msg)
    shutil.copy(ws / 'bb.safetensors', ws / 'bbl.safetensors'); (ws / 'bbl.json').write_text(json.dumps([meta]))
    one_line_error(run(ws, 'sample', '--backbone', 'bbl.safetensors', '--base', 'euler', '--nfe', 2, '--n', 2, '--out', 'x.npy'), 'JSON list at its top level')

def test_resume_with_other_settings_is_refused_and_leaves_the_checkpoint(ws):
    before = {s: (ws / f's{s}').read_bytes() for s in ('.safetensors', '.json')}
    # the recipe's first stage (the learned scalars, s-scalars) is resumed first: a changed recipe is refused there, naming the setting
    for extra, msg in ((('--width', 16), 'recipe.width 8 (checkpoint) != 16 (now)'), (('--method', 'scalar'), 'solver.method spanlift (checkpoint) != scalar (now)'),
                       (('--pairs', 64), 'n_train'), (('--seed', 2), 'train.seed 0 (checkpoint) != 2 (now)'), (('--lr', 1e-4), 'recipe.lr_spanlift'),
                       (('--steps', 8), 'recipe.steps_spanlift 4 (checkpoint) != 8 (now)')):
        argv = list(FIT) + ['--out', 's.safetensors', '--resume']
        if extra[1] == 'scalar': argv = [a for i, a in enumerate(argv) if not (a in SPANLIFT_ONLY or i and argv[i - 1] in SPANLIFT_ONLY)]
        for k, v in zip(extra[::2], extra[1::2]):
            if k in argv: argv[argv.index(k) + 1] = v
            else: argv += [k, v]
        one_line_error(run(ws, *argv), 'cannot resume', msg)
    assert {s: (ws / f's{s}').read_bytes() for s in ('.safetensors', '.json')} == before

def test_learned_time_embeddings_are_one_line(ws):
    diffusers = pytest.importorskip('diffusers')
    u = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                              down_block_types=('DownBlock2D', 'DownBlock2D'), up_block_types=('UpBlock2D', 'UpBlock2D'),
                              time_embedding_type='learned', num_train_timesteps=50)
    u.save_pretrained(ws / 'learned' / 'unet'); diffusers.DDPMScheduler(num_train_timesteps=50).save_pretrained(ws / 'learned' / 'scheduler')
    (ws / 'learned' / 'model_index.json').write_text(json.dumps({'_class_name': 'DDPMPipeline', 'unet': ['diffusers', 'UNet2DModel'], 'scheduler': ['diffusers', 'DDPMScheduler']}))
    last_line_error(run(ws, 'fit-solver', '--backbone', 'learned', '--method', 'scalar', '--nfe', 2, '--pairs', 8, '--val', 4, '--steps', 1,
                       '--batch', 4, '--out', 'x.safetensors'), "time_embedding_type='learned'")   # diffusers may warn before it

def test_non_finite_loss_says_whether_a_checkpoint_was_written(ws):
    p = run(ws, *FIT, '--lr', 1e30, '--steps', 20, '--ckpt-every', 100, '--out', 'nan.safetensors')
    last_line_error(p, 'non-finite loss', 'no checkpoint was written'); assert 'kept' not in p.stderr and not (ws / 'nan.safetensors').exists()
    p = run(ws, *FIT, '--lr', 1e30, '--steps', 20, '--ckpt-every', 1, '--out', 'nan1.safetensors')
    last_line_error(p, 'non-finite loss', 'step 1) is kept'); assert (ws / 'nan1.safetensors').exists()

def test_damaged_pair_cache_is_made_again(ws):
    caches = sorted((ws / 'cache').glob('pairs-*.safetensors'))
    assert caches
    good = {f: f.read_bytes() for f in caches}
    for f in caches: f.write_bytes(good[f][:len(good[f]) // 2])
    r1 = ok_json(p := run(ws, *FIT, '--out', 'again.safetensors', '--json'))
    assert 'not usable' in p.stderr and 'Traceback' not in p.stderr
    r0 = json.loads((ws / 's.json').read_text())
    assert r1['val_rmse'] == r0['best_val']          # the pairs made again are the same pairs: the same run, the same result
