"""ActorFingerprint: a stable, content-derived actor id that runs and ledgers record."""

from __future__ import annotations

import pytest

from abstractruntime import ActorFingerprint, Runtime, SerializationError
from tests.workflows import APPROVAL


def test_the_id_derives_from_the_description_and_nothing_else() -> None:
    a = ActorFingerprint.from_metadata(kind="agent", display_name="triage", metadata={"v": 2})
    again = ActorFingerprint.from_metadata(kind="agent", display_name="triage", metadata={"v": 2})
    assert a == again and a.actor_id.startswith("ar_") and len(a.actor_id) == 27
    others = [
        ActorFingerprint.from_metadata(kind="human", display_name="triage", metadata={"v": 2}),
        ActorFingerprint.from_metadata(kind="agent", display_name="other", metadata={"v": 2}),
        ActorFingerprint.from_metadata(kind="agent", display_name="triage", metadata={"v": 3}),
        ActorFingerprint.from_metadata(kind="agent", display_name="triage"),
    ]
    assert len({a.actor_id, *(o.actor_id for o in others)}) == 5
    assert ActorFingerprint.from_dict(a.to_dict()) == a


def test_bad_fingerprints_are_refused() -> None:
    with pytest.raises(ValueError, match="actor_id"):
        ActorFingerprint("", "agent")
    with pytest.raises(ValueError, match="kind"):
        ActorFingerprint("ar_x", "")
    with pytest.raises(SerializationError, match=r"actor\['metadata'\]\['f'\]"):
        ActorFingerprint.from_metadata(kind="agent", metadata={"f": object()})


async def test_runs_and_their_ledgers_record_the_actor() -> None:
    actor = ActorFingerprint.from_metadata(kind="service", display_name="billing")
    rt = Runtime()
    run_id, state = await rt.run(APPROVAL, actor_id=actor.actor_id)
    assert state.actor_id == actor.actor_id
    assert {r["actor_id"] for r in await rt.get_ledger(run_id)} == {actor.actor_id}
