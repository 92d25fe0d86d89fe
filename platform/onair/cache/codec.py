"""Compact value encoding for both cache tiers: msgpack or orjson, zstd above a size threshold.

Every encoded value starts with one header byte naming its format, so a reader can decode values
written with other settings, and the cache can tell a value from its own markers (a tombstone
starts with ``\\x00``): ``m`` msgpack, ``j`` JSON (orjson), ``M``/``J`` the same compressed with zstd.
"""

from __future__ import annotations

from typing import Any, Literal

import msgpack
import orjson
import zstandard

Format = Literal["msgpack", "json"]

_PLAIN = {"msgpack": b"m", "json": b"j"}
_PACKED = {"msgpack": b"M", "json": b"J"}


class CodecError(ValueError):
    """The bytes are not a value this codec wrote."""


class Codec:
    """Encode/decode cache values; ``compress_over`` bytes or more are zstd-compressed (None: never)."""

    def __init__(self, fmt: Format = "msgpack", *, compress_over: int | None = 1024, level: int = 3) -> None:
        if fmt not in _PLAIN:
            raise ValueError(f"unknown format {fmt!r}; choose msgpack or json")
        self.fmt = fmt
        self.compress_over = compress_over
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, value: Any) -> bytes:
        body = msgpack.packb(value, use_bin_type=True) if self.fmt == "msgpack" else orjson.dumps(value)
        if self.compress_over is not None and len(body) >= self.compress_over:
            packed = self._compressor.compress(body)
            if len(packed) < len(body):
                return _PACKED[self.fmt] + packed
        return _PLAIN[self.fmt] + body

    def decode(self, data: bytes) -> Any:
        if not data:
            raise CodecError("empty value")
        head, body = data[:1], data[1:]
        if head in (b"M", b"J"):
            body = self._decompressor.decompress(body)
        if head in (b"m", b"M"):
            return msgpack.unpackb(body, raw=False)
        if head in (b"j", b"J"):
            return orjson.loads(body)
        raise CodecError(f"unknown header byte {head!r}")
