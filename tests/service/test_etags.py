"""ETag matching: ``If-Match`` on writes (strong) and ``If-None-Match`` on cached reads (weak)."""

from __future__ import annotations

import pytest

from cache import CacheState, Lookup, Representation, coded_etag
from service.responses import CachedResponse, etag_matches
from service.writes import if_match_holds

ETAG = '"0123456789abcdef01234567"'
OTHER = '"fedcba9876543210fedcba98"'
GZIP, BR = coded_etag(ETAG, "gzip"), coded_etag(ETAG, "br")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(ETAG, True, id="same"),
        pytest.param(f"  {ETAG}  ", True, id="surrounding-space"),
        pytest.param("*", True, id="any"),
        pytest.param(f"{OTHER}, {ETAG}", True, id="in-a-list"),
        pytest.param(f"{OTHER},{ETAG}", True, id="in-a-list-without-space"),
        pytest.param(GZIP, True, id="gzip-coding-of-it"),
        pytest.param(f"{OTHER}, {BR}", True, id="br-coding-of-it-in-a-list"),
        pytest.param(OTHER, False, id="other"),
        pytest.param(f"{OTHER}, {coded_etag(OTHER, 'gzip')}", False, id="other-and-its-coding"),
        pytest.param(f"W/{ETAG}", False, id="weak-never-matches"),
        pytest.param(ETAG.strip('"'), False, id="unquoted"),
        pytest.param("", False, id="empty"),
    ],
)
def test_if_match(header: str, expected: bool) -> None:
    assert if_match_holds(header, ETAG) is expected


@pytest.mark.parametrize(
    ("header", "etag", "expected"),
    [
        pytest.param(ETAG, ETAG, True, id="same"),
        pytest.param(f"W/{ETAG}", ETAG, True, id="weak-prefix"),
        pytest.param(f"{OTHER}, W/{ETAG}", ETAG, True, id="weak-in-a-list"),
        pytest.param(f"{OTHER} ,{ETAG}", ETAG, True, id="in-a-list-odd-spacing"),
        pytest.param("*", ETAG, True, id="any"),
        pytest.param(" * ", ETAG, True, id="any-with-space"),
        pytest.param(GZIP, GZIP, True, id="gzip-etag-for-gzip-answer"),
        pytest.param(f"W/{BR}", BR, True, id="weak-br-etag-for-br-answer"),
        pytest.param(ETAG, GZIP, False, id="identity-etag-for-gzip-answer"),
        pytest.param(GZIP, ETAG, False, id="gzip-etag-for-identity-answer"),
        pytest.param(GZIP, BR, False, id="gzip-etag-for-br-answer"),
        pytest.param(OTHER, ETAG, False, id="other"),
        pytest.param(f"{OTHER}, W/{OTHER}", ETAG, False, id="others-in-a-list"),
        pytest.param(ETAG.strip('"'), ETAG, False, id="unquoted"),
        pytest.param("", ETAG, False, id="empty"),
    ],
)
def test_if_none_match(header: str, etag: str, expected: bool) -> None:
    assert etag_matches(header, etag) is expected


def cached_read(headers: dict[str, str], status: int = 200) -> int:
    """The status a cached read answers with (an entry held in identity and gzip)."""
    request_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    lookup = Lookup(
        body=b"{}",
        etag=ETAG,
        status=status,
        state=CacheState.HIT,
        fresh_for_seconds=60,
        encoded=(Representation("gzip", GZIP, b"compressed"),),
    )
    return CachedResponse(request_headers, lookup, 60, 0.1).status_code


@pytest.mark.parametrize(
    ("headers", "status", "expected"),
    [
        pytest.param({"If-None-Match": ETAG}, 200, 304, id="identity"),
        pytest.param({"If-None-Match": OTHER}, 200, 200, id="identity-changed"),
        pytest.param({}, 200, 200, id="no-validator"),
        pytest.param({"Accept-Encoding": "gzip", "If-None-Match": GZIP}, 200, 304, id="gzip"),
        pytest.param({"Accept-Encoding": "gzip", "If-None-Match": ETAG}, 200, 200,
                     id="gzip-answer-identity-etag"),
        pytest.param({"Accept-Encoding": "br", "If-None-Match": ETAG}, 200, 304,
                     id="coding-not-stored-answers-identity"),
        pytest.param({"Accept-Encoding": "gzip", "If-None-Match": "*"}, 200, 304, id="any"),
        pytest.param({"If-None-Match": ETAG}, 404, 404, id="cached-absence-never-304"),
        pytest.param({"If-None-Match": "*"}, 404, 404, id="cached-absence-any"),
    ],
)  # fmt: skip
def test_a_cached_read_answers_304_for_the_etag_of_the_coding_it_would_send(
    headers: dict[str, str], status: int, expected: int
) -> None:
    assert cached_read(headers, status) == expected
