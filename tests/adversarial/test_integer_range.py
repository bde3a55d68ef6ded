"""Integers beyond 64 bits in typed fields: refused and dead-lettered, never a crash.

A vendor record whose ``process.pid`` is ``1e20`` (or a port written as a 25-digit
text) used to pass ``normalize`` as a Python int no sink can write: orjson refuses
integers beyond 64 bits, and one such record stopped ``socd replay`` with a traceback
(Elasticsearch's ``long`` refuses anything outside the signed 64-bit range as well).
Every JSON decoder now refuses such a record with ``invalid_field`` and its raw bytes,
keeps the records around it, and every event it accepts serializes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from socd.decoders.json import JsonDecoder
from socd.decoders.mapping import MappingDecoder
from socd.plugins import PluginContext, RawRecord

OUT_OF_RANGE: list[bytes] = [b"1e20", b"-1e19", b"1e300", b"9223372036854775808",
                             b"18446744073709551615", b'"99999999999999999999999"',
                             b'"-9223372036854775809"', b"9.3e18"]
IN_RANGE: list[bytes] = [b"9223372036854775807", b'"-9223372036854775808"', b"0", b"4.0e18"]
TS = b'"2026-11-16T00:11:43+07:00"'


def _edr(pid: bytes, alert: int) -> bytes:
    return (b'{"alert_id": "A%d", "detected_at": %s, "hostname": "h", '
            b'"process": {"pid": %s}}' % (alert, TS, pid))


def _mapping() -> MappingDecoder:
    return MappingDecoder(MappingDecoder.Config(type="mapping", mapping="server_edr"),
                          PluginContext(name="server_edr", dead_letter=None))


def test_every_json_decoder_refuses_what_no_long_holds() -> None:
    ecs = JsonDecoder(JsonDecoder.Config(type="json"), PluginContext(name="ecs",
                                                                     dead_letter=None))
    for value in OUT_OF_RANGE + IN_RANGE:
        for dec, line in ((_mapping(), _edr(value, 1)),
                          (ecs, b'{"@timestamp": %s, "source": {"port": %s}}' % (TS, value))):
            good = _edr(b"7", 2) if dec is not ecs else b'{"@timestamp": %s}' % TS
            result = dec.decode(RawRecord(line + b"\n" + good, dec.name, "c", "s", 1.0e9))
            for event in result.events:
                orjson.dumps(event)  # every accepted event can be written by any sink
            if value in OUT_OF_RANGE:
                assert [(f.reason, f.raw) for f in result.failures] == [
                    ("invalid_field", line)], value
                assert "outside the 64-bit integer range" in result.failures[0].detail
                assert len(result.events) == 1  # the record beside it is kept
            else:
                assert result.failures == [], value
                assert len(result.events) == 2


def test_replay_goes_on_past_a_huge_integer(tmp_path: Path) -> None:
    path = tmp_path / "edr.ndjson"
    path.write_bytes(b"\n".join([_edr(b"1e20", 1), _edr(b"42", 2)]) + b"\n")
    done = subprocess.run([sys.executable, "-m", "socd", "replay", "--format", "server_edr",
                           str(path)], capture_output=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr  # a record failed (a crash is 1 as well:)
    assert b"Traceback" not in done.stderr
    assert b"process.pid is outside the 64-bit integer range" in done.stderr
    events = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [e["process"]["pid"] for e in events if e["event"].get("id") == "A2"] == [42]
    assert not [e for e in events if e["event"].get("id") == "A1"]
