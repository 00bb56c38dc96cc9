"""Real uvicorn servers on 127.0.0.1 for tests: in a thread (an app object) or as a `bpd-rag serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base_url: str, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll /healthz until it answers 200 (fail early when the process died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{out}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url}/healthz did not answer within {timeout_s}s")


class ThreadServer:
    """uvicorn serving an app object in a background thread (so tests can use dependency_overrides)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_healthy(self.base_url, timeout_s=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ProcessServer:
    """`bpd-rag serve` as a child process on a free port, stopped by its PID."""

    def __init__(self, env: dict[str, str], args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = Path(sys.executable).with_name("bpd-rag")
        self.argv = [str(command), "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProcessServer:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.base_url, process=self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> str:
        """Stop the process (SIGTERM, then SIGKILL) and return what it printed."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        out = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
        return out

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
