"""The JSON decoders' per-record shortcuts (issue 17) answer what the plain paths did:
fingerprints, the constants of a mapping, a severity code in any form."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from socd.decoders.json import JsonDecoder
from socd.decoders.mapping import MappingDecoder
from socd.event import fingerprint
from socd.plugins import PluginContext, RawRecord

DEEP_CONSTANTS = """\
name: deep
fields: {host.name: hostname, host.os.full: os, destination.ip: ip}
constants:
  event.kind: alert
  observer.product: Acme
  labels.deep.level: three
  tags: [acme, edr]
"""


def _json_decoder() -> JsonDecoder:
    return JsonDecoder(JsonDecoder.Config(type="json"),
                       PluginContext(name="ecs", dead_letter=None))


def _decode(dec: JsonDecoder | MappingDecoder, data: bytes) -> list[dict[str, object]]:
    return dec.decode(RawRecord(data, dec.name, "coll", "src", 1794788564.0)).events


def test_fingerprints_are_name_digest_index() -> None:
    dec = _json_decoder()
    for data in (b'{"message": "a"}', b'[{"message": "a"}, {"message": "b"}]',
                 b'{"message": "a"}\n{"message": "b"}\n'):
        digest = hashlib.blake2b(data, digest_size=16).digest()
        hashes = [e["event"]["hash"] for e in _decode(dec, data)]  # type: ignore[index]
        assert hashes == [fingerprint("ecs", digest, str(i)) for i in range(len(hashes))]


def test_severity_codes_in_every_form() -> None:
    dec = _json_decoder()
    result = dec.decode(RawRecord(b'{"socd": {"severity": ["high"]}}\n{"socd": {"severity": '
                                  b'"urgent"}}\n{"socd": {"severity": "high"}}',
                                  "ecs", "coll", "src", 1794788564.0))
    assert [f.reason for f in result.failures] == ["invalid_field", "invalid_field"]
    assert all("low, medium, high or critical" in f.detail for f in result.failures)
    [event] = result.events
    assert event["socd"]["severity"] == "high"
    assert event["socd"]["severity_label"] == "cao"


def test_mapping_constants_deeper_than_two_levels_are_fresh_per_event(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text(DEEP_CONSTANTS, encoding="utf-8")
    dec = MappingDecoder(MappingDecoder.Config(type="mapping", mapping="deep.yaml"),
                         PluginContext(name="deep", dead_letter=None, config_dir=str(tmp_path)))
    first, second = _decode(dec, b'{"hostname": "a", "os": "x"}\n{"ip": "::ffff:10.0.0.1"}')
    first["labels"]["deep"]["level"] = "changed"  # type: ignore[index]
    first["tags"].append("more")  # type: ignore[attr-defined]
    assert second["labels"] == {"deep": {"level": "three"}}
    assert second["tags"] == ["acme", "edr"]
    assert first["host"] == {"name": "a", "os": {"full": "x"}}
    assert second["destination"] == {"ip": "10.0.0.1"}
    assert "host" not in second


def test_mapping_constants_of_two_levels_are_fresh_per_event() -> None:
    dec = MappingDecoder(MappingDecoder.Config(type="mapping", mapping="server_edr"),
                         PluginContext(name="server_edr", dead_letter=None))
    line = orjson.dumps({"alert_id": "1", "detected_at": "2026-11-16T00:11:43+07:00",
                         "hostname": "h", "severity": "Cao"})
    first, second = _decode(dec, line + b"\n" + line)
    first["observer"]["vendor"] = "changed"  # type: ignore[index]
    assert second["observer"] == {"type": "edr", "vendor": "VSEC", "product": "Server Guard"}
    assert first["event"] is not second["event"]
