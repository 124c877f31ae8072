"""How many sockets without a token one client can hold on a real ``aibridge serve`` (issue 11 item 4).

    .venv/bin/python bench/unauth_sockets.py [--cap N] [--auth-timeout-ms MS]

Starts the bridge with a token and AI_BRIDGE_MAX_CONNECTIONS=N on 127.0.0.1, opens token-less
WebSockets from one client until the bridge refuses one (or N are open), keeps them alive with
heartbeats, and prints: how many were held (target: at most a tenth of the cap), how long they
were held (target: closed with 1008 within AI_BRIDGE_AUTH_TIMEOUT_MS, plus slack), and whether
an agent with the token was still served while they were held. A figure it did not see is
printed as "cannot tell" with the reason, never as ok.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge import bridge  # the benchmarks' shared real-server runner

TOKEN = "bench-unauth-token"
SLACK_S = 2.0
"""Scheduling slack allowed past the auth timeout on a loaded machine."""


async def hold(ws: aiohttp.ClientWebSocketResponse, limit_s: float) -> tuple[int | None, float]:
    """Heartbeat every 100 ms until the bridge closes the socket; (close code, seconds held)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        await ws.send_str(json.dumps({"type": "heartbeat"}))
        try:
            message = await ws.receive(timeout=0.1)
        except TimeoutError:
            continue
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            break
    if not ws.closed:
        await ws.close()
    return ws.close_code, time.monotonic() - start


async def measure(port: int, cap: int, auth_timeout_s: float) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/ws"
    # limit=0: aiohttp holds at most 100 connections per session by default.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        held: list[aiohttp.ClientWebSocketResponse] = []
        refused_with: int | None = None
        opened = time.monotonic()
        for _ in range(cap):
            try:
                held.append(await session.ws_connect(url, autoping=True))
            except aiohttp.WSServerHandshakeError as refused:
                refused_with = refused.status
                break
        agent_ok: bool | None = None
        try:
            agent = await session.ws_connect(f"{url}?token={TOKEN}")
            await agent.send_str(json.dumps({"type": "register", "clientId": "bench-agent"}))
            reply = await agent.receive_json(timeout=10)
            agent_ok = reply.get("type") == "registered"
            await agent.close()
        except (aiohttp.ClientError, TimeoutError):
            agent_ok = False
        results = await asyncio.gather(*(hold(ws, auth_timeout_s + 30) for ws in held))
        return {
            "held": len(held),
            "refused_with": refused_with,
            "codes": sorted({code for code, _ in results if code is not None}),
            "longest_s": max((time.monotonic() - opened, *(s for _, s in results))) if results else None,
            "agent_ok": agent_ok,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=200, help="AI_BRIDGE_MAX_CONNECTIONS")
    parser.add_argument("--auth-timeout-ms", type=int, default=3000, help="AI_BRIDGE_AUTH_TIMEOUT_MS")
    args = parser.parse_args()
    env = {
        "AI_BRIDGE_AUTH_TOKEN": TOKEN,
        "AI_BRIDGE_MAX_CONNECTIONS": str(args.cap),
        "AI_BRIDGE_AUTH_TIMEOUT_MS": str(args.auth_timeout_ms),
    }
    timeout_s = args.auth_timeout_ms / 1000
    with bridge("memory", env) as (port, _pid):
        figures = asyncio.run(measure(port, args.cap, timeout_s))
    held, target = int(str(figures["held"])), args.cap // 10
    missed = []
    verdict = "ok" if held <= target else "MISSED"
    if held > target:
        missed.append("held")
    print(f"unauth_held    {held:>8} sockets  of cap {args.cap}; target <= {target} (10 %)  {verdict}")
    print(f"  refused next with HTTP {figures['refused_with'] or 'nothing (the cap was reached first)'}")
    codes = figures["codes"]
    longest = figures["longest_s"]
    if not held:
        print("unauth_lifetime  cannot tell: no socket was held")
    else:
        ok = codes == [1008] and isinstance(longest, float) and longest <= timeout_s + SLACK_S + held * 0.05
        if not ok:
            missed.append("lifetime")
        shown = f"{longest:.1f} s" if isinstance(longest, float) else "?"
        print(
            f"unauth_lifetime {shown:>7}  close codes {codes}; target 1008 within "
            f"{timeout_s:g} s + slack  {'ok' if ok else 'MISSED'}"
        )
    agent_ok = figures["agent_ok"]
    shown_ok = "yes" if agent_ok else "no"
    print(f"agent_served   {shown_ok:>8}          target yes  {'ok' if agent_ok else 'MISSED'}")
    if not agent_ok:
        missed.append("agent")
    if missed:
        sys.exit(f"missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
