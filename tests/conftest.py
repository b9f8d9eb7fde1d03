"Test-wide settings: one torch thread per process (pytest -n 2 runs two processes on the two cores, and tiny tensors run faster on one)."
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
