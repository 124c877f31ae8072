"""MCP for aibridge: any MCP-speaking LLM client joins the bridge as an agent.

``aibridge mcp`` serves it over stdio (:mod:`aibridge.mcp.stdio`); the bridge serves it over
Streamable HTTP at ``/mcp`` (:mod:`aibridge.mcp.http`). Both use the official ``mcp`` SDK, which
is imported only by these modules, so nothing else in aibridge pays for it.
"""
