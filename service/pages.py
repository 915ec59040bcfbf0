"""Deep pages: keyset cursors, the offset depth cap and the ``Link`` header of list answers.

A cursor is an opaque URL-safe token: base64url (unpadded) of a compact JSON array
``[digest, *sort_values, id]``. ``sort_values`` are the last row's sort-key values (a time as
ISO 8601 text, a title, username or slug as text, a search rank as a number) and ``id`` its
id; ``digest`` is 12 hex digits of SHA-256 over the list and the query the cursor belongs to
(filters, ``q``, ``sort``, ``per_page``), so that a cursor sent with another query is refused.
The cursor is not signed: a hand-made one only chooses where a page starts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from service.errors import InvalidInputError

#: The kinds of sort-key value a cursor holds: ``time`` (ISO 8601 text), ``text``, ``rank``.
TIME, TEXT, RANK = "time", "text", "rank"
#: The longest cursor accepted, in characters (a title of 500 characters fits).
MAX_CURSOR_CHARS = 2800
#: The query parameters that do not take part in a cursor's digest.
_POSITION = frozenset({"page", "cursor"})
_NEXT = b'"next_cursor":'


def query_digest(kind: str, params: Mapping[str, Any]) -> str:
    """Return the 12 hex digits naming the query a cursor belongs to.

    Args:
        kind: the list ("articles", "authors", ...).
        params: the validated query parameters; ``page``, ``cursor`` and None values are
            left out.
    """
    shape = sorted((k, v) for k, v in params.items() if k not in _POSITION and v is not None)
    return hashlib.sha256(orjson.dumps([kind, shape])).hexdigest()[:12]


def encode_cursor(digest: str, values: Sequence[Any], row_id: int) -> str:
    """Return the cursor of the row whose sort-key ``values`` and id are given.

    Args:
        digest: :func:`query_digest` of the page's query.
        values: the row's sort-key values (datetimes are written as ISO 8601 text).
        row_id: the row's id.
    """
    parts = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = orjson.dumps([digest, *parts, row_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, digest: str, kinds: Sequence[str]) -> tuple[Any, ...]:
    """Return ``(*sort_values, id)`` of ``cursor``, checked against the query and the order.

    Args:
        cursor: the token a client sent.
        digest: :func:`query_digest` of the request's query.
        kinds: the kind of each sort-key value of the request's order (:data:`TIME`, ...).

    Raises:
        InvalidInputError: the cursor is malformed, or belongs to another query ("foreign").
    """
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = orjson.loads(raw)
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidInputError("the cursor is malformed: use a next_cursor as given") from exc
    if not isinstance(parts, list) or len(parts) != len(kinds) + 2:
        raise InvalidInputError("the cursor is malformed: use a next_cursor as given")
    if parts[0] != digest:
        raise InvalidInputError(
            "the cursor belongs to another query: keep the filters, q, sort and per_page "
            "of the page that gave it"
        )
    row_id = parts[-1]
    values = [_value(kind, v) for kind, v in zip(kinds, parts[1:-1], strict=True)]
    if type(row_id) is not int or None in values:
        raise InvalidInputError("the cursor is malformed: use a next_cursor as given")
    return (*values, row_id)


def _value(kind: str, value: Any) -> Any:
    """Return a cursor's sort-key value as the statement binds it; None when it is not one."""
    if kind == TIME:
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None
        return moment if moment is not None and moment.tzinfo is not None else None
    if kind == RANK:
        return float(value) if type(value) in (int, float) else None
    return value if isinstance(value, str) else None


def check_depth(page: int, per_page: int, max_depth_rows: int) -> None:
    """Refuse an offset page that reaches past ``max_depth_rows`` rows.

    Raises:
        InvalidInputError: ``page * per_page`` is over ``max_depth_rows``; the detail points
            to ``cursor``.
    """
    if page * per_page > max_depth_rows:
        raise InvalidInputError(
            f"page {page} reaches past {max_depth_rows} rows (MAX_PAGE_DEPTH): follow "
            'next_cursor with cursor= (or the Link rel="next") to go deeper'
        )


def next_cursor_of(body: bytes) -> str | None:
    """Return the ``next_cursor`` of a stored page body, reading only its tail.

    Page bodies end with their ``next_cursor`` member (see
    :func:`service.documents.page_document`), so this is one ``rfind`` over the last bytes,
    not a parse.
    """
    tail = body[-(MAX_CURSOR_CHARS + 32) :]
    at = tail.rfind(_NEXT)
    if at < 0:
        return None
    value = tail[at + len(_NEXT) : -1]
    return None if value == b"null" else value.strip(b'"').decode("ascii")


def link_header(path: str, params: Mapping[str, Any], next_cursor: str | None) -> bytes:
    """Return the RFC 8288 ``Link`` value of a list answer.

    ``rel="first"`` (no position), ``rel="next"`` (``cursor=next_cursor``) when there is a
    next page, and ``rel="prev"`` (``page - 1``) for an offset page past the first. Cursor
    pages have no ``prev``: a cursor goes forward only.

    Args:
        path: the request's path.
        params: the request's query parameters, as sent.
        next_cursor: the answer's ``next_cursor``.
    """
    rest = {k: v for k, v in params.items() if k not in _POSITION}
    links = [_link(path, rest, "first")]
    if next_cursor is not None:
        links.append(_link(path, {**rest, "cursor": next_cursor}, "next"))
    page = params.get("page")
    if "cursor" not in params and page is not None and str(page).isdigit() and int(page) > 1:
        links.append(_link(path, {**rest, "page": int(page) - 1}, "prev"))
    return ", ".join(links).encode("latin-1")


@functools.lru_cache(maxsize=1024)
def link_for_query(path: str, query_string: bytes, next_cursor: str | None) -> bytes:
    """Return :func:`link_header` for a raw query string; computed once per distinct triple.

    A hot list page is asked with the same query again and again: its ``Link`` is then a
    dictionary lookup (the 1,024 most recent), not a parse and an encoding.

    Args:
        path: the request's path.
        query_string: the request's raw query string (parameters not repeated: validated).
        next_cursor: the answer's ``next_cursor``.
    """
    params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    return link_header(path, params, next_cursor)


def _link(path: str, params: Mapping[str, Any], rel: str) -> str:
    query = urlencode(sorted(params.items()))
    return f'<{path}?{query}>; rel="{rel}"' if query else f'<{path}>; rel="{rel}"'
