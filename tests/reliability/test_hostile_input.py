"""Hostile input (issue 7.3): property tests over memory, a SQLite file and Postgres.

Every call with hostile data either behaves correctly - what was stored is read back exactly,
huge integers and unicode included - or raises an error of the package's tree (``TypeError``
where the API says so) whose message names the problem (the key path, the field, the limit, the
type). Whatever happens, the run's committed state stays loadable, its ledger chain verifies,
other runs are untouched, and a scheduler on the same store keeps running without errors.

Examples are derandomised (the same ones every run) and few per property, so the file stays fast;
``HYPOTHESIS_PROFILE=explore`` runs many random ones instead.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from abstractruntime import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    Runtime,
    RuntimeConfig,
    SerializationError,
    SizeLimitError,
    Snapshot,
    StepPlan,
    WaitKeyMismatchError,
    WorkflowSpec,
    create_scheduled_runtime,
    verify_ledger_chain,
)
from abstractruntime.core.kernel import MAX_ERROR_CHARS, WAIT_KEY_LIMIT
from abstractruntime.core.snapshot import fold
from abstractruntime.scheduler import ScheduledRuntime
from tests.helpers import eventually, own_vars

settings.register_profile(
    "reliability",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
settings.register_profile(
    "explore", settings.get_profile("reliability"), max_examples=500, derandomize=False
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "reliability"))

# -- strategies --------------------------------------------------------------------------------

#: SQL and LIKE metacharacters, quoting, escapes, and unicode that trips naive code.
METACHARS = [
    "'", '"', "%", "_", ";", "--", "/*", "*/", "\\", "$1", "?", ":x", "[", "]", "(", ")",
    "\t", "\n", "\r", " ", "é", "e\u0301", "É", "ß", "İ", "\U0001d518", "😀", "\u202e",
    "\ufeff", "\u00a0",
]  # fmt: skip
SQL_INJECTIONS = [
    "'; DROP TABLE abstractruntime_runs; --",
    "' OR '1'='1",
    "% OR 1=1",
    "Robert'); DELETE FROM abstractruntime_ledger; --",
    "a_b",
    "a%b",
    "x\\y",
    "::json",
    "$$",
]
#: Text without lone surrogates (those have a test of their own); NUL and controls included.
plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
hostile_text = st.one_of(
    plain_text,
    st.sampled_from(METACHARS + SQL_INJECTIONS),
    st.lists(st.sampled_from(METACHARS), min_size=1, max_size=6).map("".join),
)
keys = st.one_of(hostile_text, st.sampled_from(["a.b", "a..b", ".", "", "0", "__proto__"]))
integers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**400, -(10**4000)]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
json_dicts = st.dictionaries(keys, json_values, max_size=5)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


class Opaque:
    """An object JSON knows nothing about."""


#: (value, a fragment the error must contain). Each is placed at some path inside a dict.
BAD_VALUES: list[tuple[Any, str]] = [
    (float("nan"), "nan is not valid JSON"),
    (float("inf"), "inf is not valid JSON"),
    (float("-inf"), "-inf is not valid JSON"),
    ("ok\ud800", "lone surrogate"),
    ({"\udfff": 1}, "lone surrogate"),
    ({1, 2}, "object of type set"),
    (frozenset(), "object of type frozenset"),
    (b"bytes", "object of type bytes"),
    (Opaque(), "object of type Opaque"),
    (10**5000, "4300 digits"),
    (nested(3000), "levels deep"),
    ({1: "a", "b": 2}, "mix types"),
    ({None: 1, "b": 2}, "mix types"),
    ({(1, 2): 3}, "key (1, 2) of type tuple is not a string"),
]
bad_values = st.sampled_from(BAD_VALUES)
#: Where a bad value sits: a chain of dict keys and list indexes below the top-level key.
bad_paths = st.lists(st.one_of(keys, st.integers(0, 2)), max_size=3)


def segment(key: str | int) -> str:
    """A path segment as errors print it (long keys cut at 40 characters)."""
    if isinstance(key, str) and len(key) > 40:
        return f"[{key[:40]!r}...]"
    return f"[{key!r}]"


def place(value: Any, path: list[Any]) -> tuple[Any, str]:
    """``value`` wrapped so that it sits at ``path``; returns it and the path as printed."""
    shown = "".join(segment(step) for step in path)
    for step in reversed(path):
        value = {step: value} if isinstance(step, str) else [None] * step + [value]
    return value, shown


non_dicts = st.one_of(
    st.lists(json_values, max_size=3),
    st.tuples(st.integers()),
    plain_text,
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.just(b"raw"),
    st.just({1, 2}),
)

# -- helpers -----------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1 == 1.0 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


PAYLOAD_KEY = "__hostile_payload__"


def probe(wait_key: str = "probe:go", workflow_id: str = "probe") -> WorkflowSpec:
    """Waits for ``wait_key`` (payload at ``PAYLOAD_KEY``), then completes with its vars."""

    async def wait(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="wait",
            effect=Effect(EffectType.WAIT_EVENT, {"wait_key": wait_key}, result_key=PAYLOAD_KEY),
            next_node="done",
        )

    def done(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(node_id="done", complete_output={"vars": own_vars(run)})

    return WorkflowSpec(workflow_id, "wait", {"wait": wait, "done": done})


PROBE = probe()


async def healthy(rt: Runtime, run_id: str) -> RunState:
    """The run's committed state loads and its ledger chain verifies."""
    state = await rt.get_state(run_id)
    report = verify_ledger_chain(await rt.get_ledger(run_id))
    assert report["ok"], report
    return state


class Sentinel:
    """A run parked before each example; the example must leave it exactly as it was."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __aenter__(self) -> Sentinel:
        self.run_id, state = await self.rt.run(PROBE, vars={"sentinel": "untouched"})
        assert state.status is RunStatus.WAITING
        self.state = state.to_dict()
        self.ledger = await self.rt.get_ledger(self.run_id)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert (await self.rt.get_state(self.run_id)).to_dict() == self.state
            assert await self.rt.get_ledger(self.run_id) == self.ledger


@pytest.fixture
async def sr(store: Any) -> AsyncIterator[ScheduledRuntime]:
    """A scheduled runtime with its scheduler running on the test's store.

    At the end, the scheduler must have driven every probe run it was left (none is still
    ``running``), still be running, and never have hit an error.
    """
    scheduled = await create_scheduled_runtime(store=store, workflows=[PROBE], poll_interval_s=0.02)
    try:
        yield scheduled
        await eventually(
            lambda: no_running_runs(store), "the scheduler left runs running", timeout=30
        )
        assert scheduled.scheduler.is_running, "the scheduler's task ended"
        assert scheduled.stats.errors == []
    finally:
        await scheduled.stop()


async def no_running_runs(store: Any) -> bool:
    return not await store.list_runs(status=RunStatus.RUNNING, limit=1)


async def count_runs(store: Any) -> int:
    return len(await store.list_runs(limit=1_000_000))


# -- vars --------------------------------------------------------------------------------------


@PROFILE
@given(vars=json_dicts)
@example(vars={"big": 10**4000, "neg": -(2**200), "f": -0.0, "tiny": 5e-324, "huge": 1.7e308})
@example(vars={"deep": nested(300), "nul": "a\x00b", "\x00key": ["\x00"]})
@example(vars={"'; DROP TABLE abstractruntime_runs; --": "%_", "a.b": {"c.d": [1, "x"]}})
async def test_vars_round_trip_exactly(sr: ScheduledRuntime, vars: dict[str, Any]) -> None:
    rt = sr.runtime
    async with Sentinel(rt):
        run_id = await rt.start(workflow=PROBE, vars=vars)  # left to the scheduler
        state = await healthy(rt, run_id)
        # Every run starts with its limits, unless the caller's vars bring their own.
        started = {"_limits": rt.config.to_limits_dict(), **vars}
        assert same(state.vars, started)
        # Driven through a wait and a resume: still exact, in the output too.
        run_id, state = await rt.run(PROBE, vars=vars)
        assert state.status is RunStatus.WAITING
        done = await rt.resume(
            workflow=PROBE, run_id=run_id, wait_key="probe:go", payload={"v": vars}
        )
        assert done.status is RunStatus.COMPLETED, done.error
        stored = await healthy(rt, run_id)
        expected = {**vars, PAYLOAD_KEY: {"v": vars}}
        assert same(stored.vars, {**started, **expected})
        assert same(
            stored.output,
            {"vars": own_vars(RunState.from_dict({**stored.to_dict(), "vars": expected}))},
        )
        assert same((await rt.get_ledger(run_id))[1]["result"], {"v": vars})


@PROFILE
@given(bad=bad_values, key=keys, path=bad_paths)
async def test_vars_that_cannot_be_stored_are_refused_naming_the_key(
    sr: ScheduledRuntime, bad: tuple[Any, str], key: str, path: list[Any]
) -> None:
    rt, (value, why) = sr.runtime, bad
    inner, shown = place(value, path)
    before = await count_runs(rt.store)
    async with Sentinel(rt):
        with pytest.raises(SerializationError) as info:
            await rt.start(workflow=PROBE, vars={"fine": 1, key: inner})
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert why in message
        if why != "levels deep":  # a deep path is printed cut short
            assert message.startswith(f"vars{segment(key)}{shown}"), message
        assert await count_runs(rt.store) == before + 1  # only the sentinel was created


@PROFILE
@given(bad=bad_values, key=keys, path=bad_paths)
async def test_a_node_that_stores_a_bad_value_fails_atomically(
    store: Any, bad: tuple[Any, str], key: str, path: list[Any]
) -> None:
    value, why = bad
    inner, shown = place(value, path)

    def spoil(run: RunState, ctx: Any) -> StepPlan:
        run.vars["kept"] = "no"
        run.vars[key] = inner
        return StepPlan(node_id="spoil", next_node="end")

    wf = WorkflowSpec(
        "spoil",
        "spoil",
        {"spoil": spoil, "end": lambda run, ctx: StepPlan(node_id="end", complete_output={})},
    )
    async with Runtime(store=store) as rt, Sentinel(rt):
        run_id, state = await rt.run(wf, vars={"before": [1, 2]})
        assert state.status is RunStatus.FAILED
        assert state.error is not None and why in state.error
        assert state.error.startswith("node 'spoil': ")
        if why != "levels deep":
            assert state.error.startswith(f"node 'spoil': vars{segment(key)}{shown}"), state.error
        stored = await healthy(rt, run_id)
        assert stored.status is RunStatus.FAILED
        assert own_vars(stored) == {"before": [1, 2]}  # nothing of the failed step is kept
        ledger = await rt.get_ledger(run_id)
        assert ledger[-1]["status"] == "failed" and ledger[-1]["error"] == state.error


async def test_start_refuses_vars_that_are_not_a_dict(store: Any) -> None:
    async with Runtime(store=store) as rt:
        for bad in ([("a", 1)], "vars", 3):
            with pytest.raises(TypeError, match="vars must be a dict, got"):
                await rt.start(workflow=PROBE, vars=bad)  # type: ignore[arg-type]
        assert await count_runs(store) == 0


@PROFILE
@given(
    actor_id=st.none() | hostile_text | st.just("a" * 256),
    session_id=st.none() | hostile_text | st.sampled_from(["s\x00", "é" * 255]),
)
async def test_actor_and_session_ids_round_trip_or_are_refused_by_name(
    sr: ScheduledRuntime, actor_id: str | None, session_id: str | None
) -> None:
    rt = sr.runtime
    before = await count_runs(rt.store)
    async with Sentinel(rt):
        try:
            run_id = await rt.start(workflow=PROBE, actor_id=actor_id, session_id=session_id)
        except SerializationError as exc:
            bad = [
                name
                for name, value in (("actor_id", actor_id), ("session_id", session_id))
                if value is not None and ("\x00" in value or len(value) > 255)
            ]
            assert bad and str(exc).startswith(f"{bad[0]} cannot be stored in its database column")
            assert await count_runs(rt.store) == before + 1
            return
        assert all(v is None or ("\x00" not in v and len(v) <= 255) for v in (actor_id, session_id))
        state = await healthy(rt, run_id)
        assert (state.actor_id, state.session_id) == (actor_id, session_id)


@PROFILE
@given(reason=st.none() | hostile_text | st.sampled_from(["bad \ud800", "r" * 20_000]))
async def test_cancel_reasons_are_kept_or_refused(store: Any, reason: str | None) -> None:
    async with Runtime(store=store, config=RuntimeConfig(max_state_bytes=16_384)) as rt:
        run_id, waiting = await rt.run(PROBE)
        try:
            state = await rt.cancel_run(run_id, reason=reason)
        except SerializationError as exc:  # a reason the state cannot hold: nothing changed
            assert reason is not None and ("surrogate" in str(exc) or "max_state_bytes" in str(exc))
            assert (await healthy(rt, run_id)).to_dict() == waiting.to_dict()
            return
        assert state.status is RunStatus.CANCELLED and state.error == (reason or "cancelled")
        stored = await healthy(rt, run_id)
        assert stored.error == state.error
        assert (await rt.get_ledger(run_id))[-1]["result"] == {"cancelled": True, "reason": reason}


# -- resume payloads ---------------------------------------------------------------------------


@PROFILE
@given(payload=st.one_of(json_dicts, non_dicts, st.none()), bad=st.none() | bad_values)
@example(payload=[{"a": 1}], bad=None)
@example(payload="yes", bad=None)
@example(payload=None, bad=None)
@example(payload={"k": 1}, bad=(float("nan"), "nan is not valid JSON"))
async def test_resume_payloads(
    sr: ScheduledRuntime, payload: Any, bad: tuple[Any, str] | None
) -> None:
    rt = sr.runtime
    if bad is not None and isinstance(payload, dict):
        payload = {**payload, "bad": bad[0]}
    async with Sentinel(rt):
        run_id, state = await rt.run(PROBE)
        waiting = state.to_dict()
        try:
            done = await rt.resume(
                workflow=PROBE, run_id=run_id, wait_key="probe:go", payload=payload
            )
        except TypeError as exc:
            assert not isinstance(payload, dict) and payload is not None
            assert f"resume payload must be a dict, got {type(payload).__name__}" in str(exc)
        except SerializationError as exc:
            assert bad is not None and bad[1] in str(exc)
            assert str(exc).startswith("resume payload['bad']")
        else:
            assert bad is None or not isinstance(payload, dict)
            expected = {} if payload is None else payload
            assert done.status is RunStatus.COMPLETED
            assert same((await healthy(rt, run_id)).vars[PAYLOAD_KEY], expected)
            return
        # Refused: the run still waits, exactly as before, and a good payload resumes it.
        assert (await healthy(rt, run_id)).to_dict() == waiting
        done = await rt.resume(workflow=PROBE, run_id=run_id, wait_key="probe:go", payload={})
        assert done.status is RunStatus.COMPLETED


async def test_emit_event_with_a_payload_that_is_not_a_dict_resumes_nothing(
    sr: ScheduledRuntime,
) -> None:
    run_ids = [(await sr.run(PROBE))[0] for _ in range(3)]
    for payload in (["not", "a", "dict"], "text", 42):
        with pytest.raises(TypeError, match="resume payload must be a dict"):
            await sr.emit_event("probe:go", payload)  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match=r"resume payload\['x'\]"):
        await sr.emit_event("probe:go", {"x": {1, 2}})
    for run_id in run_ids:
        assert (await healthy(sr.runtime, run_id)).status is RunStatus.WAITING
    assert len(await sr.emit_event("probe:go", {"ok": True})) == 3


# -- dotted result keys ------------------------------------------------------------------------

dotted_parts = st.lists(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="."), min_size=1),
    min_size=1,
    max_size=4,
)


@PROFILE
@given(parts=dotted_parts, payload=json_dicts)
async def test_dotted_result_keys_make_nested_dicts(
    store: Any, parts: list[str], payload: dict[str, Any]
) -> None:
    result_key = ".".join(parts)

    def wait(run: RunState, ctx: Any) -> StepPlan:
        return StepPlan(
            node_id="wait",
            effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k"}, result_key=result_key),
        )

    wf = WorkflowSpec("dotted", "wait", {"wait": wait})
    async with Runtime(store=store) as rt:
        run_id, _ = await rt.run(wf)
        await rt.resume(workflow=wf, run_id=run_id, wait_key="k", payload=payload)
        node: Any = (await healthy(rt, run_id)).vars
        for part in parts:
            node = node[part]
        assert same(node, payload)


# -- wait keys ---------------------------------------------------------------------------------

wait_keys = st.one_of(
    hostile_text.filter(bool),
    st.sampled_from(["k" * WAIT_KEY_LIMIT, "é" * WAIT_KEY_LIMIT, "k" * (WAIT_KEY_LIMIT + 1)]),
)


def near_miss(key: str) -> st.SearchStrategy[str]:
    """Keys a sloppy (LIKE, case-folding, trimming, normalising) match would confuse."""
    variants = {
        key + " ",
        " " + key,
        key.upper(),
        key.lower(),
        key.replace("%", "x").replace("_", "y") or "z",
        "%",
        "_",
        key[:-1] or "z",
        key + "%",
        key.replace("e\u0301", "é"),
    }
    variants.discard(key)
    return st.sampled_from(sorted(variants))


def storable(key: str) -> bool:
    return "\x00" not in key and len(key) <= WAIT_KEY_LIMIT


@PROFILE
@given(data=st.data(), key=wait_keys)
@example(data=None, key="%")
@example(data=None, key="_")
@example(data=None, key="a\x00b")
async def test_wait_keys_match_literally(sr: ScheduledRuntime, data: Any, key: str) -> None:
    other = {"%": "_", "_": "%"}.get(key) or (
        data.draw(near_miss(key), label="other") if data is not None else "plain"
    )
    assume(other != key and storable(other))
    rt, tag = sr.runtime, uuid.uuid4().hex[:8]
    wf = sr.registry.register(probe(key, f"probe_key_{tag}"))
    other_wf = sr.registry.register(probe(other, f"probe_other_{tag}"))
    async with Sentinel(rt):
        run_id, state = await rt.run(wf)
        if not storable(key):
            # Refused the same way on every backend, naming the field; the run failed cleanly.
            assert state.status is RunStatus.FAILED
            assert state.error is not None and "waiting.wait_key" in state.error
            assert "NUL" in state.error or f"over the {WAIT_KEY_LIMIT}" in state.error
            assert (await healthy(rt, run_id)).status is RunStatus.FAILED
            return
        assert state.waiting is not None and state.waiting.wait_key == key
        other_id, _ = await rt.run(other_wf)
        assert [s.run_id for s in await rt.store.list_runs(wait_key=key)] == [run_id]
        assert [s.run_id for s in await rt.store.list_runs(wait_key=other)] == [other_id]
        with pytest.raises(WaitKeyMismatchError) as info:
            await rt.resume(workflow=wf, run_id=run_id, wait_key=other, payload={})
        assert repr(key) in str(info.value)
        resumed = await sr.emit_event(key, {"key": key})
        assert [s.run_id for s in resumed] == [run_id]
        assert same((await healthy(rt, run_id)).output, {"vars": {PAYLOAD_KEY: {"key": key}}})
        assert (await healthy(rt, other_id)).status is RunStatus.WAITING
        assert await sr.emit_event(key, {}) == []  # nobody waits on it any more
        assert len(await sr.emit_event(other, {})) == 1


# -- snapshot search ---------------------------------------------------------------------------

#: Snapshot names and searches: metacharacters and unicode, no NUL (a test of its own).
snap_text = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10),
    st.sampled_from(METACHARS + SQL_INJECTIONS),
    st.lists(st.sampled_from([*METACHARS, "a", "b", "100"]), min_size=1, max_size=5).map("".join),
)
snap_names = snap_text.filter(lambda s: bool(s.strip()))


@PROFILE
@given(
    data=st.data(),
    names=st.lists(
        st.tuples(snap_names, st.none() | snap_text, snap_names), min_size=1, max_size=4
    ),
)
@example(data=None, names=[("100% done", None, "a_b"), ("100 percent", "axb", "%")])
async def test_snapshot_search_is_literal(
    store: Any, data: Any, names: list[tuple[str, str | None, str]]
) -> None:
    if data is None:
        queries = ["%", "_", "0% d", "a_b", "%_%", "'", "\\"]
        tags = ["%", "_", "a_b", "A_B"]
    else:
        name_parts = [n for n, _, _ in names] + [d for _, d, _ in names if d]
        queries = [
            data.draw(
                st.one_of(snap_text, st.sampled_from(name_parts).flatmap(substrings)),
                label="query",
            )
        ]
        tags = [data.draw(st.one_of(snap_names, st.sampled_from([t for _, _, t in names])))]
    async with Runtime(store=store) as rt:
        run_id, state = await rt.run(PROBE)
        saved = []
        for name, description, tag in names:
            snap = Snapshot.from_run(run=state, name=name, description=description, tags=[tag])
            await store.snapshots.save(snap)
            saved.append(snap)
        for query in queries:
            found = await store.snapshots.list(run_id=run_id, query=query, limit=None)
            expected = {s.snapshot_id for s in saved if s.matches(query=query)}
            assert {s.snapshot_id for s in found} == expected, query
        for tag in tags:
            found = await store.snapshots.list(run_id=run_id, tag=tag, limit=None)
            expected = {s.snapshot_id for s in saved if s.matches(tag=tag)}
            assert {s.snapshot_id for s in found} == expected, tag
        for snap in saved:  # what was saved is what is read back
            loaded = await store.snapshots.load(snap.snapshot_id)
            assert loaded is not None
            assert (loaded.name, loaded.description, loaded.tags) == (
                snap.name,
                snap.description,
                snap.tags,
            )
        await healthy(rt, run_id)


def substrings(text: str) -> st.SearchStrategy[str]:
    folded = fold(text)
    return st.tuples(st.integers(0, len(folded)), st.integers(0, len(folded))).map(
        lambda ij: folded[min(ij) : max(ij)]
    )


# -- malformed StepPlans -----------------------------------------------------------------------


def _mutated_effect() -> Effect:
    effect = Effect(EffectType.LLM_CALL, {})
    effect.type = "bogus"  # type: ignore[assignment]
    return effect


def _raise(exc: BaseException) -> Any:
    raise exc


#: (name, what node "a" returns (a callable of the run), a fragment the run's error must hold).
BAD_PLANS: list[tuple[str, Callable[[RunState], Any], str]] = [
    ("not a plan", lambda run: {"next_node": "end"}, "returned dict, expected a StepPlan"),
    ("None", lambda run: None, "returned NoneType, expected a StepPlan"),
    ("a list of plans", lambda run: [StepPlan("a", next_node="end")], "returned list"),
    ("empty plan", lambda run: StepPlan("a"), "no effect, next_node or complete_output"),
    ("unknown next_node", lambda run: StepPlan("a", next_node="nowhere"), "not a node of"),
    ("next_node int", lambda run: StepPlan("a", next_node=7), "expected a node id"),
    ("next_node list", lambda run: StepPlan("a", next_node=["end"]), "expected a node id"),
    ("output list", lambda run: StepPlan("a", complete_output=[1]), "expected a dict"),
    ("output str", lambda run: StepPlan("a", complete_output="done"), "expected a dict"),
    ("output with a set", lambda run: StepPlan("a", complete_output={"s": {1}}), "output['s']"),
    ("output nan", lambda run: StepPlan("a", complete_output={"x": math.nan}), "output['x']"),
    ("effect dict", lambda run: StepPlan("a", effect={"type": "wait_event"}), "expected an Effect"),
    ("effect str", lambda run: StepPlan("a", effect="wait_event"), "expected an Effect"),
    ("effect bad type", lambda run: StepPlan("a", effect=_mutated_effect()), "not an EffectType"),
    (
        "payload list",
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_EVENT, [1])),  # type: ignore[arg-type]
        "payload is a list, expected a dict",
    ),
    (
        "result_key int",
        lambda run: StepPlan(
            "a",
            effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k"}, result_key=5),  # type: ignore[arg-type]
        ),
        "result_key 5 is a int",
    ),
    (
        "result_key empty part",
        lambda run: StepPlan(
            "a", effect=Effect(EffectType.WAIT_UNTIL, {"until": "2000-01-01"}, "a..b")
        ),
        "result_key 'a..b' has an empty part",
    ),
    (
        "resume_to_node unknown",
        lambda run: StepPlan(
            "a",
            effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k", "resume_to_node": "gone"}),
            next_node="end",
        ),
        "resumes at node 'gone', which is not a node",
    ),
    (
        "wait_event without key",
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_EVENT, {}), next_node="end"),
        "wait_event requires payload['wait_key']",
    ),
    (
        "wait_event key NUL",
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "a\x00"})),
        "waiting.wait_key cannot be stored in its database column: it holds a NUL",
    ),
    (
        "wait_event key too long",
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k" * 600})),
        "it has 600 characters, over the 512 of its column",
    ),
    (
        "wait_until key int",
        lambda run: StepPlan(
            "a", effect=Effect(EffectType.WAIT_UNTIL, {"until": "2999-01-01", "wait_key": 5})
        ),
        "waiting.wait_key cannot be stored in its database column: it is a int",
    ),
    (
        "wait_until bad time",
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_UNTIL, {"until": [1]})),
        "wait_until payload['until'] is invalid",
    ),
    (
        "ask_user bad choices",
        lambda run: StepPlan("a", effect=Effect(EffectType.ASK_USER, {"choices": "yn"})),
        "choices'] must be a list of strings",
    ),
    (
        "payload too big",
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_EVENT, {"w": "x" * 9_000_000})),
        "over RuntimeConfig.max_payload_bytes",
    ),
    (
        "no handler",
        lambda run: StepPlan("a", effect=Effect(EffectType.LLM_CALL, {}), next_node="end"),
        "no handler for effect 'llm_call'",
    ),
    ("raises", lambda run: _raise(ValueError("boom")), "node 'a' raised ValueError: boom"),
    ("raises KeyError", lambda run: run.vars["missing"], "node 'a' raised KeyError"),
    (
        "raises a huge message",
        lambda run: _raise(RuntimeError("m" * 17_000_000)),
        "more characters cut",
    ),
    (
        "vars get a set",
        lambda run: (run.vars.update(s={1}), StepPlan("a", next_node="end"))[1],
        "vars['s'] cannot be stored as JSON: object of type set",
    ),
    (
        "vars too big",
        lambda run: (run.vars.update(big="b" * 17_000_000), StepPlan("a", next_node="end"))[1],
        "over RuntimeConfig.max_state_bytes",
    ),
]


FIRST_KEY, TOUCHED_KEY = "__first__", "__touched__"


def bad_plan_workflow(
    make: Callable[[RunState], Any], workflow_id: str = "bad_plan"
) -> WorkflowSpec:
    def first(run: RunState, ctx: Any) -> StepPlan:
        run.vars[FIRST_KEY] = "ran"
        return StepPlan(node_id="first", next_node="a")

    def a(run: RunState, ctx: Any) -> Any:
        run.vars[TOUCHED_KEY] = "by the failed step"
        return make(run)

    return WorkflowSpec(
        workflow_id,
        "first",
        {
            "first": first,
            "a": a,
            "end": lambda run, ctx: StepPlan(node_id="end", complete_output={}),
        },
    )


@PROFILE
@given(case=st.sampled_from(BAD_PLANS), vars=json_dicts)
async def test_malformed_plans_fail_the_run_cleanly(
    store: Any, case: tuple[str, Callable[[RunState], Any], str], vars: dict[str, Any]
) -> None:
    name, make, fragment = case
    wf = bad_plan_workflow(make)
    async with Runtime(store=store) as rt, Sentinel(rt):
        run_id, state = await rt.run(wf, vars=vars)
        assert state.status is RunStatus.FAILED, name
        assert state.error is not None and fragment in state.error, (name, state.error[:300])
        assert len(state.error) <= MAX_ERROR_CHARS + 100
        stored = await healthy(rt, run_id)
        assert stored.status is RunStatus.FAILED and stored.error == state.error
        # The state before the failed step: node "first" ran, what node "a" changed is gone.
        expected = {"_limits": rt.config.to_limits_dict(), **vars, FIRST_KEY: "ran"}
        expected.pop(TOUCHED_KEY, None)
        if TOUCHED_KEY in vars:
            expected[TOUCHED_KEY] = vars[TOUCHED_KEY]
        assert same(stored.vars, expected)
        assert (await rt.get_ledger(run_id))[-1]["status"] == "failed"


async def test_malformed_plans_never_take_the_scheduler_down(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Every malformed plan at once, driven by a scheduler: each run fails (once), and the
    scheduler keeps running without an error and then drives a good run to its end."""
    workflows = [bad_plan_workflow(make, f"bad_{i}") for i, (_, make, _) in enumerate(BAD_PLANS)]
    good = probe("after:all", "good")
    async with await create_scheduled_runtime(
        store=store, workflows=[*workflows, good], poll_interval_s=0.02
    ) as sr:
        run_ids = [await sr.start(workflow=wf) for wf in workflows]

        async def all_ended() -> bool:
            states = [await sr.get_state(run_id) for run_id in run_ids]
            return all(state.status.is_terminal for state in states)

        await eventually(all_ended, "a malformed run never ended", timeout=30)
        for run_id, (name, _, fragment) in zip(run_ids, BAD_PLANS, strict=True):
            state = await healthy(sr.runtime, run_id)
            assert state.status is RunStatus.FAILED, name
            assert fragment in (state.error or ""), (name, (state.error or "")[:300])
        assert sr.scheduler.is_running
        assert sr.stats.errors == []
        assert sr.stats.ended_failed == len(BAD_PLANS)  # each failed once, none was retried
        assert sr.stats.runs_failed == 0  # and no drive raised
        good_id = await sr.start(workflow=good)
        await eventually(
            lambda: waiting(sr, good_id),
            "the scheduler stopped driving runs after bad ones",
            timeout=30,
        )
        assert len(await sr.emit_event("after:all", {})) == 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def waiting(sr: ScheduledRuntime, run_id: str) -> bool:
    return (await sr.get_state(run_id)).status is RunStatus.WAITING


# -- 10 MB strings -----------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


@pytest.mark.timeout(60)
async def test_a_10_mb_string_is_stored_intact_or_refused_by_its_limit(store: Any) -> None:
    blob = "0123456789abcdéf" * (TEN_MB // 17)  # 10 MiB as UTF-8, not only ASCII
    assert len(blob.encode()) >= TEN_MB - 64
    # The default max_state_bytes (16 MiB) holds it: stored and read back intact.
    async with Runtime(store=store) as rt:
        run_id, state = await rt.run(PROBE, vars={"blob": blob})
        assert state.status is RunStatus.WAITING
        assert (await healthy(rt, run_id)).vars["blob"] == blob
        # As a resume payload it is over the default max_payload_bytes (8 MiB): refused.
        with pytest.raises(SizeLimitError) as info:
            await rt.resume(
                workflow=PROBE, run_id=run_id, wait_key="probe:go", payload={"blob": blob}
            )
        assert info.value.limit_name == "max_payload_bytes"
        assert "RuntimeConfig.max_payload_bytes = 8.0 MiB" in str(info.value)
        assert (await healthy(rt, run_id)).status is RunStatus.WAITING
    # A lower max_state_bytes refuses it at start, naming the limit; nothing is created.
    runs = await count_runs(store)
    async with Runtime(store=store, config=RuntimeConfig(max_state_bytes=TEN_MB // 2)) as low:
        with pytest.raises(SizeLimitError, match=r"RuntimeConfig.max_state_bytes = 5.0 MiB"):
            await low.start(workflow=PROBE, vars={"blob": blob})
    assert await count_runs(store) == runs
    # Raised limits take it as a payload too, and it comes back intact from the ledger.
    # (The state then holds it four times: in vars and in the output, as var and payload.)
    big = RuntimeConfig(max_state_bytes=5 * TEN_MB, max_payload_bytes=2 * TEN_MB)
    async with Runtime(store=store, config=big) as high:
        done = await high.resume(
            workflow=PROBE, run_id=run_id, wait_key="probe:go", payload={"blob": blob}
        )
        assert done.status is RunStatus.COMPLETED, done.error
        stored = await healthy(high, run_id)
        assert stored.vars[PAYLOAD_KEY]["blob"] == blob
        assert (await high.get_ledger(run_id))[1]["result"]["blob"] == blob


# -- lookups and effects that nothing can store -------------------------------------------------


async def test_looking_up_a_key_with_nul_finds_nothing_everywhere(store: Any) -> None:
    async with await create_scheduled_runtime(
        store=store, workflows=[PROBE], auto_start=False
    ) as sr:
        await sr.run(PROBE)
        assert await sr.emit_event("probe:\x00", {}) == []
        assert await store.list_runs(wait_key="\x00") == []
        assert await sr.find_waiting_runs(workflow_id="probe\x00") == []
        with pytest.raises(KeyError):
            await sr.get_state("run\x00id")


async def test_snapshots_with_nul_are_refused_or_found_consistently(store: Any) -> None:
    async with Runtime(store=store) as rt:
        _, state = await rt.run(PROBE)
        assert await store.snapshots.list(query="a\x00b") == []
        assert await store.snapshots.list(tag="t\x00") == []
        for kwargs in ({"name": "n\x00"}, {"name": "n", "description": "d\x00"}):
            try:
                snap = Snapshot.from_run(run=state, **kwargs)
            except ValueError as exc:
                assert "NUL" in str(exc)
                continue
            await store.snapshots.save(snap)
            loaded = await store.snapshots.load(snap.snapshot_id)
            assert loaded is not None and loaded.name == snap.name


async def test_an_effect_payload_that_is_not_json_fails_the_step(store: Any) -> None:
    wf = bad_plan_workflow(
        lambda run: StepPlan("a", effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "k", "s": {1}}))
    )
    async with Runtime(store=store) as rt:
        run_id, state = await rt.run(wf)
        assert state.status is RunStatus.FAILED
        assert "the payload of effect 'wait_event'['s']" in (state.error or "")
        await healthy(rt, run_id)


async def test_an_exception_message_with_a_lone_surrogate_fails_the_step(store: Any) -> None:
    wf = bad_plan_workflow(lambda run: _raise(ValueError("bad \ud800 text")))
    async with Runtime(store=store) as rt:
        run_id, state = await rt.run(wf)
        assert state.status is RunStatus.FAILED
        assert "bad \\ud800 text" in (state.error or "")
        await healthy(rt, run_id)
