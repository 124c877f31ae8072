"""Fly.io configuration as code: the fly.toml and Dockerfile models, their rules, and the generator."""
