"""A throw-away Mosquitto on loopback, for the demo (and anything else that wants one).

It listens on 127.0.0.1 only, on a free port, with its files in a folder the
caller owns, and is stopped with its owner. Nothing here is used by a deployed
gateway, which talks to the operator's broker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, looking in sbin folders that are often off PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in SEARCH_DIRS:
        candidate = Path(folder) / "mosquitto"
        if candidate.is_file():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """Starts ``mosquitto`` on ``127.0.0.1:port``; ``stop`` ends it."""

    def __init__(
        self, workdir: Path, port: int | None = None, binary: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.workdir = workdir
        self.persistent = persistent
        self.port = port or free_port()
        self.binary = binary or find_mosquitto()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config_lines(self) -> list[str]:
        """The ``mosquitto.conf`` lines; a subclass adds users, ACLs or TLS to them."""
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "max_queued_messages 0"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write workdir
        if self.persistent:
            # Save on every change, so that even SIGKILL keeps sessions and queued messages.
            lines += ["persistence true", f"persistence_location {self.workdir}/",
                      "autosave_on_changes true", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        return lines

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (no-op when running) and return once the port accepts connections."""
        if self.binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        if self.process is not None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(self.config_lines()) + "\n")
        with (self.workdir / "mosquitto.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: "
                                   f"{self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not listen on port {self.port} in {timeout_s} s")

    def log(self) -> str:
        """What mosquitto wrote to its log file so far (for error messages and tests)."""
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as when the building's line or the broker host dies abruptly."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def restart(self) -> None:
        """Start again on the same port (after ``stop`` or ``kill``)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
