from __future__ import annotations

import gzip

import pytest

from cache import Compression, Entry, Representation, coded_etag, etag_for
from cache.codec import decode, encode
from cache.compression import brotli
from cache.errors import CodecError

BODY = b'{"title":"cache-aside","body":"' + b"read through, invalidate on write. " * 60 + b'"}'


def test_bodies_over_the_threshold_are_stored_in_each_coding_with_their_own_etag() -> None:
    etag = etag_for(BODY)
    reps = Compression(min_bytes=1024).representations(BODY, etag)
    codings = [r.coding for r in reps]
    assert codings == (["br", "gzip"] if brotli is not None else ["gzip"])
    by_coding = {r.coding: r for r in reps}
    assert gzip.decompress(by_coding["gzip"].body) == BODY
    assert by_coding["gzip"].etag == coded_etag(etag, "gzip") == etag[:-1] + '-gzip"'
    if brotli is not None:
        assert brotli.decompress(by_coding["br"].body) == BODY
    assert all(len(r.body) < len(BODY) for r in reps)
    assert len({etag, *(r.etag for r in reps)}) == 1 + len(reps)


def test_small_bodies_and_disabled_compression_store_identity_only() -> None:
    assert Compression(min_bytes=1024).representations(b'{"x":1}', etag_for(b'{"x":1}')) == ()
    assert Compression(min_bytes=0).representations(BODY, etag_for(BODY)) == ()
    with pytest.raises(ValueError):
        Compression(gzip_level=0)


def test_codec_round_trips_encoded_representations_and_refuses_truncation() -> None:
    etag = etag_for(BODY)
    entry = Entry(BODY, etag, 200, 1_700_000_000_000, 7, Compression().representations(BODY, etag))
    raw = encode(entry)
    assert decode(raw) == entry
    with pytest.raises(CodecError):
        decode(raw[:40])
    with pytest.raises(ValueError):
        encode(Entry(BODY, etag, 200, 0, 0, (Representation("zstd", '"x"', b"z"),)))


def test_an_entry_with_a_foreign_etag_is_refused_as_undecodable() -> None:
    raw = bytearray(encode(Entry(b"{}", '"ab"', 200, 0)))
    raw[17] = 0xFF  # first byte of the ETag
    with pytest.raises(CodecError):
        decode(bytes(raw))
