"""The hub's backplane seam: two hubs joined by an in-process backplane act as one bridge.

The Redis backplane is tested on its own (test_backplane.py); this proves what the hub does
with one: announce/withdraw, publish to the holder of an absent recipient, broadcast across,
and the newest registration winning across processes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aibridge.server.config import BridgeConfig
from aibridge.server.hub import CLOSE_REPLACED, Connection, Hub
from aibridge.server.protocol import Registration, build_envelope
from aibridge.server.store.memory import MemoryStore
from aibridge.server.wire import Listener


@dataclass
class Message:
    kind: str
    envelope: dict[str, Any] = field(default_factory=dict)
    exclude_from: str | None = None
    agent_id: str | None = None


class Network:
    """Presence and pub/sub between in-process hubs, as Redis provides between machines."""

    def __init__(self) -> None:
        self.presence: dict[str, str] = {}
        self.hubs: dict[str, Hub] = {}


class LocalBackplane:
    def __init__(self, network: Network, instance: str) -> None:
        self.network = network
        self.instance = instance
        self.healthy = True

    async def announce(self, agent_id: str) -> None:
        previous = self.network.presence.get(agent_id)
        self.network.presence[agent_id] = self.instance
        if previous is not None and previous != self.instance:
            await self.network.hubs[previous].on_remote(Message("claimed", agent_id=agent_id))

    async def withdraw(self, agent_id: str) -> None:
        if self.network.presence.get(agent_id) == self.instance:
            del self.network.presence[agent_id]

    async def locate(self, agent_id: str) -> str | None:
        return self.network.presence.get(agent_id)

    async def publish_direct(self, instance: str, envelope: dict[str, Any]) -> bool:
        await self.network.hubs[instance].on_remote(Message("direct", envelope))
        return True

    async def publish_broadcast(self, envelope: dict[str, Any], exclude_from: str | None) -> None:
        for name, hub in self.network.hubs.items():
            if name != self.instance:
                await hub.on_remote(Message("broadcast", envelope, exclude_from))


class Socket:
    """One agent's wire (what the hub writes through), recording the frames it is handed."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        self.listener: Listener | None = None

    def writable_now(self) -> bool:
        return True

    def buffered(self) -> int:
        return 0

    def write_frames(self, data: bytes) -> bool:
        # Unmasked server text frames, as RFC 6455 §5.2 lays them out.
        while data:
            assert data[0] == 0x81, data[:2]
            size, start = data[1], 2
            if size == 126:
                size, start = int.from_bytes(data[2:4]), 4
            elif size == 127:
                size, start = int.from_bytes(data[2:10]), 10
            self.frames.append(json.loads(data[start : start + size]))
            data = data[start + size :]
        return True

    def close_now(self, code: int, reason: str) -> None:
        self.closed_with = code

    def envelopes(self) -> list[Any]:
        return [f["envelope"]["payload"] for f in self.frames if f["type"] == "envelope"]


async def settle() -> None:
    """Let the loop pass end: each connection writes its frames once per pass."""
    await asyncio.sleep(0)


def registration(client_id: str) -> Registration:
    return Registration(client_id, "agent", [], [], [], 1, None, ack=False, confirm=False)


async def join(hub: Hub, client_id: str) -> Socket:
    socket = Socket()
    conn = Connection(socket, "test", authenticated=True)
    hub.attach(conn)
    await hub.register(conn, registration(client_id))
    await settle()
    return socket


def envelope(sender: str, payload: Any, to: str | None = None) -> tuple[dict[str, Any], str]:
    body = {"payload": payload, **({"to": to} if to else {})}
    return build_envelope(body, sender=sender, role="agent", max_bytes=65536)


def two_hubs() -> tuple[Hub, Hub, Network]:
    network = Network()
    config = BridgeConfig()
    for name in ("east", "west"):
        network.hubs[name] = Hub(config, MemoryStore(config), backplane=LocalBackplane(network, name))
    return network.hubs["east"], network.hubs["west"], network


async def test_direct_envelope_reaches_an_agent_on_the_other_hub() -> None:
    east, west, network = two_hubs()
    await join(east, "alice")
    bob = await join(west, "bob")
    assert network.presence == {"alice": "east", "bob": "west"}
    routed = await east.route(*envelope("alice", "hi bob", to="bob"))
    assert routed.status == "delivered"
    await settle()
    assert bob.envelopes() == ["hi bob"]


async def test_broadcast_crosses_hubs_but_skips_the_sender() -> None:
    east, west, _ = two_hubs()
    alice = await join(east, "alice")
    carol = await join(east, "carol")
    bob = await join(west, "bob")
    await east.route(*envelope("alice", "all"))
    await settle()
    assert carol.envelopes() == ["all"]
    assert bob.envelopes() == ["all"]
    assert alice.envelopes() == []


async def test_newest_registration_wins_across_hubs() -> None:
    east, west, network = two_hubs()
    old = await join(east, "dup")
    await join(west, "dup")
    assert old.closed_with == CLOSE_REPLACED
    assert "dup" not in east.agents
    assert network.presence["dup"] == "west"


async def test_unknown_recipient_is_queued_and_leaving_withdraws_presence() -> None:
    east, _, network = two_hubs()
    await join(east, "alice")
    routed = await east.route(*envelope("alice", "later", to="nobody"))
    assert routed.status == "queued"
    conn = east.agents["alice"]
    await east.detach(conn)
    assert "alice" not in network.presence
