"""The cost of telemetry per step: off, OpenTelemetry installed but not configured, and the SDK.

    python -m benchmarks.otel [--runs 300] [--trials 9] [--calls 20000]

Two measures, each printed as JSON lines and a table, per mode:

- **hooks**: what the runtime calls per step, alone: the step, effect and commit hooks (a step
  that performs an effect and commits, as every step of the chain below), on a real run state,
  handle and ledger record; ``--calls`` steps per sample, the median over ``--trials`` samples.
  This is the figure the goal (< 5 µs per step) is about: a shared machine's noise is far
  larger than a few microseconds in the end-to-end measure.
- **end to end**: ``--runs`` runs of the ten-step chain of ``benchmarks.app`` on the in-memory
  store (no I/O, so telemetry is not hidden behind a database); trials of the modes are
  interleaved; the median time per step.

Modes:
    off       no ``instrument()``: the core's no-op hooks (``core/telemetry.py``).
    noop      ``instrument()`` with no SDK configured: OpenTelemetry's API and its no-op
              providers (the state of a process where the ``otel`` extra is installed but no
              exporter is set up).
    sdk       ``instrument()`` with the SDK's providers, spans recorded and dropped (a span
              processor that does nothing), metrics aggregated in memory: for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from abstractruntime import Runtime
from abstractruntime.core import telemetry
from abstractruntime.observability import instrument
from abstractruntime.storage import MemoryStore
from benchmarks.app import CHAIN, EFFECTS, STEPS


def _sdk() -> Callable[[], None]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SpanProcessor())  # records spans, exports none
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrument(tracer_provider, meter_provider)
    return lambda: None


MODES: dict[str, Callable[[], Any]] = {
    "off": lambda: telemetry.install(None),
    "noop": lambda: instrument(),
    "sdk": _sdk,
}


async def _trial(runs: int) -> float:
    """Seconds per step over ``runs`` runs of the chain."""
    async with Runtime(store=MemoryStore(), effect_handlers=EFFECTS) as rt:
        await rt.run(CHAIN)  # warm up
        gc.collect()
        started = time.perf_counter()
        for _ in range(runs):
            await rt.run(CHAIN)
        elapsed = time.perf_counter() - started
    return elapsed / (runs * STEPS)


def _hook_sample(calls: int) -> float:
    """Seconds per step of the hooks alone (the installed telemetry, as the runtime calls it)."""
    from abstractruntime.core import machine
    from abstractruntime.core.models import StepStatus
    from abstractruntime.core.ports import RunHandle
    from abstractruntime.core.serde import utc_now

    state = machine.new_run(CHAIN, {}, now=utc_now())
    state.trace_context = telemetry.current().run_created(state)
    plan = CHAIN.nodes["n0"](state, None)
    effect = plan.effect
    handle = RunHandle(state=state, version=1, seq=0, head=None, state_json="{}", owner="me")

    class Held:
        def __init__(self) -> None:
            self.handle = handle
            self.pending: list[Any] = []

        @property
        def state(self) -> Any:
            return self.handle.state

    held, store = Held(), object()
    record = machine.new_record(state, utc_now(), StepStatus.COMPLETED)
    records = [record]
    current = telemetry.current
    started = time.perf_counter()
    for _ in range(calls):
        hooks = current()
        with hooks.step(held):
            with current().effect(state, effect, 1):
                pass
            with current().commit(store, handle, state, held.pending, records):
                pass
    return (time.perf_counter() - started) / calls


def hooks(calls: int, trials: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(trials):
        for mode, setup in MODES.items():
            setup()
            samples[mode].append(_hook_sample(calls))
    telemetry.install(None)
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    for mode, value in medians.items():
        print(
            json.dumps(
                {
                    "measure": "hooks",
                    "mode": mode,
                    "median_us_per_step": round(value * 1e6, 3),
                    "trials": trials,
                    "steps_per_trial": calls,
                }
            )
        )
    return medians


async def main(runs: int, trials: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(trials):
        for mode, setup in MODES.items():
            setup()
            samples[mode].append(await _trial(runs))
    telemetry.install(None)
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    for mode, value in medians.items():
        print(
            json.dumps(
                {
                    "measure": "end_to_end",
                    "mode": mode,
                    "median_us_per_step": round(value * 1e6, 2),
                    "over_off_us": round((value - medians["off"]) * 1e6, 2),
                    "trials": trials,
                    "steps_per_trial": runs * STEPS,
                }
            )
        )
    return medians


def table(hook: dict[str, float], end: dict[str, float]) -> None:
    print()
    print(f"{'mode':<6} {'hooks µs/step':>14} {'end-to-end µs/step':>19} {'over off':>9}")
    for mode in MODES:
        over = (end[mode] - end["off"]) * 1e6
        print(f"{mode:<6} {hook[mode] * 1e6:>14.3f} {end[mode] * 1e6:>19.1f} {over:>9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    hook_medians = hooks(args.calls, args.trials)
    table(hook_medians, asyncio.run(main(args.runs, args.trials)))
