"""Forwarding to a real syslog receiver on 127.0.0.1, and `audit verify
--syslog` catching a local log that no longer agrees with the forwarded copy."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

from tests.conftest import xguard_exe


def _receiver(out: Path) -> tuple[int, threading.Event]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        with sock, open(out, "ab") as f:
            while not stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                f.write(data.rstrip(b"\n") + b"\n")
                f.flush()

    threading.Thread(target=run, daemon=True).start()
    return sock.getsockname()[1], stop


def test_forwarded_copy_catches_truncation_and_edits(xguard_home: Path, tmp_path: Path) -> None:
    received = tmp_path / "syslog.txt"
    port, stop = _receiver(received)
    try:
        xguard_home.mkdir(parents=True)
        (xguard_home / "rules.yaml").write_text(
            "default: require_approval\nrules:\n  - {pattern: echo, action: allow}\n"
            f"audit: {{forward: {{syslog: {{address: '127.0.0.1:{port}', protocol: udp}}}}}}\n"
        )
        env = {**os.environ, "XGUARD_WAIT": "0"}
        for i in range(4):
            subprocess.run(
                [*xguard_exe(), "-c", f"echo {i}"], env=env, check=True, capture_output=True
            )
        for _ in range(50):
            if received.exists() and received.read_text().count('"hash":"') >= 8:
                break
            threading.Event().wait(0.05)
    finally:
        stop.set()
    text = received.read_text()
    assert text.count('"hash":"') == 8 and "<" in text.splitlines()[0][:5]  # RFC 5424 PRI
    verify = [*xguard_exe(), "audit", "verify", "--syslog", str(received)]
    p = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert p.returncode == 0 and "agrees with 8 forwarded records" in p.stdout, p.stdout + p.stderr

    log = xguard_home / "audit" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(
        b"".join(lines[:-2])
    )  # an agent cuts the tail: a chain check alone still passes
    assert (
        subprocess.run(
            [*xguard_exe(), "audit", "verify"], capture_output=True, check=False
        ).returncode
        == 0
    )
    p = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert p.returncode == 1 and "BROKEN" in p.stdout
