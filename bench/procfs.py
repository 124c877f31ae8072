"""What /proc says of the server process: its memory (RSS) and the CPU time it has used."""

from __future__ import annotations

import os
from pathlib import Path


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU time the server has used so far, all its threads (to judge figures on a busy machine).

    From each thread's ``schedstat`` (nanoseconds): /proc's user + system time counts in clock
    ticks, 10 ms, which is 0.5 µs per delivery over 20,000 envelopes, a twentieth of a direct
    envelope's cost. The server's threads live as long as it does, so none is missed; without
    schedstat (a kernel without scheduler statistics), the tick counts.
    """
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        nanoseconds = sum(int(Path(task, "schedstat").read_text().split()[0]) for task in tasks)
    except (OSError, ValueError, IndexError):
        nanoseconds = 0
    if nanoseconds:
        return nanoseconds / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
