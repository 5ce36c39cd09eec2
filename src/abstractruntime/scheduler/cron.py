"""Firing cron schedules: what a scheduler's poll cycle does with the schedules that are due.

For each due schedule of a workflow this worker has registered (the others belong to another
worker), ``core.schedules.plan_fires`` says which fire times get a run; each run is created with
the id derived from the schedule's name and the fire time, then the schedule is moved on with an
update conditional on the version read. Why exactly one run per fire time, whatever races:

- two schedulers that read the same due schedule create the same run id: the second creation
  meets the runs' primary key (``RunExistsError``: already fired) and starts nothing;
- a scheduler that dies between creating the run and moving the schedule on leaves the schedule
  due: the next one finds the run there (``RunExistsError`` again) and moves it on;
- the conditional update lets only one of the racers move the schedule on; the loser's update
  matches no row and is dropped (the winner's next fire time is the one kept).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ..core.crashpoints import crash_point
from ..core.runtime import Runtime
from ..core.schedules import Schedule, ScheduleStore, fire_run_id, fire_vars, plan_fires
from ..errors import RunExistsError

logger = logging.getLogger("abstractruntime.scheduler")

#: Schedules read per poll cycle (the rest are due still at the next one, which comes at once).
DUE_SCHEDULES_PER_CYCLE = 100


def schedules_of(runtime: Runtime) -> ScheduleStore | None:
    """The store's schedules; None for a user's store made before schedules existed."""
    schedules: ScheduleStore | None = getattr(runtime.store, "schedules", None)
    return schedules


async def fire(runtime: Runtime, schedule: Schedule, now: datetime) -> int:
    """Start the runs of ``schedule``'s due fire times and move it on; how many runs this call
    created (fire times another scheduler handled first are skipped)."""
    schedules = schedules_of(runtime)
    assert schedules is not None
    workflow = runtime.workflow_registry.get_or_raise(schedule.workflow_id)
    times, next_fire_at = plan_fires(schedule, now)
    created = 0
    last_run_id, last_fired_at = schedule.last_run_id, schedule.last_fired_at
    for fire_at in times:
        run_id = fire_run_id(schedule.name, fire_at)
        try:
            await runtime.start(workflow=workflow, vars=fire_vars(schedule, fire_at), run_id=run_id)
            created += 1
            crash_point("after_fire")
        except RunExistsError:
            logger.debug("schedule %s: %s fired already (run %s)", schedule.name, fire_at, run_id)
        last_run_id, last_fired_at = run_id, fire_at
    moved = await schedules.advance(
        schedule.name,
        schedule.version,
        next_fire_at,
        last_run_id=last_run_id,
        last_fired_at=last_fired_at,
    )
    if not moved:
        logger.debug("schedule %s was moved on by someone else", schedule.name)
    return created


async def fire_due(
    runtime: Runtime, now: datetime, on_error: Callable[[str], None] | None = None
) -> tuple[int, datetime | None, bool]:
    """Fire every due schedule of the runtime's registered workflows; returns how many runs
    were created, the earliest next fire time (None: no schedule of ours), and whether the
    firing of a schedule failed (``on_error`` hears of each)."""
    schedules = schedules_of(runtime)
    if schedules is None:
        return 0, None, False
    workflow_ids = runtime.workflow_registry.ids()
    created, failed = 0, False
    for schedule in await schedules.due(now, DUE_SCHEDULES_PER_CYCLE, workflow_ids):
        try:
            created += await fire(runtime, schedule, now)
        except Exception as exc:
            # One broken schedule (its workflow gone from the registry meanwhile, a database
            # hiccup) must not keep the others from firing; it is due still and tried again.
            logger.exception("schedule %s: firing failed; it is tried again", schedule.name)
            failed = True
            if on_error is not None:
                on_error(f"schedule {schedule.name}: {exc}")
    return created, await schedules.next_fire_at(workflow_ids), failed
