"""The inputs and outputs of the MCP tools, as pydantic models: their JSON schemas are what
``tools/list`` shows the LLM, and the descriptions are written for it to act on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = (
    "AgentInfo",
    "AgentsResult",
    "BroadcastInput",
    "BroadcastResult",
    "HistoryInput",
    "Message",
    "MessagesResult",
    "NoInput",
    "ReadInput",
    "SendInput",
    "SendResult",
    "TasksResult",
    "message_of",
)

AgentId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
"""An agent (or task) id as the bridge accepts it."""


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Content(_Input):
    text: str | None = Field(
        None, description="The message as plain text. Give `text` or `payload`, not both."
    )
    payload: dict[str, Any] | None = Field(
        None,
        description="The message as a JSON object (structured data). Give `text` or `payload`, not both.",
    )
    intent: str | None = Field(
        None,
        max_length=256,
        description='What kind of message this is, e.g. "task.request" or "task.result" '
        '(default "agent.message").',
    )
    task_id: str | None = Field(
        None, max_length=256, description="Id of the task this message belongs to (see list_tasks)."
    )

    @model_validator(mode="after")
    def _one_body(self) -> _Content:
        if (self.text is None) == (self.payload is None):
            raise ValueError("give exactly one of `text` (plain text) or `payload` (a JSON object)")
        return self

    def body(self) -> dict[str, Any]:
        return {"text": self.text} if self.payload is None else self.payload

    def fields(self) -> dict[str, Any]:
        found = {"intent": self.intent, "taskId": self.task_id}
        return {k: v for k, v in found.items() if v}


class SendInput(_Content):
    to: AgentId = Field(
        description="Id of the agent to send to (list_agents shows who is connected).",
        min_length=1,
        max_length=256,
    )
    reply_to: AgentId | None = Field(
        None, description="Agent id that replies should go to, if not you.", min_length=1, max_length=256
    )
    queue_if_offline: bool = Field(
        False,
        description="If the recipient is not connected, keep the message for it instead of failing "
        "(it is delivered when that agent connects).",
    )

    def fields(self) -> dict[str, Any]:
        found = super().fields()
        if self.reply_to:
            found["replyTo"] = self.reply_to
        return found


class BroadcastInput(_Content):
    pass


class ReadInput(_Input):
    max: int = Field(20, ge=1, le=100, description="At most this many messages (oldest first).")
    wait_seconds: float = Field(
        0,
        ge=0,
        le=60,
        description="If nothing is unread, wait up to this long for a message to arrive (0 = answer now). "
        "Use it to wait for a reply instead of calling again and again.",
    )


class HistoryInput(_Input):
    limit: int = Field(20, ge=1, le=1000, description="At most this many envelopes (the most recent).")
    agent_id: AgentId | None = Field(
        None, description="Only envelopes from or to this agent.", min_length=1, max_length=256
    )
    task_id: str | None = Field(
        None, description="Only envelopes of this task.", min_length=1, max_length=256
    )
    intent: str | None = Field(
        None, description="Only envelopes with this intent.", min_length=1, max_length=256
    )


class NoInput(_Input):
    pass


class SendResult(BaseModel):
    id: str = Field(description="The envelope id the bridge stored the message under.")
    status: Literal["delivered", "queued"] = Field(
        description="delivered: on the recipient's connection now; queued: kept until it connects."
    )
    to: str


class BroadcastResult(BaseModel):
    id: str
    status: str = Field(description="delivered: sent to every connected agent (and kept for ack-mode ones).")
    recipients: int | None = Field(description="How many agents it was written to, when the bridge says.")


class Message(BaseModel):
    id: str
    sender: str = Field(description="Agent id that sent it (answer with send_message to this id).")
    to: str | None = Field(description="Your id for a direct message; null for a broadcast.")
    intent: str | None
    task_id: str | None
    reply_to: AgentId | None = Field(description="Where the sender wants replies, if not to itself.")
    timestamp: str | None
    text: str | None = Field(description="The text, when the message is plain text.")
    payload: Any = Field(description="The full payload (an object; `{text: …}` for plain text).")


class MessagesResult(BaseModel):
    messages: list[Message]
    remaining: int | None = Field(None, description="Unread messages still waiting after these.")


class AgentInfo(BaseModel):
    id: str
    role: str | None = None
    connected_at: str | None = None
    last_seen: str | None = None
    labels: list[Any] = []


class AgentsResult(BaseModel):
    you: str = Field(description="Your own agent id.")
    agents: list[AgentInfo]


class TasksResult(BaseModel):
    tasks: list[dict[str, Any]]


def message_of(envelope: dict[str, Any]) -> Message:
    payload = envelope.get("payload")
    text = payload.get("text") if isinstance(payload, dict) else None
    return Message(
        id=str(envelope.get("id")),
        sender=str(envelope.get("from")),
        to=envelope.get("to"),
        intent=envelope.get("intent"),
        task_id=envelope.get("taskId"),
        reply_to=envelope.get("replyTo"),
        timestamp=envelope.get("timestamp"),
        text=text if isinstance(text, str) else None,
        payload=payload,
    )
