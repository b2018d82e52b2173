"""The one way every edgent_ros executable runs its node: init, spin, clean shutdown."""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from edgent_ros import dds_profile

EXECUTORS = ('events', 'single')


def executor_kind() -> str:
    """EDGENT_EXECUTOR's value, checked (ValueError says why)."""
    choice = os.environ.get('EDGENT_EXECUTOR', 'events')
    if choice not in EXECUTORS:
        raise ValueError(f'EDGENT_EXECUTOR must be one of {", ".join(EXECUTORS)}, '
                         f'got {choice!r}')
    return choice


def make_executor(context: Context | None = None) -> Executor:
    """The executor the nodes spin on: rclpy's EventsExecutor where this rclpy
    has it (Kilted's, and Jazzy's 7.1.6 that requirements/jazzy.lock pins), else
    the single-threaded one. On this project's bench the events executor ran the
    whole device side with a third of the CPU (docs/footprint.md).
    ``EDGENT_EXECUTOR=single`` (or ``events``) chooses.
    No node needs more than one executor thread: the device node computes on a
    thread of its own."""
    if executor_kind() == 'events':
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # an older rclpy has none
            pass
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def init(args: list[str] | None = None) -> bool:
    """rclpy.init with the DDS profile applied first (Fast DDS reads it when
    the participant is created); False, with the reason printed, when the
    profile asked for (EDGENT_DDS_PROFILE) does not exist."""
    try:
        dds_profile.apply()
    except ValueError as exc:
        print(f'error: {exc}', flush=True)
        return False
    rclpy.init(args=args)
    return True


def run_node(factory: Callable[[], Node], args: list[str] | None = None, *,
             refused: tuple[type[Exception], ...] = (), until_done: bool = False) -> int:
    """Create the node, spin it until Ctrl-C (or until ``node.done`` with
    until_done), then destroy it and shut rclpy down. An exception of a
    ``refused`` type while starting (a bad model, profile or parameter) or a
    parameter rclpy refuses (out of its declared range, wrong type) ends the
    process with status 2 and the reason. The DDS profile (dds_profile) is
    applied first: Fast DDS reads it when rclpy.init creates the participant."""
    try:
        executor_kind()
    except ValueError as exc:
        print(f'error: {exc}', flush=True)
        return 2
    if not init(args):
        return 2
    executor = make_executor()
    node = None
    try:
        node = factory()
        executor.add_node(node)
        # spin_once in a loop, not spin(): the events executor's spin() does
        # not return on Ctrl-C or SIGINT (seen with Kilted's rclpy 9.1).
        while rclpy.ok() and not (until_done and node.done):
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (*refused, ParameterException) as exc:
        name = node.get_name() if node is not None else factory.__name__
        print(f'{name}: error: {exc}', flush=True)
        return 2
    finally:
        _quiet_teardown()
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _quiet_teardown() -> None:
    """A second SIGINT while the node is torn down (a launcher that signals
    the process group and each child) would end it with a traceback from
    inside rclpy: teardown is short, so SIGINT is ignored from here on
    (SIGTERM and SIGKILL still end it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class GuardedNode(Node):
    """A Node whose message callbacks cannot end it: an exception from one is
    logged (rate-limited, with the reason), counted in ``callback_errors``
    and the message dropped. Every edgent_ros node subclasses it, so no
    message any process on the domain sends can stop a node."""

    callback_errors = 0

    def create_subscription(self, msg_type: type, topic: str, callback: Callable,
                            *args: object, **kwargs: object) -> object:
        @functools.wraps(callback)
        def guarded(msg: object) -> None:
            try:
                callback(msg)
            except Exception as exc:
                self.callback_errors += 1
                self.get_logger().error(f'dropped a message on {topic}: {exc!r}'[:500],
                                        throttle_duration_sec=5.0)

        return super().create_subscription(msg_type, topic, guarded, *args, **kwargs)
