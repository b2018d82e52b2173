"""The one way every edgent_ros executable runs its node: init, spin, clean shutdown."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(factory: Callable[[], Node], args: list[str] | None = None, *,
             refused: tuple[type[Exception], ...] = (), until_done: bool = False) -> int:
    """Create the node, spin it until Ctrl-C (or until ``node.done`` with
    until_done), then destroy it and shut rclpy down. An exception of a
    ``refused`` type while starting (a bad model, profile or parameter) or a
    parameter rclpy refuses (out of its declared range, wrong type) ends the
    process with status 2 and the reason."""
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        if until_done:
            while rclpy.ok() and not node.done:
                rclpy.spin_once(node, timeout_sec=0.1)
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (*refused, ParameterException) as exc:
        name = node.get_name() if node is not None else factory.__name__
        print(f'{name}: error: {exc}', flush=True)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
