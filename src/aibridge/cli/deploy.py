"""Commands of this family are added by their issue."""

from __future__ import annotations
