"""The engine's MQTT link: :class:`MqttLink` is the one public class.

- :mod:`.link`: the link (aiomqtt): session, subscriptions, presence, reconnects, PUBACK after commit, publishing.
- :mod:`.wire`: its hot path on the paho client: QoS 1 publishes/PUBACKs as raw packets, buffered reads.
- :mod:`.paho_internals`: every private paho/aiomqtt member used, checked against the installed release.
"""

from .link import SYS_DROPPED, BatchAck, Incoming, MqttLink, parse_url

__all__ = ["SYS_DROPPED", "BatchAck", "Incoming", "MqttLink", "parse_url"]
