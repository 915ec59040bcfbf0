"""The stored form of an entry: a small binary header, then the bytes exactly as they go out.

An entry holds one answer in up to three content codings (RFC 9110 8.4): the identity bytes,
and, when they were worth compressing, the same bytes compressed with gzip and brotli, each
with a strong ETag of its own. Compression happens once, when the entry is stored; a hit only
slices out the coding its client asked for.

Layout (big-endian)::

    version  u8      3
    status   u16     the HTTP-like status of the answer (200, or 404 for a cached absence)
    fresh    i64     the moment the entry stops being fresh, in milliseconds since the epoch
    delta    u32     how long the load took, in milliseconds (for early refresh)
    etag_len u8      length of the identity ETag in bytes
    n        u8      how many encoded representations follow the identity ETag
    etag     bytes   the identity's strong ETag, quotes included, ASCII
    n times:
      coding   u8    1 gzip, 2 br
      etag_len u8    length of this representation's ETag
      size     u32   length of its body in bytes
      etag     bytes its strong ETag, ASCII
      body     bytes its body
    body     bytes   the rest: the identity bytes, never re-serialized on a hit

The header costs 17 bytes plus the ETags; decoding it is one ``struct.unpack_from`` and a slice
per representation.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cache.errors import CodecError

VERSION = 3
_HEADER = struct.Struct(">BHqIBB")
_ENCODED = struct.Struct(">BBI")
#: content coding names (as in ``Content-Encoding``) by their stored code, and back
_CODINGS = {1: "gzip", 2: "br"}
_CODES = {name: code for code, name in _CODINGS.items()}


def etag_for(body: bytes) -> str:
    """Return the strong ETag of ``body``: a quoted 24-hex-digit BLAKE2b digest."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def coded_etag(etag: str, coding: str) -> str:
    """Return the strong ETag of the ``coding`` representation of the answer tagged ``etag``.

    ``'"abc"'`` in gzip is ``'"abc-gzip"'``: derived from the identity's digest rather than from
    the compressed bytes, so that it does not change with the compressor's version.
    """
    return f"{etag[:-1]}-{coding}{etag[-1]}"


def coded_etags(etag: str) -> tuple[str, ...]:
    """Return the ETags the answer tagged ``etag`` has in each content coding an entry may hold.

    Any of them names the same content as ``etag`` (for ``If-Match``, say).
    """
    return tuple(coded_etag(etag, coding) for coding in _CODES)


@dataclass(frozen=True, slots=True)
class Representation:
    """The answer's bytes in one content coding.

    Attributes:
        coding: the content coding, as ``Content-Encoding`` names it (``gzip``, ``br``).
        etag: its strong ETag, with quotes.
        body: the encoded bytes.
    """

    coding: str
    etag: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry.

    Attributes:
        body: the answer's bytes (identity coding).
        etag: their strong ETag, with quotes.
        status: the status it answers with.
        fresh_until_ms: when it stops being fresh, in milliseconds since the epoch.
        load_ms: how long loading it took, in milliseconds (0 when unknown).
        encoded: the same answer in other content codings, in the order they were stored
            (empty when the body was too small to compress).
    """

    body: bytes
    etag: str
    status: int
    fresh_until_ms: int
    load_ms: int = 0
    encoded: tuple[Representation, ...] = ()


def encode(entry: Entry) -> bytes:
    """Return the stored bytes of ``entry``.

    Raises:
        ValueError: a representation's coding is neither ``gzip`` nor ``br``.
    """
    etag = entry.etag.encode("ascii")
    load_ms = min(max(entry.load_ms, 0), 0xFFFFFFFF)
    parts = [
        _HEADER.pack(
            VERSION, entry.status, entry.fresh_until_ms, load_ms, len(etag), len(entry.encoded)
        ),
        etag,
    ]
    for rep in entry.encoded:
        coded = rep.etag.encode("ascii")
        code = _CODES.get(rep.coding)
        if code is None:
            raise ValueError(f"unknown content coding {rep.coding!r}")
        parts += (_ENCODED.pack(code, len(coded), len(rep.body)), coded, rep.body)
    parts.append(entry.body)
    return b"".join(parts)


def decode(raw: bytes) -> Entry:
    """Return the entry stored as ``raw``.

    Raises:
        CodecError: when ``raw`` is not an entry of this version (a foreign or truncated value);
            callers treat it as a miss.
    """
    try:
        version, status, fresh_until_ms, load_ms, etag_len, n = _HEADER.unpack_from(raw)
    except struct.error as exc:
        raise CodecError("entry shorter than its header") from exc
    if version != VERSION:
        raise CodecError(f"entry version {version}, expected {VERSION}")
    start = _HEADER.size
    end = start + etag_len
    if len(raw) < end:
        raise CodecError("entry shorter than its ETag")
    try:
        etag = raw[start:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise CodecError("entry ETag is not ASCII") from exc
    if not n:
        return Entry(raw[end:], etag, status, fresh_until_ms, load_ms)
    encoded = []
    try:
        for _ in range(n):
            code, coded_len, size = _ENCODED.unpack_from(raw, end)
            start = end + _ENCODED.size
            end = start + coded_len + size
            if len(raw) < end:
                raise CodecError("entry shorter than its encoded representations")
            coded = raw[start : start + coded_len].decode("ascii")
            encoded.append(Representation(_CODINGS[code], coded, raw[start + coded_len : end]))
    except (struct.error, KeyError, UnicodeDecodeError) as exc:
        raise CodecError("malformed encoded representation") from exc
    return Entry(raw[end:], etag, status, fresh_until_ms, load_ms, tuple(encoded))
