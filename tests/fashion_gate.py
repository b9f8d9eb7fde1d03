"""Notebooks that need Fashion-MNIST say so with a code line `requires_fashion()`. Without the data the runners skip them
with a one-line reason naming the install command; with SPANLIFT_REQUIRE_FASHION=1 (set by .ci/run, which installs the
data) a missing data set fails them instead, so CI never passes by skipping."""
import json, os
from pathlib import Path
import pytest
from spanlift_nb.data import fashion_installed, FASHION_ROOT

MARKER = 'requires_fashion()'
REASON = f'needs Fashion-MNIST in {FASHION_ROOT}: apt-get install dataset-fashion-mnist'

def needs_fashion(nb: Path) -> bool:
    "True when a code cell of the notebook calls `requires_fashion()` on a line of its own"
    cells = json.loads(Path(nb).read_text())['cells']
    return any(line.split('#')[0].strip() == MARKER for c in cells if c['cell_type'] == 'code'
               for line in ''.join(c['source']).splitlines())

def check_data(nb: Path):
    "Skip (or, under SPANLIFT_REQUIRE_FASHION=1, fail) a notebook that needs Fashion-MNIST when it is not installed"
    if not needs_fashion(nb) or fashion_installed(): return
    if os.environ.get('SPANLIFT_REQUIRE_FASHION') == '1': pytest.fail(f'{Path(nb).name} {REASON} (SPANLIFT_REQUIRE_FASHION=1)', pytrace=False)
    pytest.skip(REASON)
