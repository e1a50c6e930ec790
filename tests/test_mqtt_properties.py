"""paho's MQTT 5 Properties with the lookup tables shared (mqtt.share_property_tables): same behaviour."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from smppengine import mqtt


def test_tables_are_shared_once_the_engine_module_is_loaded() -> None:
    assert mqtt.share_property_tables() is True
    a, b = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBACK)
    assert a.names is b.names and a.properties is b.properties and a.types is b.types
    assert (a.packetType, b.packetType) == (PacketTypes.PUBLISH, PacketTypes.PUBACK)


def test_properties_still_pack_unpack_and_validate() -> None:
    mqtt.share_property_tables()
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 60
    p.UserProperty = ("k", "v")
    p.UserProperty = ("k2", "v2")          # allowsMultiple: appended, not replaced
    back = Properties(PacketTypes.PUBLISH)
    back.unpack(p.pack())
    assert back.MessageExpiryInterval == 60
    assert back.UserProperty == [("k", "v"), ("k2", "v2")]
    with pytest.raises(MQTTException):
        p.ReceiveMaximum = 10              # a CONNACK/CONNECT property, not a PUBLISH one
    with pytest.raises(MQTTException):
        p.NoSuchProperty = 1
    fresh = Properties(PacketTypes.PUBLISH)
    assert not hasattr(fresh, "MessageExpiryInterval")   # values stay per instance
    connack = Properties(PacketTypes.CONNACK)
    connack.ReceiveMaximum = 20
    assert Properties(PacketTypes.CONNACK).json() == {}
    assert connack.json() == {"ReceiveMaximum": 20}
