"""RELP framing (collectors/relp.py): partial frames, bad lengths, oversize frames,
answers."""

from __future__ import annotations

import pytest

from socd.collectors.relp import HEADER_MAX, RelpFrame, RelpParser, response


def feed_all(parser: RelpParser, data: bytes, step: int) -> tuple[list[RelpFrame], str | None]:
    frames: list[RelpFrame] = []
    for i in range(0, len(data), step):
        got, error = parser.feed(data[i:i + step])
        frames.extend(got)
        if error is not None:
            return frames, error
    return frames, None


OFFER = b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"
STREAM = (b"1 open %d %s\n" % (len(OFFER), OFFER) +
          b"2 syslog 11 <13>1 hello\n"
          b"3 syslog 14 line\nwith\nLFs\n\n"
          b"4 close 0\n")


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, len(STREAM)])
def test_frames_split_anywhere(step: int) -> None:
    frames, error = feed_all(RelpParser(1024), STREAM, step)
    assert error is None
    assert [(f.txnr, f.command) for f in frames] == [
        (1, "open"), (2, "syslog"), (3, "syslog"), (4, "close")]
    assert frames[0].data.startswith(b"relp_version=0\n")
    assert frames[1].data == b"<13>1 hello"
    assert frames[2].data == b"line\nwith\nLFs\n"  # data may hold LFs: the length rules
    assert frames[3].data == b""
    assert all(f.oversize == 0 for f in frames)


def test_partial_frame_is_kept_until_complete() -> None:
    parser = RelpParser(1024)
    assert parser.feed(b"12 sys") == ([], None)
    assert parser.in_frame
    assert parser.feed(b"log 5 ab") == ([], None)
    frames, error = parser.feed(b"cde\n13 sys")
    assert error is None
    assert frames == [RelpFrame(12, "syslog", b"abcde", 0)]
    assert parser.in_frame


@pytest.mark.parametrize("garbage", [
    b"hello world\n",                 # not digits
    b"GET / HTTP/1.1\r\n",            # an HTTP client on the port
    b"1234567890 syslog 1 a\n",       # TXNR of 10 digits
    b"1 sys-log 1 a\n",               # command not letters
    b"1 syslog -1 a\n",               # negative length
    b"1 syslog 1234567890 a\n",       # DATALEN of 10 digits
    b"1  syslog 1 a\n",               # double space
    b"1 " + b"a" * 33 + b" 0\n",      # command of 33 letters
])
def test_bad_headers_are_errors(garbage: bytes) -> None:
    frames, error = RelpParser(1024).feed(garbage)
    assert frames == []
    assert error is not None
    assert "header" in error


def test_data_length_mismatch() -> None:
    # The data is longer than DATALEN: the byte after it is not the LF trailer.
    frames, error = RelpParser(1024).feed(b"1 syslog 3 abcdef\n")
    assert frames == []
    assert error is not None
    assert "LF" in error
    # DATALEN announced, then LF instead of data.
    frames, error = RelpParser(1024).feed(b"1 syslog 5\n")
    assert frames == []
    assert error is not None
    assert "announces" in error


def test_frames_before_an_error_are_returned() -> None:
    frames, error = RelpParser(1024).feed(b"1 syslog 1 a\n2 syslog 1 b\nGARBAGE\n")
    assert [f.data for f in frames] == [b"a", b"b"]
    assert error is not None


def test_endless_header_is_an_error() -> None:
    parser = RelpParser(1024)
    frames, error = feed_all(parser, b"1" * 9 + b" " + b"a" * 32 + b" " + b"9" * 20, 1)
    assert error is not None
    assert len(parser._buf) <= HEADER_MAX


def test_oversize_frame_keeps_a_bounded_prefix_and_stays_in_sync() -> None:
    parser = RelpParser(16)
    body = b"x" * 100_000
    frames, error = feed_all(parser, b"5 syslog 100000 " + body + b"\n6 syslog 2 ok\n", 4096)
    assert error is None
    assert frames == [RelpFrame(5, "syslog", b"x" * 16, 100_000),
                      RelpFrame(6, "syslog", b"ok", 0)]
    assert sum(len(k) for k in parser._kept) == 0


def test_huge_datalen_never_buffers_beyond_the_limit() -> None:
    parser = RelpParser(64)
    frames, error = parser.feed(b"1 syslog 999999999 ")
    assert (frames, error) == ([], None)
    for _ in range(100):
        assert parser.feed(b"y" * 65536) == ([], None)
        assert parser._kept_len <= 64
    assert parser.in_frame


def test_frame_of_exactly_the_limit_is_not_oversize() -> None:
    frames, error = RelpParser(4).feed(b"1 syslog 4 abcd\n")
    assert error is None
    assert frames == [RelpFrame(1, "syslog", b"abcd", 0)]


def test_response_format() -> None:
    assert response(7, 200, "OK") == b"7 rsp 6 200 OK\n"
    assert response(8, 500, "unknown command x") == b"8 rsp 21 500 unknown command x\n"
