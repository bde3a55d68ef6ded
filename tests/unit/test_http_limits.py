"""Pure parts of the hostile-client defences: the webhook's bounded body reader, its
Content-Encoding check, and how HTTP clients are grouped for the per-address cap.
The listeners themselves are tested against a real socd in tests/adversarial/."""

from __future__ import annotations

import gzip
import zlib

import pytest

from socd.collectors.webhook import BodyError, BodyReader, content_encoding
from socd.http import client_key

LIMIT = 64 * 1024


def read(body: bytes, encoding: str | None = "gzip", step: int = 4096) -> bytes:
    reader = BodyReader(LIMIT, encoding)
    for start in range(0, len(body), step):
        reader.feed(body[start:start + step])
    return reader.finish()


def refusal(body: bytes, encoding: str | None = "gzip", step: int = 4096) -> tuple[int, str]:
    with pytest.raises(BodyError) as info:
        read(body, encoding, step)
    assert info.value.raw is None or len(info.value.raw) <= LIMIT
    return info.value.status, info.value.reason


@pytest.mark.parametrize(("header", "expected"), [
    ("", None), ("identity", None), ("gzip", "gzip"), ("x-gzip", "gzip"), (" GZIP ", "gzip"),
    ("gzip, identity", "gzip")])
def test_accepted_encodings(header: str, expected: str | None) -> None:
    assert content_encoding(header) == expected


@pytest.mark.parametrize("header", ["br", "deflate", "gzip, gzip", "compress", "gzip;q=1"])
def test_other_encodings_are_refused(header: str) -> None:
    with pytest.raises(BodyError) as info:
        content_encoding(header)
    assert (info.value.status, info.value.reason) == (415, "unsupported_encoding")


def test_gzip_body_in_any_chunking() -> None:
    body = b'{"a": 1}\n' * 1000
    for step in (1, 7, 4096, len(body)):
        assert read(gzip.compress(body), step=step) == body


def test_identity_body_over_the_limit() -> None:
    assert read(b"x" * LIMIT, None) == b"x" * LIMIT
    assert refusal(b"x" * (LIMIT + 1), None) == (413, "too_large")


def test_bomb_stops_at_the_limit() -> None:
    assert refusal(gzip.compress(bytes(100 * LIMIT)), step=LIMIT) == (413, "too_large")


def test_wire_bytes_count_even_when_they_inflate_to_little() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    padded = (comp.compress(b"{}") + comp.flush(zlib.Z_SYNC_FLUSH)
              + b"\x00\x00\x00\xff\xff" * (LIMIT // 5) + comp.flush())
    assert len(padded) > LIMIT
    assert refusal(padded) == (413, "too_large")


@pytest.mark.parametrize("tail", [gzip.compress(b"{}"), b"\n", b"\x00", b"junk" * 1000])
def test_anything_after_the_stream_is_refused(tail: bytes) -> None:
    for step in (1, 4096):
        assert refusal(gzip.compress(b'{"a": 1}') + tail, step=step) == (400, "trailing_data")


def test_truncated_and_corrupt_streams() -> None:
    whole = gzip.compress(b'{"a": 1}' * 100)
    assert refusal(whole[:-4]) == (400, "invalid_gzip")
    assert refusal(b"not gzip at all") == (400, "invalid_gzip")


@pytest.mark.parametrize(("peer", "key"), [
    (("127.0.0.1", 5000), "127.0.0.1"),
    (("::ffff:10.1.2.3", 5000, 0, 0), "10.1.2.3"),
    (("2001:db8:1:2:aaaa::1", 5000, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:bbbb::9", 5000, 0, 0), "2001:db8:1:2::/64"),
    (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
    (None, "None")])
def test_client_key(peer: object, key: str) -> None:
    assert client_key(peer) == key
