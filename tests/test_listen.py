"""Issue 12 §1: both listeners bind dual-stack ``::`` by default (Fly's 6PN is IPv6 only)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from aibridge.errors import ConfigError
from aibridge.server import listen
from aibridge.server.listen import bind_listener, display_host
from support import stop_process, wait_http_ok


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no ::1")


def _dual_stack_free_port() -> int:
    """A port free on both families (a dual-stack socket on port 0 holds it on both)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


@needs_ipv6
async def test_default_bind_serves_both_ports_over_ipv6_and_ipv4_loopback(tmp_path: Path) -> None:
    port, metrics_port = _dual_stack_free_port(), _dual_stack_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_BRIDGE_") and k != "PORT"}
    env |= {"PORT": str(port), "AI_BRIDGE_METRICS_PORT": str(metrics_port), "AI_BRIDGE_STORE": "memory"}
    log = tmp_path / "bridge.log"
    with log.open("wb") as out:  # no --host, no AI_BRIDGE_HOST: the defaults
        process = subprocess.Popen(
            [sys.executable, "-m", "aibridge", "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", process=process)
        for host in ("127.0.0.1", "[::1]"):
            assert httpx.get(f"http://{host}:{port}/health").json()["status"] == "ok"
            metrics = httpx.get(f"http://{host}:{metrics_port}/metrics")
            assert metrics.status_code == 200 and "aibridge_build_info" in metrics.text
            async with websockets.connect(f"ws://{host}:{port}/ws", compression=None) as ws:
                await ws.send(f'{{"type":"register","clientId":"agent-{host.strip("[]")}"}}')
                assert '"registered"' in str(await ws.recv())
    finally:
        stop_process(process)
    text = log.read_text()
    assert f"serving on [::]:{port}" in text and f"http://[::]:{metrics_port}/metrics" in text
    assert "IPv6 is not available" not in text


def test_wildcard_falls_back_to_ipv4_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_ipv6(port: int, backlog: int) -> socket.socket:
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(listen, "_dual_stack", no_ipv6)
    monkeypatch.setattr(listen, "_fallback_logged", False)
    with caplog.at_level(logging.WARNING, logger="aibridge"):
        first, second = bind_listener("::", 0), bind_listener("[::]", 0)
    try:
        assert first.family == second.family == socket.AF_INET
        assert first.getsockname()[0] == "0.0.0.0"
        with socket.create_connection(("127.0.0.1", first.getsockname()[1]), timeout=5):
            pass
    finally:
        first.close()
        second.close()
    lines = [r.getMessage() for r in caplog.records if "IPv6 is not available" in r.getMessage()]
    assert lines == [
        "IPv6 is not available here (Address family not supported by protocol): listening on 0.0.0.0 only"
    ]


@needs_ipv6
def test_names_resolve_to_their_ipv6_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # fly-local-6pn is an /etc/hosts name on a Fly Machine; here it resolves to ::1 for the test.
    real = socket.getaddrinfo

    def fly_hosts(host: str, *args: object, **kwargs: object) -> object:
        if host == "fly-local-6pn":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(listen.socket, "getaddrinfo", fly_hosts)
    sock = bind_listener("fly-local-6pn", 0)
    try:
        assert sock.family == socket.AF_INET6 and sock.getsockname()[0] == "::1"
    finally:
        sock.close()
    with pytest.raises(
        ConfigError, match=r"cannot listen on no-such-host\.invalid: the name does not resolve"
    ):
        bind_listener("no-such-host.invalid", 0)


def test_busy_port_names_the_address(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"^X: cannot listen on 127\.0\.0\.1:{port} \(address already in use\)$"
        ):
            bind_listener("127.0.0.1", port, prefix="X: ")
    assert (
        display_host("::") == "[::]"
        and display_host("[::1]") == "[::1]"
        and display_host("0.0.0.0") == "0.0.0.0"
    )
