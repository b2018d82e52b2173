"""probe_echo: answers the bandwidth monitor's probes at once (edge side).

Subscribes ``probe`` (Tensor), replies on ``probe/reply`` (EdgeReply) with
the bytes received and the time the probe spent here, so the device can
subtract it from the round trip.
"""

from __future__ import annotations

import time

from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import TENSOR_QOS
from edgent_ros_interfaces.msg import EdgeReply, Tensor


class ProbeEcho(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('probe_echo', **kwargs)
        self.reply_pub = self.create_publisher(EdgeReply, 'probe/reply', TENSOR_QOS)
        self.create_subscription(Tensor, 'probe', self.on_probe, TENSOR_QOS)
        self.answered = 0

    def on_probe(self, msg: Tensor) -> None:
        start = time.perf_counter()
        reply = EdgeReply()
        reply.header = msg.header
        reply.frame_seq = msg.frame_seq
        reply.source_id = msg.source_id
        reply.received_bytes = len(msg.data)
        reply.edge_total_ms = (time.perf_counter() - start) * 1e3
        self.reply_pub.publish(reply)
        self.answered += 1


def main(args: list[str] | None = None) -> int:
    return run_node(ProbeEcho, args, refused=())


if __name__ == '__main__':
    raise SystemExit(main())
