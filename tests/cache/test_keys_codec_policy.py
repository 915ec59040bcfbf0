from __future__ import annotations

import random

import pytest

from cache import CachePolicy, Entry, KeyScheme
from cache.codec import decode, encode, etag_for
from cache.errors import CodecError


def test_params_key_is_canonical_and_skips_none() -> None:
    ns = KeyScheme("cs").namespace("articles")
    a = ns.key_for_params({"page": 1, "sort": "title", "q": None})
    b = ns.key_for_params({"sort": "title", "page": 1})
    assert a == b
    assert a.redis_key == "cs:e:articles:page=1&sort=title"
    assert a.namespace == "articles"


def test_parts_are_encoded_and_long_identities_hashed() -> None:
    ns = KeyScheme("cs").namespace("article")
    assert ns.key("a/b") != ns.key("a", "b")
    assert ns.key("a b*").redis_key == "cs:e:article:a%20b%2A"
    long = ns.key("x" * 500).redis_key
    assert long.startswith("cs:e:article:h-") and len(long) < 60


def test_invalid_prefix_and_namespace_are_refused() -> None:
    with pytest.raises(ValueError):
        KeyScheme("a*b")
    with pytest.raises(ValueError):
        KeyScheme("cs").namespace("bad name")


def test_codec_round_trips_and_refuses_foreign_bytes() -> None:
    body = b'{"x":1}'
    entry = Entry(body, etag_for(body), 200, 1_700_000_000_000)
    assert decode(encode(entry)) == entry
    with pytest.raises(CodecError):
        decode(b"\x09garbage-bytes-here")
    with pytest.raises(CodecError):
        decode(b"\x01")


def test_etag_is_strong_and_depends_on_body() -> None:
    assert etag_for(b"a") != etag_for(b"b")
    assert etag_for(b"a").startswith('"') and etag_for(b"a").endswith('"')


def test_jitter_shortens_ttl_within_ratio_and_loader_cap_wins() -> None:
    policy = CachePolicy(ttl_seconds=100, jitter_ratio=0.2)
    rng = random.Random(3)
    draws = [policy.jittered_ttl_ms(rng=rng) for _ in range(1000)]
    assert min(draws) >= 80_000 and max(draws) <= 100_000
    assert len(set(draws)) > 100
    assert policy.jittered_ttl_ms(5, rng=rng) <= 5000
    with pytest.raises(ValueError):
        CachePolicy(ttl_seconds=0)
