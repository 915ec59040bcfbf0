"""The served OpenAPI document, fuzzed with schemathesis against a real ``serve``.

``scripts/fuzz`` runs every check on valid and invalid input (positive and negative modes) in
the coverage, fuzzing and stateful (links) phases, on real PostgreSQL and Redis; this test runs
it against a fresh instance with a fixed seed, so that a failure replays, and wants zero
failures. ``FUZZ_EXAMPLES`` sets the test cases per operation (the script's default: 30);
``FUZZ_SEED`` another seed.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import Servers, truncate
from tests.service.served import serving

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-admin-token"


def _summary(output: str) -> dict[str, int]:
    """The run's counts: operations tested, test cases generated, passed, failed."""
    counts: dict[str, int] = {}
    if m := re.search(r"Tested:\s*(\d+)", output):
        counts["operations"] = int(m.group(1))
    if m := re.search(r"(\d+) generated", output):
        counts["generated"] = int(m.group(1))
    for name in ("passed", "failed", "skipped"):
        if m := re.search(rf"(\d+) {name}", output.split("Test cases:")[-1]):
            counts[name] = int(m.group(1))
    return counts


async def test_the_document_holds_under_fuzzing(servers: Servers, tmp_path: Path) -> None:
    await truncate(servers.database_url)
    with serving(
        servers.database_url,
        servers.redis_url,
        tmp_path / "service.log",
        API_TOKENS=f"{TOKEN}:admin",
    ) as served:
        run = await asyncio.to_thread(
            subprocess.run,
            [str(ROOT / "scripts" / "fuzz"), "--seed", os.environ.get("FUZZ_SEED", "1")],
            env={
                **os.environ,
                "FUZZ_BASE_URL": served.url,
                "FUZZ_TOKEN": TOKEN,
                # The schemathesis installed with this interpreter's packages.
                "SCHEMATHESIS": str(Path(sys.executable).with_name("schemathesis")),
                "NO_COLOR": "1",
            },
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    output = run.stdout + run.stderr
    counts = _summary(output)
    print(f"schemathesis: {counts}")  # the run's figures, shown with -s or -rA
    assert run.returncode == 0, output[-6000:]
    assert counts.get("failed", 0) == 0 and counts.get("generated", 0) > 0, counts


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(
            "API Operations:\n  Selected: 39/39\n  Tested: 39\n\nTest cases:\n"
            "  2387 generated, 2387 passed, 30 skipped\n",
            {"operations": 39, "generated": 2387, "passed": 2387, "skipped": 30},
            id="all-passed",
        ),
        pytest.param(
            "Tested: 12\nTest cases:\n  100 generated, 97 passed, 3 failed\n",
            {"operations": 12, "generated": 100, "passed": 97, "failed": 3},
            id="some-failed",
        ),
    ],
)
def test_summary_counts(output: str, expected: dict[str, int]) -> None:
    assert _summary(output) == expected
