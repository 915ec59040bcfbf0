"""The cursor codec, the query digest, the depth cap and the ``Link`` header, without a server."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from service.documents import page_document
from service.errors import InvalidInputError
from service.pages import (
    MAX_CURSOR_CHARS,
    RANK,
    TEXT,
    TIME,
    check_depth,
    decode_cursor,
    encode_cursor,
    link_for_query,
    link_header,
    next_cursor_of,
    query_digest,
)

DIGEST = query_digest("articles", {"per_page": 2, "sort": None})
MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
WHEN = "2026-01-02T03:04:05+00:00"


def raw(parts: Any) -> str:
    """A cursor made by hand: ``parts`` as the codec lays them out, unsigned."""
    return base64.urlsafe_b64encode(orjson.dumps(parts)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("kinds", "values", "row_id"),
    [
        pytest.param([TIME], [MOMENT], 7, id="time-utc"),
        pytest.param([TIME], [MOMENT.astimezone(timezone(timedelta(hours=-5)))], 7,
                     id="time-other-offset"),
        pytest.param([TEXT], ['Ünïcode title, with "quotes"'], 1, id="text-unicode"),
        pytest.param([TEXT], ["x" * 500], 1, id="text-longest-title"),
        pytest.param([TEXT], [""], 9, id="text-empty"),
        pytest.param([RANK], [0.0607927106320858], 2**40, id="rank-float"),
        pytest.param([RANK], [0], 3, id="rank-int"),
        pytest.param([], [], 5, id="id-only"),
        pytest.param([RANK, TIME], [0.5, MOMENT], 4, id="two-values"),
    ],
)  # fmt: skip
def test_cursor_round_trips(kinds: list[str], values: list[Any], row_id: int) -> None:
    cursor = encode_cursor(DIGEST, values, row_id)
    assert cursor.replace("-", "").replace("_", "").isalnum(), cursor  # URL-safe, unpadded
    assert len(cursor) <= MAX_CURSOR_CHARS
    assert decode_cursor(cursor, DIGEST, kinds) == (*values, row_id)


VALID = encode_cursor(DIGEST, [MOMENT], 7)


@pytest.mark.parametrize(
    ("cursor", "kinds", "detail"),
    [
        pytest.param("!!!", [TIME], "malformed", id="not-base64"),
        pytest.param("a", [TIME], "malformed", id="base64-of-bad-length"),
        pytest.param("é", [TIME], "malformed", id="not-ascii"),
        pytest.param("", [TIME], "malformed", id="empty"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe").decode(), [TIME], "malformed",
                     id="not-utf8"),
        pytest.param(raw({"not": "a list"}), [TIME], "malformed", id="not-a-list"),
        pytest.param(raw([DIGEST, WHEN]), [TIME], "malformed", id="too-few-parts"),
        pytest.param(raw([DIGEST, WHEN, WHEN, 1]), [TIME], "malformed", id="too-many-parts"),
        pytest.param(VALID, [TIME, TEXT], "malformed", id="fewer-values-than-the-order"),
        pytest.param(raw([DIGEST, "yesterday", 1]), [TIME], "malformed", id="time-not-a-time"),
        pytest.param(raw([DIGEST, "2026-01-02T03:04:05", 1]), [TIME], "malformed",
                     id="time-without-offset"),
        pytest.param(raw([DIGEST, 1767322800, 1]), [TIME], "malformed", id="time-a-number"),
        pytest.param(raw([DIGEST, 3, 1]), [TEXT], "malformed", id="text-a-number"),
        pytest.param(raw([DIGEST, None, 1]), [TEXT], "malformed", id="text-null"),
        pytest.param(raw([DIGEST, "0.5", 1]), [RANK], "malformed", id="rank-a-string"),
        pytest.param(raw([DIGEST, True, 1]), [RANK], "malformed", id="rank-a-boolean"),
        pytest.param(raw([DIGEST, WHEN, "1"]), [TIME], "malformed", id="id-a-string"),
        pytest.param(raw([DIGEST, WHEN, True]), [TIME], "malformed", id="id-a-boolean"),
        pytest.param(raw([DIGEST, WHEN, 1.0]), [TIME], "malformed", id="id-a-float"),
        pytest.param(VALID[:-4], [TIME], "malformed", id="truncated"),
        pytest.param("x" * (MAX_CURSOR_CHARS + 1), [TIME], "malformed", id="too-long"),
        pytest.param(encode_cursor(query_digest("articles", {"per_page": 3}), [MOMENT], 7),
                     [TIME], "another query", id="other-per-page"),
        pytest.param(encode_cursor(query_digest("tags", {"per_page": 2}), [MOMENT], 7),
                     [TIME], "another query", id="other-list"),
        pytest.param(raw(["0123456789ab", WHEN, 1]), [TIME], "another query",
                     id="digest-tampered"),
    ],
)  # fmt: skip
def test_bad_cursors_are_refused(cursor: str, kinds: list[str], detail: str) -> None:
    with pytest.raises(InvalidInputError, match=detail):
        decode_cursor(cursor, DIGEST, kinds)


def test_a_hand_made_cursor_of_the_same_query_only_chooses_where_the_page_starts() -> None:
    # Not signed, by design: a client that edits the values reads from another place.
    assert decode_cursor(raw([DIGEST, WHEN, 99]), DIGEST, [TIME]) == (
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        99,
    )


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(("articles", {"page": 3, "per_page": 2, "q": "x"}),
                     ("articles", {"cursor": "abc", "per_page": 2, "q": "x"}), True,
                     id="position-left-out"),
        pytest.param(("articles", {"per_page": 2, "q": "x", "tag": None}),
                     ("articles", {"q": "x", "per_page": 2}), True,
                     id="none-left-out-and-order-ignored"),
        pytest.param(("articles", {"per_page": 2, "q": "x"}),
                     ("articles", {"per_page": 2, "q": "y"}), False, id="other-q"),
        pytest.param(("articles", {"per_page": 2}), ("articles", {"per_page": 3}), False,
                     id="other-per-page"),
        pytest.param(("articles", {"per_page": 2}),
                     ("articles", {"per_page": 2, "sort": "title"}), False, id="other-sort"),
        pytest.param(("articles", {"per_page": 2}),
                     ("articles", {"per_page": 2, "author": "ann"}), False, id="other-filter"),
        pytest.param(("articles", {"per_page": 2}), ("tags", {"per_page": 2}), False,
                     id="other-list"),
    ],
)  # fmt: skip
def test_query_digest(
    a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]], same: bool
) -> None:
    first, second = query_digest(*a), query_digest(*b)
    assert len(first) == 12 and int(first, 16) >= 0, first
    assert (first == second) is same, (first, second)


@pytest.mark.parametrize(
    ("page", "per_page", "max_depth_rows", "refused"),
    [
        pytest.param(1, 20, 10_000, False, id="first-page"),
        pytest.param(100, 100, 10_000, False, id="exactly-at-the-cap"),
        pytest.param(101, 100, 10_000, True, id="one-page-past-the-cap"),
        pytest.param(5, 2, 10, False, id="small-cap-reached"),
        pytest.param(6, 2, 10, True, id="small-cap-passed"),
        pytest.param(1, 100, 50, True, id="first-page-larger-than-the-cap"),
    ],
)
def test_check_depth(page: int, per_page: int, max_depth_rows: int, refused: bool) -> None:
    if refused:
        with pytest.raises(InvalidInputError, match=rf"page {page} reaches past .*cursor="):
            check_depth(page, per_page, max_depth_rows)
    else:
        check_depth(page, per_page, max_depth_rows)


LONGEST = "x" * MAX_CURSOR_CHARS


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"items":[],"next_cursor":null}', None, id="last-page"),
        pytest.param(b'{"items":[],"next_cursor":"eyJh-_"}', "eyJh-_", id="next"),
        pytest.param(b'{"detail":"no next member"}', None, id="not-a-page"),
        pytest.param(orjson.dumps(page_document([{"t": "y" * 10_000}], 1, 1, 5, LONGEST)),
                     LONGEST, id="longest-cursor-after-large-items"),
        pytest.param(orjson.dumps(page_document([{"next_cursor": "inner"}], 1, 1, 1)), None,
                     id="member-of-an-item-is-not-it"),
    ],
)  # fmt: skip
def test_next_cursor_is_read_from_the_tail(body: bytes, expected: str | None) -> None:
    assert next_cursor_of(body) == expected


PATH = "/api/v1/articles"


@pytest.mark.parametrize(
    ("params", "next_cursor", "expected"),
    [
        pytest.param({}, None, f'<{PATH}>; rel="first"', id="only-page"),
        pytest.param({"per_page": "3", "sort": "title"}, "CUR",
                     f'<{PATH}?per_page=3&sort=title>; rel="first", '
                     f'<{PATH}?cursor=CUR&per_page=3&sort=title>; rel="next"',
                     id="first-page-with-next"),
        pytest.param({"sort": "title", "page": "3", "per_page": "3"}, "CUR",
                     f'<{PATH}?per_page=3&sort=title>; rel="first", '
                     f'<{PATH}?cursor=CUR&per_page=3&sort=title>; rel="next", '
                     f'<{PATH}?page=2&per_page=3&sort=title>; rel="prev"',
                     id="offset-page-with-next-and-prev"),
        pytest.param({"page": "2"}, None,
                     f'<{PATH}>; rel="first", <{PATH}?page=1>; rel="prev"',
                     id="last-offset-page"),
        pytest.param({"cursor": "OLD", "per_page": "2"}, "NEW",
                     f'<{PATH}?per_page=2>; rel="first", '
                     f'<{PATH}?cursor=NEW&per_page=2>; rel="next"',
                     id="cursor-page-has-no-prev"),
        pytest.param({"page": "1"}, None, f'<{PATH}>; rel="first"', id="page-one-has-no-prev"),
        pytest.param({"page": "x"}, None, f'<{PATH}>; rel="first"', id="page-not-a-number"),
        pytest.param({"q": "a b&c", "tag": "é"}, None,
                     f'<{PATH}?q=a+b%26c&tag=%C3%A9>; rel="first"', id="values-encoded"),
    ],
)  # fmt: skip
def test_link_header(params: dict[str, str], next_cursor: str | None, expected: str) -> None:
    assert link_header(PATH, params, next_cursor) == expected.encode("latin-1")


@pytest.mark.parametrize(
    ("query", "params"),
    [
        pytest.param(b"", {}, id="empty"),
        pytest.param(b"page=3&per_page=3&sort=title", {"page": "3", "per_page": "3",
                     "sort": "title"}, id="offset"),
        pytest.param(b"q=a+b%26c&cursor=OLD", {"q": "a b&c", "cursor": "OLD"}, id="encoded"),
    ],
)  # fmt: skip
def test_link_for_a_raw_query_is_the_link_of_its_parameters(
    query: bytes, params: dict[str, str]
) -> None:
    for next_cursor in (None, "CUR"):
        expected = link_header(PATH, params, next_cursor)
        assert link_for_query(PATH, query, next_cursor) == expected, next_cursor
