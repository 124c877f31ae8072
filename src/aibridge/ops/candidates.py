"""Which release a rollback goes to: the newest completed one with another image, never one judged bad.

fly.md §4: pick the newest release whose status is ``complete`` and whose image differs from the
running one (not blindly the second entry). ``aibridge rollback`` and a failed auto-rollback use
the same functions, so both name the same next candidate.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from aibridge.errors import UsageError
from aibridge.ops.flyjson import COMPLETE, Release
from aibridge.ops.record import Judgement

__all__ = ("candidates", "choose_target", "hint", "next_candidate")


def candidates(
    releases: list[Release], running_image: str | None, bad: Collection[str] = ()
) -> list[Release]:
    """Completed releases with an image other than the running one, newest first, one per image.

    Images in ``bad`` (judged bad by aibridge, see :mod:`aibridge.ops.record`) are never
    candidates: flyctl marks a release ``complete`` even when it skipped health checks.
    """
    seen: set[str] = set()
    found = []
    for release in sorted(releases, key=lambda r: r.version, reverse=True):
        image = release.image_ref
        usable = image and image != running_image and image not in seen and image not in bad
        if release.status == COMPLETE and usable:
            seen.add(image)
            found.append(release)
    return found


def next_candidate(
    releases: list[Release], exclude: Collection[str], bad: Collection[str] = ()
) -> Release | None:
    """The newest completed, not-bad release whose image is none of ``exclude``: what to try next."""
    pool = candidates(releases, None, bad)
    return next((r for r in pool if r.image_ref not in exclude), None)


def _next_after(pool: list[Release], target_image: str) -> Release | None:
    return next((r for r in pool if r.image_ref != target_image), None)


def hint(candidate: Release | None) -> str:
    if candidate is None:
        return "there is no other completed release with a different image that was not judged bad"
    command = f"aibridge rollback --to {candidate.version}"
    return f"the next candidate is {candidate.label} ({candidate.image_ref}): `{command}`"


def choose_target(
    releases: list[Release],
    running_image: str | None,
    to: str | None = None,
    bad: Mapping[str, Judgement] | None = None,
) -> tuple[str, Release | None, Release | None]:
    """(image, its release if known, the next candidate after it) for a rollback."""
    bad = bad or {}
    pool = candidates(releases, running_image, bad)
    if to is None:
        if not pool:
            skipped = f" ({len(bad)} image(s) judged bad were skipped)" if bad else ""
            raise UsageError(
                "nothing to roll back to: no completed release with an image other than the running one"
                + skipped
            )
        return pool[0].image_ref, pool[0], _next_after(pool, pool[0].image_ref)
    wanted = to.strip()
    if re.fullmatch(r"v?\d+", wanted):
        version = int(wanted.lstrip("v"))
        release = next((r for r in releases if r.version == version), None)
        if release is None:
            shown = ", ".join(r.label for r in releases[:10]) or "none"
            raise UsageError(f"--to {to}: no release v{version} among the last releases ({shown})")
        older = [r for r in pool if r.version < version]
        if release.status != COMPLETE:
            raise UsageError(
                f"release v{version} never completed (status {release.status or 'unknown'}); "
                + hint(older[0] if older else None)
            )
        if not release.image_ref or release.image_ref == running_image:
            raise UsageError(f"release v{version} runs the image that is live now; " + hint(_first(older)))
        return release.image_ref, release, _next_after(older, release.image_ref)
    if wanted == running_image:
        raise UsageError(f"--to {to}: that image is the one running now")
    known = next((r for r in releases if r.image_ref == wanted), None)
    return wanted, known, _next_after(pool, wanted)


def _first(pool: list[Release]) -> Release | None:
    return pool[0] if pool else None
