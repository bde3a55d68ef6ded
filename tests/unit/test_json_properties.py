"""Property tests for JSON framing and the `json` decoder: no input makes them raise."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from socd.app.deadletter import DeadLetter
from socd.config import DecoderConfig
from socd.decoders.base import split_json
from socd.decoders.json import JsonDecoder
from socd.plugins import PluginContext, RawRecord

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _decoder() -> JsonDecoder:
    cfg = JsonDecoder.Config.model_validate({"type": "json"})
    assert isinstance(cfg, DecoderConfig)
    return JsonDecoder(cfg, PluginContext(name="json", dead_letter=DeadLetter("/nonexistent")))


DECODER = _decoder()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = DECODER.decode(RawRecord(data, "json", "prop"))
    for failure in result.failures:
        assert failure.reason in {"invalid_json", "invalid_utf8", "not_an_object",
                                  "invalid_field", "missing_field"}
        assert isinstance(failure.raw, bytes)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_arbitrary_json_values_never_raise(value: object) -> None:
    data = orjson.dumps(value)
    result = DECODER.decode(RawRecord(data, "json", "prop"))
    assert len(result.events) + len(result.failures) >= (1 if not isinstance(value, list)
                                                         else 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "message"]), st.text(max_size=8),
                                max_size=3), min_size=1, max_size=10))
def test_ndjson_splits_into_one_value_per_line(objects: list[dict[str, str]]) -> None:
    data = b"\n".join(orjson.dumps(o) for o in objects) + b"\n"
    items, failures = split_json(data)
    assert not failures
    assert [v for v, _ in items] == objects if len(objects) > 1 else len(items) == 1
