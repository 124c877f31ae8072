"""``aibridge send`` and ``aibridge listen``: an agent on the command line (see aibridge.client)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from aibridge.cli._app import app, console, run_command

DEFAULT_URL = "ws://127.0.0.1:8080/ws"

Url = Annotated[str, typer.Option(envvar="AI_BRIDGE_URL", help="Bridge WebSocket URL.")]
Token = Annotated[
    str | None, typer.Option(envvar="AI_BRIDGE_AUTH_TOKEN", help="Bridge token (sent as a Bearer header).")
]


@app.command(help="Send one envelope (to one agent with --to, else to every agent) and wait until stored.")
def send(
    message: Annotated[str, typer.Argument(help="Text, or a JSON object/array sent as the payload.")],
    to: Annotated[str | None, typer.Option(help="Recipient agent id; omit to broadcast.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    agent_id: Annotated[
        str | None, typer.Option("--id", envvar="AGENT_ID", help="Our agent id (default: random).")
    ] = None,
    intent: Annotated[str | None, typer.Option(help="Envelope intent (default agent.message).")] = None,
    task: Annotated[str | None, typer.Option(help="Envelope taskId.")] = None,
) -> None:
    def call() -> None:
        import asyncio

        from aibridge.client import send_once

        envelope_id = asyncio.run(
            send_once(url, message, to=to, client_id=agent_id, token=token, intent=intent, task_id=task)
        )
        console.print(envelope_id, highlight=False)

    run_command(call)


@app.command(help="Register as an agent and print each delivered envelope as one JSON line.")
def listen(
    agent_id: Annotated[str | None, typer.Option("--id", envvar="AGENT_ID", help="Our agent id.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ack: Annotated[bool, typer.Option(help="Acknowledge each envelope (at-least-once delivery).")] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many envelopes.")] = None,
) -> None:
    def call() -> None:
        import asyncio

        from aibridge.client import listen as run_listener

        def show(envelope: dict[str, object]) -> None:
            print(json.dumps(envelope), flush=True)

        asyncio.run(run_listener(url, agent_id, show, token=token, ack=ack, count=count))

    run_command(call)
