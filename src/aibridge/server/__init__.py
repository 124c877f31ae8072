"""The bridge server: app factory, agent protocol, routing and stores.

Kept empty on purpose: ``aibridge.server.config`` is imported by the CLI's ``--help`` and must
not pull in Litestar or uvicorn. Import the modules you need directly.
"""
