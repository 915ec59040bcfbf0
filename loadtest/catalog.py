"""What the simulated users draw from: the target's slugs and the page counts of its lists.

Standard library only: discovery runs before the users start, and its requests stay out of
locust's report.
"""

from __future__ import annotations

import json
import random
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TAXONOMIES = ("authors", "tags", "categories")


@dataclass(frozen=True)
class Catalog:
    """What the users draw from: slugs in popularity order and page counts per list."""

    slugs: tuple[str, ...]  # rank 0 first
    pages: dict[str, int]  # "articles" and each taxonomy -> pages of 20 (at least 1)
    author: str | None  # the username new articles are posted under


def _get_json(host: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    url = f"{host.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        document: dict[str, Any] = json.load(answer)
    return document


def discover(
    host: str, *, max_articles: int, slugs: tuple[str, ...], seed: int, author: str | None
) -> Catalog:
    """Collect the slugs (unless given) and page counts from the target's public lists.

    Follows ``next_cursor`` when the service offers one, else ``page``. At most
    ``max_articles`` slugs are kept, in an order shuffled by ``seed``; ``author`` (else the
    first author listed) is the username new articles are posted under.

    Raises:
        OSError: the target did not answer, or answered an error (``urllib.error.HTTPError``).
        ValueError: no slug was found.
    """
    given = slugs
    found = list(given)
    params: dict[str, Any] = {"per_page": 100, "page": 1}
    while not given and len(found) < max_articles:
        page = _get_json(host, "/api/v1/articles", params)
        found.extend(item["slug"] for item in page["items"])
        if not page["items"]:
            break
        if page.get("next_cursor"):
            params = {"per_page": 100, "cursor": page["next_cursor"]}
        elif page.get("page", 0) < page.get("pages", 0):
            params = {"per_page": 100, "page": page["page"] + 1}
        else:
            break
    ranked = list(dict.fromkeys(found))[:max_articles]
    if not ranked:
        raise ValueError("no article to read: seed the target or set LOADTEST_SLUGS")
    random.Random(seed).shuffle(ranked)
    pages = {"articles": _get_json(host, "/api/v1/articles", {"per_page": 20})["pages"]}
    for kind in TAXONOMIES:
        first = _get_json(host, f"/api/v1/{kind}", {"per_page": 20})
        pages[kind] = first["pages"]
        if kind == "authors" and author is None and first["items"]:
            author = first["items"][0]["username"]
    return Catalog(tuple(ranked), {k: max(1, v) for k, v in pages.items()}, author)
