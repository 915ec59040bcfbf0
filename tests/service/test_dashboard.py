"""``/dashboard``: the page and its files, their headers, and that a wheel would carry them."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from service.endpoints.dashboard import FILES
from tests.apps import Api

ROOT = Path(__file__).parents[2]


async def test_page_is_never_stored_and_forbids_inline_script(api: Api) -> None:
    r = await api.client.get("/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    html = r.text
    # Every script is a file of the service; none is inline, none comes from elsewhere.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts
    for attrs, code in scripts:
        assert 'src="/dashboard/' in attrs and not code.strip(), attrs
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/dashboard/") or url == "data:,", url
        if url.startswith("/dashboard/"):
            assert (await api.client.get(url)).status_code == 200, url


async def test_files_are_revalidated_by_etag(api: Api) -> None:
    for name, (_, media_type) in FILES.items():
        if name == "index.html":
            continue
        r = await api.client.get(f"/dashboard/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == media_type
        assert r.headers["cache-control"] == "no-cache" and r.content
        again = await api.client.get(
            f"/dashboard/{name}", headers={"If-None-Match": r.headers["etag"]}
        )
        assert again.status_code == 304 and not again.content


async def test_unknown_file_is_a_problem_404(api: Api) -> None:
    for name in ("nothing.js", "index.html", "..%2Fapp.py"):
        r = await api.client.get(f"/dashboard/{name}")
        assert r.status_code == 404, name
        assert r.headers["content-type"] == "application/problem+json"


def test_every_file_is_package_data() -> None:
    """An installed wheel holds every file the dashboard serves (pyproject's package-data)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["service"]
    for path, _ in FILES.values():
        assert (ROOT / "service" / "dashboard" / path).is_file(), path
        assert any(fnmatch.fnmatch(f"dashboard/{path}", g) for g in globs), path
