"""mypy over every package's sources (configuration: [tool.mypy] in the root pyproject.toml).

Every package is clean: ``mypy_baseline.txt`` (errors tolerated when the checker was added to CI, listed by
file, message and code without line numbers) is empty now and should stay so. The test fails on any error
that is not in the list and says which listed errors are gone, so the list can only shrink
(``uv run python tests/packaging/test_types.py --update`` rewrites it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("mypy_baseline.txt")
CLEAN = ("packages/train/",)  # no baseline entries allowed
_ERROR = re.compile(r"^(?P<path>packages/[^:]+\.py):\d+(?::\d+)?: error: (?P<msg>.*)$")


def mypy_errors() -> Counter[str]:
    """``path: message [code]`` -> how often, from one mypy run over packages/."""
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-pretty", "--no-error-summary", "--show-error-codes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if res.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        raise RuntimeError(f"mypy exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    errors: Counter[str] = Counter()
    for line in res.stdout.splitlines():
        m = _ERROR.match(line)
        if m:
            errors[f"{m['path']}: {m['msg']}"] += 1
    if res.returncode == 1 and not errors:
        raise RuntimeError(f"mypy failed but no error line was recognised:\n{res.stdout}")
    return errors


def read_baseline() -> Counter[str]:
    lines = [ln for ln in BASELINE.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    return Counter(lines)


@pytest.mark.slow
def test_mypy_has_no_error_outside_the_baseline() -> None:
    baseline = read_baseline()
    assert not [e for e in baseline if e.startswith(CLEAN)], "polyhead-train must stay free of type errors"
    current = mypy_errors()
    new = current - baseline
    assert not new, "new mypy errors (fix them; the baseline is only for old ones):\n" + "\n".join(
        f"{n} x {e}" for e, n in sorted(new.items())
    )
    gone = baseline - current
    if gone:
        print(f"{sum(gone.values())} baseline errors are fixed: regenerate {BASELINE.name} (--update)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/packaging/test_types.py --update")
    errors = mypy_errors()
    body = sorted(e for e, n in errors.items() for _ in range(n))
    header = "# mypy errors present when the checker was added to CI; each fix removes its line (see test_types.py)\n"
    BASELINE.write_text(header + "\n".join(body) + "\n", encoding="utf-8")
    print(f"{len(body)} errors written to {BASELINE}")
