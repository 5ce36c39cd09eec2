"""Named crash points: a test hook that kills this process at chosen places. Never active unless
the environment asks for it, and then only in the process that has the variable.

    ABSTRACTRUNTIME_CRASH_POINTS="after_handler=0.02,in_effect=0.02,after_commit@5"

``name=P`` kills the process with probability P each time it passes the point; ``name@N`` kills it
the N-th time (1-based). ``ABSTRACTRUNTIME_CRASH_SEED`` seeds the random choices;
``ABSTRACTRUNTIME_CRASH_LOG`` names a file the point's name is appended to (and fsynced) just
before the kill, so a chaos test can count the kills of each point afterwards.

The points, in the order a step passes them:

- ``after_claim``: a run was claimed (its lease taken), before anything of it ran;
- ``after_handler``: the node handler returned, before its effect or the step's commit;
- ``in_effect``: the effect handler returned (its side effects happened), before the outcome is
  recorded anywhere;
- ``in_group_commit``: SQLite's writer executed a batch of writes, before their COMMIT;
- ``after_commit``: the step is committed, before the next node runs;
- ``after_fire``: a cron schedule's run of a fire time is created, before the schedule moves on.
- ``after_event_stored``: ``emit_event`` stored a buffered event, before it looks for the runs
  waiting on its key.

The kill is SIGKILL: no ``finally``, no cleanup, no flush — as in a power cut of the process.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = (
    "after_claim",
    "after_handler",
    "in_effect",
    "in_group_commit",
    "after_commit",
    "after_fire",
    "after_event_stored",
)
ENV = "ABSTRACTRUNTIME_CRASH_POINTS"
SEED_ENV = "ABSTRACTRUNTIME_CRASH_SEED"
LOG_ENV = "ABSTRACTRUNTIME_CRASH_LOG"


def _parse(spec: str) -> dict[str, tuple[float, int]]:
    """``{point: (probability, nth)}``; a bad spec is a ``ValueError`` naming the points."""
    config: dict[str, tuple[float, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("@") if "@" in item else item.partition("=")
        name = name.strip()
        if name not in POINTS or not sep:
            raise ValueError(
                f"{ENV}: {item!r} is not NAME=PROBABILITY or NAME@N with NAME one of "
                f"{', '.join(POINTS)}"
            )
        try:
            config[name] = (0.0, int(value)) if sep == "@" else (float(value), 0)
        except ValueError:
            raise ValueError(f"{ENV}: {item!r} has no number after {sep!r}") from None
    return config


_CONFIG = _parse(os.environ.get(ENV, ""))
_PASSES = dict.fromkeys(_CONFIG, 0)
_RANDOM = random.Random(os.environ.get(SEED_ENV))


def crash_point(name: str) -> None:
    """Kill this process here if ``ABSTRACTRUNTIME_CRASH_POINTS`` says so (else: nothing)."""
    if not _CONFIG or name not in _CONFIG:
        return
    probability, nth = _CONFIG[name]
    _PASSES[name] += 1
    if _PASSES[name] == nth or (probability and _RANDOM.random() < probability):
        log = os.environ.get(LOG_ENV)
        if log:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name} {os.getpid()}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
