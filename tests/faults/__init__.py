"""Fault tests (issue 11): the real server under real faults, one module per fault."""
