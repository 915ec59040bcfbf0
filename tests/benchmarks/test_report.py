from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.report import write_section

NEW = "## Two\n\nnew figures\n"


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param(
            "# Results\n\n## One\n\na\n\n## Two\n\nold figures\n\n## Three\n\nc\n",
            "# Results\n\n## One\n\na\n\n## Two\n\nnew figures\n\n## Three\n\nc\n",
            id="replaced-in-the-middle",
        ),
        pytest.param(
            "# Results\n\n## Two\n\nold figures\nmore old\n",
            "# Results\n\n## Two\n\nnew figures\n",
            id="replaced-at-the-end",
        ),
        pytest.param(
            "# Results\n\n## One\n\na\n",
            "# Results\n\n## One\n\na\n\n## Two\n\nnew figures\n",
            id="appended",
        ),
        pytest.param(None, "## Two\n\nnew figures\n", id="page-created"),
    ],
)
def test_write_section_replaces_only_its_own_section(
    tmp_path: Path, page: str | None, expected: str
) -> None:
    path = tmp_path / "results.md"
    if page is not None:
        path.write_text(page)
    write_section(path, "## Two", NEW)
    got = path.read_text()
    assert got == expected, f"page became:\n{got}\nexpected:\n{expected}"
