"""edgent-exchange-demo: the two-process message exchange.

Starts tensor_listener and tensor_talker as two separate processes that talk
over DDS, sends a few 1x64x8x8 float32 Tensors and a Plan from one to the
other, and reports whether every tensor arrived bit-exact.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def node_command(module: str, params: dict[str, object], namespace: str) -> list[str]:
    """The command line that starts one of the demo nodes as its own process."""
    cmd = [sys.executable, '-m', module, '--ros-args', '-r', f'__ns:={namespace}']
    for name, value in params.items():
        cmd += ['-p', f'{name}:={value}']
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=5, help='tensors to send (default 5)')
    parser.add_argument('--rate', type=float, default=4.0, help='tensors per second')
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds before giving up')
    args = parser.parse_args(argv)

    # Never let the source tree (which lacks the generated messages) shadow
    # the installed package in the child processes.
    env = dict(os.environ, PYTHONSAFEPATH='1', PYTHONUNBUFFERED='1')
    ns = '/edgent_demo'
    listener = subprocess.Popen(node_command('edgent_ros.demo.tensor_listener', {
        'count': args.count, 'seed': args.seed, 'timeout_s': args.timeout}, ns), env=env)
    talker = subprocess.Popen(node_command('edgent_ros.demo.tensor_talker', {
        'count': args.count, 'seed': args.seed, 'rate_hz': args.rate,
        'wait_for_subscribers': True}, ns), env=env)
    print(f'[edgent-exchange-demo] listener pid {listener.pid}, talker pid {talker.pid}: '
          f'{args.count} tensors of 1x64x8x8 float32 and one Plan over DDS', flush=True)
    start = time.monotonic()
    try:
        listener_rc = listener.wait(timeout=args.timeout + 10)
    except subprocess.TimeoutExpired:
        listener.kill()
        listener_rc = -1
    try:
        talker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        talker.terminate()
        talker.wait()
    elapsed = time.monotonic() - start
    verdict = 'all bit-exact' if listener_rc == 0 else 'FAILED'
    print(f'[edgent-exchange-demo] two-process exchange: {verdict} ({elapsed:.1f} s)', flush=True)
    return 0 if listener_rc == 0 else 1


if __name__ == '__main__':
    raise SystemExit(main())
