"""Subprocesses run in the background for the multi-process tests, and
ports reserved for them."""

import contextlib
import os
import socket
import subprocess
import threading
import time

import pytest

# A job that runs longer has hung (measured: under 2 min for the slowest,
# with every job and a CPU-bound process sharing 2 cores).
RUN_TIMEOUT_S = 600


class Job:
    """A subprocess run to completion in a background thread, timed."""

    def __init__(self, command, cwd=None, **env):
        self.command = [str(word) for word in command]
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
        self.env.update(env)
        self.completed = None
        self.seconds = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        start = time.monotonic()
        try:
            self.completed = subprocess.run(
                self.command,
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,  # kills the child when exceeded
            )
        except subprocess.TimeoutExpired:
            pass
        self.seconds = time.monotonic() - start

    def wait(self):
        self._thread.join()

    def result(self):
        """The completed process; fails the test on a timeout."""
        self.wait()
        if self.completed is None:
            pytest.fail(f"timed out after {RUN_TIMEOUT_S} s: {self.command}")
        return self.completed

    def succeeded(self):
        completed = self.result()
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed


@contextlib.contextmanager
def reserved_ports(count):
    """`count` ports held by bound, non-listening sockets until exit.

    With `SO_REUSEADDR` set on both sides, the gRPC servers of the JAX
    coordinator and of TensorFlow's workers can still bind and listen on
    them, while the kernel hands them to no other `bind` or `connect` in
    the meantime (a port picked and closed could be taken by then).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("localhost", 0))
            ports.append(sock.getsockname()[1])
        yield ports
