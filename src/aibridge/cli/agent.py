"""``aibridge send`` and ``aibridge listen``: an agent on the command line (see aibridge.client)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from aibridge.cli._app import app, console, err_console, run_command
from aibridge.errors import UsageError

DEFAULT_URL = "ws://127.0.0.1:8080/ws"

Url = Annotated[str, typer.Option(envvar="AI_BRIDGE_URL", help="Bridge WebSocket URL (ws:// or wss://).")]
Token = Annotated[
    str | None, typer.Option(envvar="AI_BRIDGE_AUTH_TOKEN", help="Bridge token (sent as a Bearer header).")
]


def _checked_url(ctx: typer.Context, url: str) -> str:
    """``url`` validated before anything connects, the error naming where the URL came from."""
    from aibridge.client import check_url

    try:
        return check_url(url)
    except UsageError as error:
        # By name: Typer ships its own copy of click, whose ParameterSource is not click's.
        from_env = getattr(ctx.get_parameter_source("url"), "name", None) == "ENVIRONMENT"
        raise UsageError(f"{'AI_BRIDGE_URL' if from_env else '--url'}: {error.detail}") from None


@app.command(help="Send one envelope (to one agent with --to, else to every agent) and wait until stored.")
def send(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Argument(help='A JSON object/array sent as the payload; any other text as {"text": …}.')
    ],
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

        checked = _checked_url(ctx, url)
        envelope_id = asyncio.run(
            send_once(checked, message, to=to, client_id=agent_id, token=token, intent=intent, task_id=task)
        )
        console.print(envelope_id, highlight=False)

    run_command(call)


def _say_reconnecting(attempt: int, delay: float, reason: str) -> None:
    err_console.print(
        f"reconnecting in {delay:.1f} s (attempt {attempt}): {reason}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@app.command(help="Register as an agent and print each delivered envelope as one JSON line.")
def listen(
    ctx: typer.Context,
    agent_id: Annotated[str | None, typer.Option("--id", envvar="AGENT_ID", help="Our agent id.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ack: Annotated[bool, typer.Option(help="Acknowledge each envelope (at-least-once delivery).")] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many envelopes.")] = None,
) -> None:
    def call() -> None:
        import asyncio

        from aibridge.client import listen as run_listener

        checked = _checked_url(ctx, url)

        def show(envelope: dict[str, object]) -> None:
            print(json.dumps(envelope), flush=True)

        asyncio.run(
            run_listener(
                checked, agent_id, show, token=token, ack=ack, count=count, on_reconnect=_say_reconnecting
            )
        )

    run_command(call)
