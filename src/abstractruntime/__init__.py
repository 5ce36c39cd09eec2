"""AbstractRuntime: durable, asyncio-native workflow runs with a hash-chained ledger.

Importing this package never imports the optional ``abstractcore`` extra.
"""

from __future__ import annotations

from .core.artifacts import (
    Artifact,
    ArtifactMetadata,
    artifact_ref,
    compute_artifact_id,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
)
from .core.config import RuntimeConfig
from .core.effects import EffectOutcome
from .core.identity import ActorFingerprint
from .core.ledger import verify_ledger_chain
from .core.memory import (
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
)
from .core.models import (
    Effect,
    EffectType,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from .core.policy import (
    DefaultEffectPolicy,
    EffectPolicy,
    NoRetryPolicy,
    RetryPolicy,
    compute_idempotency_key,
)
from .core.ports import ArtifactStore, QueryableRunStore, SnapshotStore
from .core.registry import WorkflowRegistry
from .core.runtime import Runtime
from .core.snapshot import Snapshot
from .core.spec import WorkflowSpec
from .core.throttle import Limit
from .errors import (
    AbstractRuntimeError,
    ArtifactNotFoundError,
    ConcurrentUpdateError,
    InvalidArgumentError,
    InvalidTypeError,
    InvalidWorkflowError,
    NotAnswerableError,
    RunExistsError,
    RunFinishedError,
    RunLeasedError,
    RunNotFoundError,
    RunNotWaitingError,
    SchemaOutOfDateError,
    SerializationError,
    SizeLimitError,
    SnapshotNotFoundError,
    StoreError,
    WaitKeyMismatchError,
    WorkflowNotFoundError,
    WorkflowVersionNotFoundError,
)
from .scheduler import ScheduledRuntime, Scheduler, SchedulerStats, create_scheduled_runtime
from .storage.artifact_files import FileArtifactStore
from .storage.files import JsonFileRunStore, JsonlLedgerStore, JsonSnapshotStore
from .storage.ledger_chain import HashChainedLedgerStore

__all__ = [
    "AbstractRuntimeError",
    "ActorFingerprint",
    "Artifact",
    "ArtifactMetadata",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "ConcurrentUpdateError",
    "DefaultEffectPolicy",
    "Effect",
    "EffectOutcome",
    "EffectPolicy",
    "EffectType",
    "FileArtifactStore",
    "HashChainedLedgerStore",
    "InMemoryArtifactStore",
    "InMemoryLedgerStore",
    "InMemoryRunStore",
    "InMemorySnapshotStore",
    "InvalidArgumentError",
    "InvalidTypeError",
    "InvalidWorkflowError",
    "JsonFileRunStore",
    "JsonSnapshotStore",
    "JsonlLedgerStore",
    "Limit",
    "NoRetryPolicy",
    "NotAnswerableError",
    "QueryableRunStore",
    "RetryPolicy",
    "RunExistsError",
    "RunFinishedError",
    "RunLeasedError",
    "RunNotFoundError",
    "RunNotWaitingError",
    "RunState",
    "RunStatus",
    "Runtime",
    "RuntimeConfig",
    "ScheduledRuntime",
    "Scheduler",
    "SchedulerStats",
    "SchemaOutOfDateError",
    "SerializationError",
    "SizeLimitError",
    "Snapshot",
    "SnapshotNotFoundError",
    "SnapshotStore",
    "StepPlan",
    "StepRecord",
    "StepStatus",
    "StoreError",
    "WaitKeyMismatchError",
    "WaitReason",
    "WaitState",
    "WorkflowNotFoundError",
    "WorkflowRegistry",
    "WorkflowSpec",
    "WorkflowVersionNotFoundError",
    "artifact_ref",
    "compute_artifact_id",
    "compute_idempotency_key",
    "create_scheduled_runtime",
    "get_artifact_id",
    "is_artifact_ref",
    "resolve_artifact",
    "verify_ledger_chain",
]
