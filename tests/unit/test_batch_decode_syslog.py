"""The syslog decoder's batch path (issue 17) gives decode()'s events and failures; its
per-hour timestamp texts give _clock's.

``SyslogDecoder.decode_lines`` (the :class:`~socd.plugins.LineDecoder` capability that
``socd replay`` uses) must give, for a list of lines, exactly what ``decode()`` of one
record a line gives: the same events (key order, hashes, times), the same failures, in
the same order. Every comparison here runs both on two decoders in the same state and
compares the serialised results; ``replay()`` is run with and without the capability.
"""

from __future__ import annotations

import io
import itertools
import random
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.app import replay as replay_mod
from socd.config import ClassificationConfig
from socd.decoders.syslog import SyslogDecoder
from socd.engine.classify import Classifier
from socd.plugins import DecodeFailure, DecodeResult, LineDecoder, RawRecord
from socd.zones import SenderZones
from tests.unit.test_syslog_speed_fast_path import HEADERS, HOSTS, MESSAGES, PROGRAMS, STAMPS
from tests.unit.test_syslog_stamp_cache import direct, offset_changes, stamp_of

RECEIVED = 1780000000.5
SOURCES = ("", "/var/log/auth.log", "udp://10.0.0.1:514", "tcp://[::1]:6", "x://y")


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: RECEIVED + 0.25)


def _dump(events: Sequence[object], failures: Sequence[DecodeFailure]) -> bytes:
    return orjson.dumps([events, [(f.reason, f.raw.hex(), f.detail) for f in failures]])


def _one_by_one(decoder: SyslogDecoder, lines: Sequence[bytes], collector: str, source: str,
                received: float) -> bytes:
    events: list[object] = []
    failures: list[DecodeFailure] = []
    for line in lines:
        result = decoder.decode(RawRecord(line, decoder.name, collector, source, received))
        events += result.events
        failures += result.failures
    return _dump(events, failures)


def _batched(decoder: SyslogDecoder, lines: Sequence[bytes], collector: str, source: str,
             received: float) -> bytes:
    return _dump(*decoder.decode_lines(lines, collector, source, received))


def _lines() -> list[bytes]:
    # Every 7th of the combinations of test_syslog_speed_fast_path (7 is prime to the
    # count of each part: every header, stamp, host, program and message is used).
    combos = itertools.product(HEADERS, STAMPS[:3], HOSTS, PROGRAMS, MESSAGES)
    lines = [f"{header}{stamp} {host} {program}: {message}".encode()
             for header, stamp, host, program, message in itertools.islice(combos, 0, None, 7)]
    base = b"Jun  1 06:55:46 LabSZ sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2"
    lines += [b"", b"   ", b"\xff\xfe", base + b"\r\n", base + b"\x00", b"\xef\xbb\xbf" + base,
              base + b"\xff", base.replace(b"root", b"ro\x01ot"), b"<38>" + base,
              b"<38>1 2024-01-01T00:00:00Z h app 1 - - rfc5424",
              b"Jun  1 06:55:46 LabSZ sshd[1]: message repeated 3 times: [ Failed password "
              b"for root from 1.2.3.4 port 22 ssh2]"]
    for i in range(120):
        lines.append(f"Jun  1 06:{i % 60:02d}:{i * 7 % 61:02d} LabSZ sshd[{i}]: "
                     f"{MESSAGES[i % 14]}".encode())
    return lines


def test_the_syslog_decoder_is_a_line_decoder() -> None:
    assert isinstance(SyslogDecoder.create("syslog"), LineDecoder)


@pytest.mark.parametrize("source", SOURCES)
def test_batch_gives_the_events_of_decode(source: str) -> None:
    lines = _lines()
    for received in (RECEIVED, RECEIVED + 0.001, RECEIVED + 86400 * 200):
        one, batch = SyslogDecoder.create("syslog"), SyslogDecoder.create("syslog")
        assert _batched(batch, lines, "c", source, received) == \
            _one_by_one(one, lines, "c", source, received)
        # Again, on decoders whose caches are filled (and in another order).
        assert _batched(batch, lines[::-1], "c", source, received) == \
            _one_by_one(one, lines[::-1], "c", source, received)


@pytest.mark.parametrize("options", [
    {"keep_original": True}, {"parse_payloads": False}, {"require": "cef"},
    {"timezone": "UTC"}, {"severity_table": "cef"}])
def test_batch_with_options(options: dict[str, object]) -> None:
    lines = _lines()
    one = SyslogDecoder.create("syslog", **options)  # type: ignore[arg-type]
    batch = SyslogDecoder.create("syslog", **options)  # type: ignore[arg-type]
    assert _batched(batch, lines, "c", "udp://10.0.0.1:514", RECEIVED) == \
        _one_by_one(one, lines, "c", "udp://10.0.0.1:514", RECEIVED)


def test_batch_of_a_collector_with_sender_zones() -> None:
    lines = _lines()
    decoders = SyslogDecoder.create("syslog"), SyslogDecoder.create("syslog")
    for decoder in decoders:
        decoder.assume_zones({"fw": SenderZones.from_config("UTC", {"10.0.0.0/8": "+05:30"})})
    one, batch = decoders
    for collector in ("fw", "other"):
        assert _batched(batch, lines, collector, "udp://10.0.0.1:514", RECEIVED) == \
            _one_by_one(one, lines, collector, "udp://10.0.0.1:514", RECEIVED)


def test_batch_of_a_renamed_decoder() -> None:
    lines = _lines()[:300]
    one, batch = SyslogDecoder.create("a"), SyslogDecoder.create("a")
    assert _batched(batch, lines, "c", "", RECEIVED) == _one_by_one(one, lines, "c", "", RECEIVED)
    one.name = batch.name = "b"  # the fingerprint prefix follows the name
    assert _batched(batch, lines, "c", "", RECEIVED) == _one_by_one(one, lines, "c", "", RECEIVED)


def test_a_parser_error_is_a_failure_of_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    one, batch = SyslogDecoder.create("syslog"), SyslogDecoder.create("syslog")
    real = SyslogDecoder._parse_fast  # noqa: SLF001

    def flaky(self: SyslogDecoder, data: bytes, received: float) -> object:
        if b"boom" in data:
            raise RuntimeError("boom")
        return real(self, data, received)

    monkeypatch.setattr(SyslogDecoder, "_parse_fast", flaky)
    lines = [b"Jun  1 06:55:46 h sshd[1]: Invalid user a from 1.2.3.4",
             b"Jun  1 06:55:46 h sshd[1]: boom", b"Jun  1 06:55:47 h cron: x"]
    got = _batched(batch, lines, "c", "", RECEIVED)
    assert got == _one_by_one(one, lines, "c", "", RECEIVED)
    assert b"parser error: RuntimeError: boom" in got


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(HEADERS), st.sampled_from(STAMPS),
                          st.sampled_from(HOSTS), st.sampled_from(PROGRAMS),
                          st.sampled_from(MESSAGES), st.text(max_size=8)), max_size=8),
       st.sampled_from(SOURCES))
def test_property_batch_equivalence(parts: list[tuple[str, str, str, str, str, str]],
                                    source: str) -> None:
    lines = [f"{h}{s} {host} {p}: {m}{noise}".encode("utf-8", "surrogatepass")
             for h, s, host, p, m, noise in parts]
    one, batch = SyslogDecoder.create("syslog"), SyslogDecoder.create("syslog")
    assert _batched(batch, lines, "c", source, RECEIVED) == \
        _one_by_one(one, lines, "c", source, RECEIVED)


class _PerRecord:
    """The syslog decoder without its batch path (a plain Decoder)."""

    def __init__(self, decoder: SyslogDecoder) -> None:
        self.name = decoder.name
        self._decoder = decoder

    def decode(self, record: RawRecord) -> DecodeResult:
        return self._decoder.decode(record)


def test_replay_output_is_the_same_with_and_without_the_batch_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "auth.log"
    lines = _lines()
    path.write_bytes(b"\n".join(lines) + b"\n")
    outputs = []
    for wrap in (False, True):
        decoder = SyslogDecoder.create("syslog")
        assert not isinstance(_PerRecord(decoder), LineDecoder)
        out = io.BytesIO()
        stats = replay_mod.replay([str(path)], _PerRecord(decoder) if wrap else decoder,
                                  Classifier(ClassificationConfig()), out)
        stats.pop("seconds")
        stats.pop("records_per_sec")
        outputs.append((out.getvalue(), stats, capsys.readouterr().err))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]["failed"]  # the failures were printed and counted alike


@pytest.mark.parametrize(("zone", "year"), [
    ("America/New_York", 2026), ("Europe/Dublin", 2026), ("Australia/Lord_Howe", 2026),
    ("Asia/Ho_Chi_Minh", 1911), ("Asia/Ho_Chi_Minh", 1975), ("America/Sao_Paulo", 2018),
    ("Africa/Monrovia", 1972), ("UTC", 2026),
])
def test_hour_texts_give_the_clock_of_every_minute(zone: str, year: int) -> None:
    """_hour_text (the per-hour level under _minute_text): every minute of the hours
    around each offset change, and of the last hours of the year (the previous-year
    rule), read through the caches in a mixed order, is _clock's."""
    tz = ZoneInfo(zone)
    walls = [*offset_changes(tz, year), datetime(year, 12, 31, 23, 0)]
    stamps = set()
    for wall in walls:
        base = wall.replace(minute=0, second=0)
        for hours in (-1, 0, 1):
            for minute in range(60):
                for second in (0, 29, 59):
                    stamps.add(stamp_of(base + timedelta(hours=hours, minutes=minute,
                                                         seconds=second)))
    reads = sorted(stamps)
    random.Random(6).shuffle(reads)
    for received in (datetime(year, 6, 30, 12, 0, tzinfo=tz).timestamp(),
                     datetime(year, 12, 30, 23, 30, 30, tzinfo=tz).timestamp()):
        decoder = SyslogDecoder.create("syslog", timezone=zone)
        for stamp in reads:
            assert decoder._clock_stamp(stamp, received) == \
                direct(decoder, stamp, received), (stamp, received)  # noqa: SLF001
        assert any(value is not None for value in decoder._hours.values())  # noqa: SLF001


def _containers(value: object, seen: list[int]) -> None:
    if isinstance(value, dict | list):
        seen.append(id(value))
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, seen)


@pytest.mark.parametrize("message", [
    "Failed password for root from 1.2.3.4 port 22 ssh2",
    "Failed password for invalid user x from 2001:db8::1 port 22 ssh2",
    "Invalid user admin from 1.2.3.4 port 22",
    "Connection closed by authenticating user root 1.2.3.4 port 22 [preauth]",
    "error: maximum authentication attempts exceeded for root from 1.2.3.4 port 2 ssh2"])
def test_the_copies_of_a_folded_line_share_no_container(message: str) -> None:
    """The copies of "message repeated N times" (made by _copied, not deepcopy): equal
    to the first event but for event.hash, no dict or list shared between events."""
    decoder = SyslogDecoder.create("syslog")
    line = f"<38>Jun  1 06:55:46 h sshd[1]: message repeated 4 times: [ {message}]".encode()
    events = decoder.decode(RawRecord(line, "syslog", "c", "udp://10.0.0.1:514", RECEIVED,
                                      False, True)).events
    assert len(events) == 4
    seen: list[int] = []
    for event in events:
        _containers(event, seen)
    assert len(seen) == len(set(seen))
    hashes = {event["event"].pop("hash") for event in events}
    assert len(hashes) == 4
    assert all(orjson.dumps(event) == orjson.dumps(events[0]) for event in events)
    assert events[0]["socd"]["vendor"]["sshd"]["repeated"] == 4
