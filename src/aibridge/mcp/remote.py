"""The agent behind ``aibridge mcp``: one :class:`aibridge.client.BridgeClient` plus the HTTP API.

The WebSocket registers with ``ack: true`` (the bridge keeps everything until we ack it) and
``confirm: true`` (a send returns once the bridge stored the envelope). It is kept up in the
background with exponential backoff, so the MCP server answers from its first second: while the
bridge is down every tool says so, and nothing the agent was sent meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from aibridge.client import BridgeClient, BridgeClosedError, BridgeRefusedError
from aibridge.errors import AibridgeError, TargetUnreachableError, UsageError
from aibridge.mcp.inbox import Envelope, Inbox, Sent

__all__ = ("RemoteLink", "http_base")

log = logging.getLogger("aibridge.mcp")

SEND_TIMEOUT_S = 15.0
CLOSE_TOO_BIG = 1009


def http_base(ws_url: str) -> str:
    """The HTTP API root of a bridge from its WebSocket URL (``wss://h/ws`` -> ``https://h``)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise UsageError(f"--url {ws_url!r} is not a WebSocket URL like ws://HOST:8080/ws or wss://HOST/ws")
    path = parts.path.removesuffix("/ws").rstrip("/")
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class RemoteLink:
    """An agent on a bridge reached over the network."""

    def __init__(self, url: str, agent_id: str, *, token: str | None, role: str) -> None:
        self.url = url
        self.agent_id = agent_id
        self.inbox = Inbox()
        self.inbox.reack = self._reack
        self._client = BridgeClient(url, agent_id, token=token, role=role, ack=True, confirm=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=http_base(url), headers=headers, timeout=10.0)
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.problem: str | None = "connecting to the bridge"
        """Why the agent is not on the bridge right now (None while it is)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="aibridge-mcp-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.close()
        await self._http.aclose()

    async def _keep_connected(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._client.connect()
            except TargetUnreachableError as error:
                self.problem = f"the bridge is unreachable ({error.detail}); retrying"
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 10.0)
                continue
            except AibridgeError as error:
                # A refused token or id does not get better by retrying: say so on every call.
                self.problem = f"the bridge refused this agent: {error.detail}"
                log.error("%s", self.problem)
                return
            self.problem = None
            log.info("registered on %s as %s", self.url, self.agent_id)
            async for envelope in self._client:  # the client reconnects by itself from here on
                self.inbox.put(envelope)
            code = self._client.close_code
            self.problem = f"the bridge closed our connection for good (code {code})"
            return

    def _check(self) -> None:
        if self.problem is not None or not self._client.connected:
            raise TargetUnreachableError(
                f"not connected to the bridge at {self.url}: {self.problem or 'reconnecting'}. "
                "Nothing was sent; try again in a few seconds."
            )

    def _reack(self, envelope_id: str) -> None:
        if self._client.connected:
            task = asyncio.ensure_future(self.ack([envelope_id]))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- the link --------------------------------------------------------------------------------

    async def send(self, to: str | None, payload: Any, fields: dict[str, Any], require_online: bool) -> Sent:
        self._check()
        if to is not None and require_online:
            online = {str(a.get("id")) for a in await self.agents()}
            if to not in online:
                raise UsageError(_not_online(to, online))
        async with self._send_lock:  # one `accepted` frame answers one send, in order
            sending = asyncio.ensure_future(self._client.send_confirmed(to, payload, **fields))
            try:
                return Sent(*await self._confirmed(sending))
            except BridgeRefusedError as error:
                raise UsageError(f"the bridge refused the message: {error.detail}") from None
            except (TimeoutError, BridgeClosedError):
                raise TargetUnreachableError(
                    f"the bridge at {self.url} did not confirm the message within {SEND_TIMEOUT_S:.0f}s; "
                    "it may not have been stored"
                ) from None
            finally:
                sending.cancel()

    async def _confirmed(self, sending: asyncio.Future[tuple[str, str]]) -> tuple[str, str]:
        """The send's ``(id, status)``; a socket that drops meanwhile fails it at once."""
        deadline = asyncio.get_running_loop().time() + SEND_TIMEOUT_S
        await asyncio.wait([sending], timeout=0.05)
        while not sending.done():
            if not self._client.connected:
                if self._client.close_code == CLOSE_TOO_BIG:
                    raise UsageError(
                        "the message is larger than the bridge accepts (it closed the connection with "
                        "1009, message too big); send less (its limit is AI_BRIDGE_MAX_ENVELOPE_BYTES)"
                    )
                raise TargetUnreachableError(
                    f"the connection to {self.url} dropped while sending; the message may not have been "
                    "stored (check get_history before sending it again)"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError
            await asyncio.wait([sending], timeout=0.05)
        return sending.result()

    async def ack(self, envelope_ids: Sequence[str]) -> None:
        if not envelope_ids:
            return
        try:
            await asyncio.wait_for(self._client.ack(*envelope_ids), 5)
        except (TimeoutError, AibridgeError):
            # Not acked: the bridge replays them on the next registration and _reack settles them.
            log.warning("could not ack %d envelopes; the bridge will redeliver them", len(envelope_ids))
        self.inbox.settled(envelope_ids)

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise TargetUnreachableError(
                f"the bridge's HTTP API at {self._http.base_url} failed: {exc}"
            ) from None
        if response.status_code == 401:
            raise UsageError("the bridge refused the token (HTTP 401): check --token / AI_BRIDGE_AUTH_TOKEN")
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if response.status_code >= 400 or not isinstance(body, dict):
            detail = body.get("error") if isinstance(body, dict) else response.text[:200]
            raise UsageError(f"GET {path} answered HTTP {response.status_code}: {detail}")
        return body

    async def agents(self) -> list[dict[str, Any]]:
        return list((await self._get("/agents")).get("agents", []))

    async def history(
        self, limit: int, agent_id: str | None, task_id: str | None, intent: str | None
    ) -> list[Envelope]:
        query = {"limit": limit, "agentId": agent_id, "taskId": task_id, "intent": intent}
        body = await self._get("/history", {k: v for k, v in query.items() if v is not None})
        return list(body.get("history", []))

    async def tasks(self) -> list[dict[str, Any]]:
        return list((await self._get("/tasks")).get("tasks", []))


def _not_online(to: str, online: set[str]) -> str:
    others = ", ".join(sorted(online)) or "none"
    return (
        f"no agent {to!r} is connected to the bridge (connected: {others}). Check the id with "
        f"list_agents, or pass queue_if_offline=true to keep the message until {to!r} connects."
    )
