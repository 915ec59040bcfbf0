"""Compression of an entry's bytes, once, when it is stored.

gzip comes from ISA-L (the ``isal`` package) when it is installed, else from the standard
library's ``zlib``; brotli from the ``brotli`` package when it is installed (the project's
``brotli`` extra), else it is skipped. Levels default to the fastest
settings: an entry is compressed on the miss path, where every microsecond counts against the
load, and JSON text compresses nearly as well at those settings as at the slowest ones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from types import ModuleType

from cache.codec import Representation, coded_etag

try:  # an optional dependency: without it, entries carry gzip only
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None
_deflate: ModuleType
try:  # ISA-L's deflate: the same gzip members as zlib's, about three times as fast
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - a platform without its wheels
    _deflate = zlib

brotli: ModuleType | None = _brotli
deflate: ModuleType = _deflate


@dataclass(frozen=True, slots=True)
class Compression:
    """Which content codings entries are stored in besides identity, and from what size.

    Attributes:
        min_bytes: bodies shorter than this many bytes are stored in identity only; 0 turns
            compression off.
        gzip_level: deflate level, 1 (fastest) to 9 (ISA-L has levels 0 to 3: higher ones are
            taken as 3).
        brotli_quality: brotli quality, 0 (fastest) to 11; brotli is used only when the
            ``brotli`` package is importable.
    """

    min_bytes: int = 1024
    gzip_level: int = 1
    brotli_quality: int = 1

    def __post_init__(self) -> None:
        if self.min_bytes < 0:
            raise ValueError("min_bytes must be >= 0")
        if not 1 <= self.gzip_level <= 9:
            raise ValueError("gzip_level must be within 1..9")
        if not 0 <= self.brotli_quality <= 11:
            raise ValueError("brotli_quality must be within 0..11")

    @property
    def codings(self) -> tuple[str, ...]:
        """The codings bodies of at least ``min_bytes`` bytes get, best first."""
        return ("br", "gzip") if brotli is not None else ("gzip",)

    def representations(self, body: bytes, etag: str) -> tuple[Representation, ...]:
        """Return ``body`` compressed in each of :attr:`codings`, best first.

        Empty when ``body`` is shorter than ``min_bytes`` or compression is off. A coding that
        does not make the body smaller is left out.

        Args:
            body: the identity bytes.
            etag: their strong ETag; each representation's is derived from it
                (:func:`cache.codec.coded_etag`).
        """
        if not self.min_bytes or len(body) < self.min_bytes:
            return ()
        out = []
        for coding in self.codings:
            if coding == "br":
                assert brotli is not None
                packed: bytes = brotli.compress(body, quality=self.brotli_quality)
            else:
                # wbits 31: a gzip member (RFC 1952), with no file name and a zero mtime.
                level = self.gzip_level if deflate is zlib else min(self.gzip_level, 3)
                compressor = deflate.compressobj(level, zlib.DEFLATED, 31)
                packed = compressor.compress(body) + compressor.flush()
            if len(packed) < len(body):
                out.append(Representation(coding, coded_etag(etag, coding), packed))
        return tuple(out)
