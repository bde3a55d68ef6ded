"""Telling a shared MQTT client id from a broker restart (issue 14, point 3)."""

from __future__ import annotations

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from socd.collectors.mqtt import SESSION_TAKEN_OVER, SessionFlaps, _describe, _reason_code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_connections_that_keep_ending_right_after_they_were_made_are_flapping() -> None:
    clock = Clock()
    flaps = SessionFlaps(short_secs=10, window_secs=300, count=3, clock=clock)
    assert not flaps.lost(0.6)
    clock.now += 1
    assert not flaps.lost(1.2)
    clock.now += 2
    assert flaps.lost(0.4)
    assert flaps.recent == 3


def test_a_broker_restart_loses_a_connection_that_had_lasted() -> None:
    clock = Clock()
    flaps = SessionFlaps(short_secs=10, window_secs=300, count=3, clock=clock)
    for _ in range(5):
        clock.now += 3600
        assert not flaps.lost(3599.0)
    assert flaps.recent == 0


def test_short_connections_spread_over_more_than_the_window_are_not() -> None:
    clock = Clock()
    flaps = SessionFlaps(short_secs=10, window_secs=300, count=3, clock=clock)
    for _ in range(6):
        assert not flaps.lost(2.0)
        clock.now += 200
    assert flaps.recent == 2  # the last two: 200 s apart, within the 300 s window


def test_session_taken_over_is_said_at_once() -> None:
    flaps = SessionFlaps(clock=Clock())
    assert flaps.lost(3600.0, taken_over=True)


def _lost_connection(rc: ReasonCode) -> aiomqtt.MqttError:
    """What aiomqtt raises from its message iterator when the broker disconnects."""
    try:
        raise aiomqtt.MqttCodeError(rc, "Unexpected disconnection")
    except aiomqtt.MqttError as inner:
        outer = aiomqtt.MqttError("Disconnected during message iteration")
        outer.__cause__ = inner
        return outer


def test_reason_code_and_description_come_from_the_cause() -> None:
    exc = _lost_connection(ReasonCode(PacketTypes.DISCONNECT, identifier=SESSION_TAKEN_OVER))
    assert _reason_code(exc) == SESSION_TAKEN_OVER
    assert _describe(exc) == ("Disconnected during message iteration: "
                              "[code:142] Session taken over")
    plain = aiomqtt.MqttError("Connection refused")
    assert _reason_code(plain) is None
    assert _describe(plain) == "Connection refused"
