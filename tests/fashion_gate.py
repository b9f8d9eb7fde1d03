"""Fashion-MNIST in the notebook runners. Cells that need the images carry the nbdev flag `#| fashion`, which is in
pyproject.toml's `tst_flags`: without the data those cells are skipped (as a plain `nbdev-test` does) and the rest of
the notebook runs; with the data installed (`fashion_installed()`, which honours SPANLIFT_FASHION_ROOT) they run too,
as under `nbdev-test --flags fashion`. A notebook that cannot run at all without the data says so with a code line
`requires_fashion()` and is skipped whole, with a one-line reason naming the install command. With
SPANLIFT_REQUIRE_FASHION=1 (set by .ci/run, which installs the data) a missing data set fails any notebook that needs it
instead, so CI never passes by skipping."""
import json, os
from pathlib import Path
import pytest
from spanlift_nb.data import fashion_installed, FASHION_ROOT

MARKER = 'requires_fashion()'
FLAG = 'fashion'
REASON = f'needs Fashion-MNIST in {FASHION_ROOT}: apt-get install dataset-fashion-mnist (or set SPANLIFT_FASHION_ROOT)'

def _code_lines(nb: Path):
    for c in json.loads(Path(nb).read_text())['cells']:
        if c['cell_type'] == 'code': yield ''.join(c['source']).splitlines()

def needs_fashion(nb: Path) -> bool:
    "True when a code cell of the notebook calls `requires_fashion()` on a line of its own (the whole notebook needs the data)"
    return any(line.split('#')[0].strip() == MARKER for lines in _code_lines(nb) for line in lines)

def flagged_cells(nb: Path) -> int:
    "How many code cells carry the `#| fashion` flag"
    return sum(any(line.strip().replace(' ', '') == f'#|{FLAG}' for line in lines) for lines in _code_lines(nb))

def skip_flags(flags) -> list:
    "The test flags to skip: `flags` (pyproject's tst_flags), without 'fashion' when the data is installed"
    flags = flags.split() if isinstance(flags, str) else list(flags or [])
    return [f for f in flags if f != FLAG] if fashion_installed() else flags

def check_data(nb: Path):
    "Skip a notebook that needs Fashion-MNIST whole when it is missing; under SPANLIFT_REQUIRE_FASHION=1 fail any that uses it"
    if fashion_installed() or not (needs_fashion(nb) or flagged_cells(nb)): return
    if os.environ.get('SPANLIFT_REQUIRE_FASHION') == '1': pytest.fail(f'{Path(nb).name} {REASON} (SPANLIFT_REQUIRE_FASHION=1)', pytrace=False)
    if needs_fashion(nb): pytest.skip(REASON)
