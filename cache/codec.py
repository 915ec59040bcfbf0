"""The stored form of an entry: a small binary header, then the body exactly as it goes out.

Layout (big-endian)::

    version  u8      2
    status   u16     the HTTP-like status of the answer (200, or 404 for a cached absence)
    fresh    i64     the moment the entry stops being fresh, in milliseconds since the epoch
    delta    u32     how long the load took, in milliseconds (for early refresh)
    etag_len u8      length of the ETag in bytes
    etag     bytes   the strong ETag, quotes included, ASCII
    body     bytes   the rest: the answer's bytes, never re-serialized on a hit

The header costs 16 bytes plus the ETag; decoding it is one ``struct.unpack_from`` and a slice.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cache.errors import CodecError

VERSION = 2
_HEADER = struct.Struct(">BHqIB")


def etag_for(body: bytes) -> str:
    """Return the strong ETag of ``body``: a quoted 24-hex-digit BLAKE2b digest."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry.

    Attributes:
        body: the answer's bytes.
        etag: its strong ETag, with quotes.
        status: the status it answers with.
        fresh_until_ms: when it stops being fresh, in milliseconds since the epoch.
        load_ms: how long loading it took, in milliseconds (0 when unknown).
    """

    body: bytes
    etag: str
    status: int
    fresh_until_ms: int
    load_ms: int = 0


def encode(entry: Entry) -> bytes:
    """Return the stored bytes of ``entry``."""
    etag = entry.etag.encode("ascii")
    load_ms = min(max(entry.load_ms, 0), 0xFFFFFFFF)
    header = _HEADER.pack(VERSION, entry.status, entry.fresh_until_ms, load_ms, len(etag))
    return header + etag + entry.body


def decode(raw: bytes) -> Entry:
    """Return the entry stored as ``raw``.

    Raises:
        CodecError: when ``raw`` is not an entry of this version (a foreign or truncated value);
            callers treat it as a miss.
    """
    try:
        version, status, fresh_until_ms, load_ms, etag_len = _HEADER.unpack_from(raw)
    except struct.error as exc:
        raise CodecError("entry shorter than its header") from exc
    if version != VERSION:
        raise CodecError(f"entry version {version}, expected {VERSION}")
    start = _HEADER.size
    end = start + etag_len
    if len(raw) < end:
        raise CodecError("entry shorter than its ETag")
    return Entry(raw[end:], raw[start:end].decode("ascii"), status, fresh_until_ms, load_ms)
