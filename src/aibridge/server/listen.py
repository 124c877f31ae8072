"""Listening sockets for the app and metrics ports: dual-stack ``::`` by default.

Fly's private network (6PN, ``APP.internal``) is IPv6 only, so a server bound to ``0.0.0.0``
cannot be reached from another app of the organization, nor scraped over ``.internal``. One
``AF_INET6`` socket on ``::`` with ``IPV6_V6ONLY`` off takes both families: Fly's proxy and
``127.0.0.1`` keep working over IPv4-mapped addresses. Where the kernel has no IPv6 (a
container started with it disabled), the wildcard falls back to ``0.0.0.0`` and says so once.
"""

from __future__ import annotations

import errno
import logging
import socket

from aibridge.errors import ConfigError

__all__ = ("WILDCARDS", "bind_listener", "display_host")

log = logging.getLogger("aibridge")

WILDCARDS = frozenset({"::", "[::]"})
"""Hosts meaning "every address, both families"."""
_NO_IPV6 = frozenset({errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT})
_fallback_logged = False


def display_host(host: str) -> str:
    """``host`` as it goes before ``:port`` in a log line or URL."""
    bare = host.strip("[]")
    return f"[{bare}]" if ":" in bare else bare


def _dual_stack(port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _resolve(host: str) -> tuple[socket.AddressFamily, str]:
    """Family and address of ``host``; a name (``fly-local-6pn``) prefers its IPv6 address."""
    bare = host.strip("[]")
    if ":" in bare:
        return socket.AF_INET6, bare
    try:
        socket.inet_aton(bare)
        return socket.AF_INET, bare
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: the name does not resolve ({exc.strerror})") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET6)
    family, address = infos[0][0], str(infos[0][4][0])
    return socket.AddressFamily(family), address


def bind_listener(
    host: str, port: int, *, prefix: str = "", suffix: str = "", backlog: int = 2048
) -> socket.socket:
    """A listening, inheritable socket on ``host:port``; ``prefix``/``suffix`` frame the error.

    ``::`` / ``[::]`` is dual-stack (``0.0.0.0`` where IPv6 is absent); an IPv6 literal or a
    name that resolves to one (``fly-local-6pn``) is IPv6 only; anything else is IPv4.
    """
    global _fallback_logged
    shown = display_host(host)
    try:
        if host in WILDCARDS:
            try:
                sock = _dual_stack(port, backlog)
            except OSError as exc:
                if exc.errno not in _NO_IPV6:
                    raise
                if not _fallback_logged:
                    log.warning("IPv6 is not available here (%s): listening on 0.0.0.0 only", exc.strerror)
                    _fallback_logged = True
                sock = socket.create_server(("0.0.0.0", port), backlog=backlog)
        else:
            family, address = _resolve(host)
            sock = socket.create_server((address, port), family=family, backlog=backlog)
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"{prefix}cannot listen on {shown}:{port} ({reason}){suffix}") from None
    sock.set_inheritable(True)
    return sock
