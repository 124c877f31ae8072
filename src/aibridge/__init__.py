"""aibridge: a WebSocket bridge for LLM agents, and the ops CLI to run it on Fly.io."""

__version__ = "0.1.0"

__all__ = ("__version__",)
