"""The MQTT collector remembers each topic's decoder (issue 17: matching the subscription
filters cost more than decoding a one-record message), within bounds: topic names come
from publishers."""

from __future__ import annotations

import aiomqtt

from socd.collectors import mqtt
from socd.collectors.mqtt import MqttCollector
from socd.plugins import PluginContext


def _collector() -> MqttCollector:
    config = MqttCollector.Config(
        type="mqtt", topics=["ids/#"], decoder="json",
        subscriptions=[{"topic": "$share/socd/edr/servers/+", "decoder": "server_edr"},
                       {"topic": "edr/#", "decoder": "workstation_edr"}])
    return MqttCollector(config, PluginContext(name="mqtt-routes", dead_letter=None))


def test_remembered_answers_are_the_filters_answers() -> None:
    collector = _collector()
    for _ in range(2):  # the second round is answered from memory
        assert collector._decoder_for(aiomqtt.Topic("edr/servers/srv1")) == "server_edr"
        assert collector._decoder_for(aiomqtt.Topic("edr/servers/srv1/x")) == "workstation_edr"
        assert collector._decoder_for(aiomqtt.Topic("ids/eve")) == "json"
        assert collector._decoder_for(aiomqtt.Topic("other")) == "json"
    assert len(collector._topic_decoders) == 4


def test_the_memory_is_bounded_in_entries_and_name_length() -> None:
    collector = _collector()
    for i in range(mqtt._TOPICS_REMEMBERED + 10):
        assert collector._decoder_for(aiomqtt.Topic(f"edr/servers/h{i}")) == "server_edr"
    assert len(collector._topic_decoders) <= mqtt._TOPICS_REMEMBERED
    long_name = "edr/servers/" + "x" * 65_000
    assert collector._decoder_for(aiomqtt.Topic(long_name)) == "server_edr"
    assert long_name not in collector._topic_decoders
