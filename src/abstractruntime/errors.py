"""The exception tree of abstractruntime.

    AbstractRuntimeError                  root: catch this to catch everything we raise
    ├── RunNotFoundError (KeyError)       no run has that id
    ├── SnapshotNotFoundError (KeyError)  no snapshot has that id
    ├── ArtifactNotFoundError (KeyError)  no artifact has that id (content hash)
    ├── WorkflowNotFoundError (KeyError)  no workflow of that id is registered
    │   └── WorkflowVersionNotFoundError  it is, but not at the version asked for
    ├── RunExistsError (ValueError)       start() with a run id that is taken
    ├── InvalidArgumentError (ValueError) a caller's argument is wrong (checked before any I/O)
    │   ├── InvalidTypeError (TypeError)  ... of the wrong type (a TypeError too, as before)
    │   ├── AppLoadError                  an app spec (``module:attr``) that names no workflows
    │   └── ArchiveFormatError            a file that is not a readable run archive
    ├── WaitKeyMismatchError (ValueError) resume() named a wait key the run is not waiting on
    ├── RunNotWaitingError (ValueError)   resume() on a run that is not waiting
    │   ├── RunFinishedError              send() to a run that has ended (it never waits again)
    │   └── NotAnswerableError            respond() to a run that waits, but not for an answer
    ├── ConcurrentUpdateError             another runtime committed a step of this run first
    ├── RunLeasedError                    another worker holds the run's lease right now
    ├── SerializationError (ValueError)   a value cannot be stored (names the key or field)
    │   └── SizeLimitError                a state or payload over a RuntimeConfig size limit
    ├── InvalidWorkflowError (ValueError) a WorkflowSpec that cannot run (unknown entry node ...)
    ├── SchemaOutOfDateError              the database is behind (or ahead of) the migrations
    └── StoreError                        the storage backend failed (unreachable database ...)

Errors raised *inside* a step (a node handler that raises, a bad StepPlan, an effect that fails)
are not raised to the caller: the run is left ``failed`` with a readable ``error`` and a ``failed``
ledger record, so one broken run never takes a worker down.

Each error says whether the same call may succeed if made again (``retryable``): True for a
lease held by another worker or a step committed meanwhile (both pass within moments) and for
a store that failed; False for everything the caller must change first.
"""

from __future__ import annotations


class AbstractRuntimeError(Exception):
    """Root of every exception abstractruntime raises."""

    #: Whether making the same call again may succeed (see the module docstring).
    retryable: bool = False


class RunNotFoundError(AbstractRuntimeError, KeyError):
    """No run with this id exists in the store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"unknown run {self.run_id!r}"


class SnapshotNotFoundError(AbstractRuntimeError, KeyError):
    """No snapshot with this id exists in the store."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(snapshot_id)
        self.snapshot_id = snapshot_id

    def __str__(self) -> str:
        return f"unknown snapshot {self.snapshot_id!r}"


class ArtifactNotFoundError(AbstractRuntimeError, KeyError):
    """No artifact with this id (the SHA-256 of its content) exists in the store."""

    def __init__(self, artifact_id: str) -> None:
        super().__init__(artifact_id)
        self.artifact_id = artifact_id

    def __str__(self) -> str:
        return f"unknown artifact {self.artifact_id!r}"


class WorkflowNotFoundError(AbstractRuntimeError, KeyError):
    """No workflow with this id is registered (the message names those that are)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown workflow"


class WorkflowVersionNotFoundError(WorkflowNotFoundError):
    """The workflow is registered, but not at this version."""

    def __init__(self, workflow_id: str, version: str | None, registered: list[str]) -> None:
        super().__init__(workflow_id, version)
        self.workflow_id = workflow_id
        self.version = version
        self.registered = registered

    def __str__(self) -> str:
        return (
            f"workflow {self.workflow_id!r} has no version {self.version!r} registered "
            f"(registered: {', '.join(self.registered)})"
        )


class RunExistsError(AbstractRuntimeError, ValueError):
    """A run with this id exists already (``start(run_id=...)``, a fork, a subworkflow)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"run {self.run_id!r} already exists; pick another run id"


class InvalidArgumentError(AbstractRuntimeError, ValueError):
    """An argument of a call is wrong (a type, a range, a malformed value); nothing was done."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type (a ``TypeError`` too, as the same mistake raised before)."""


class AppLoadError(InvalidArgumentError):
    """An app spec (``--app module:attr``, see ``abstractruntime.app.load_app``) cannot be loaded:
    the module does not import, has no such attribute, or it holds no workflows."""


class ArchiveFormatError(InvalidArgumentError):
    """A file given as a run archive (``runs export``'s) cannot be read as one: it does not
    exist, is not JSON lines, has no archive header, or has a format version this version of
    abstractruntime does not know. A readable archive whose chains are broken is not this:
    ``ledger verify --file`` reports those."""


class WaitKeyMismatchError(AbstractRuntimeError, ValueError):
    """``resume`` named a wait key that is not the one the run waits on."""


class RunNotWaitingError(AbstractRuntimeError, ValueError):
    """``resume`` / ``respond`` was called for a run that is not waiting (already answered,
    done, cancelled). Retrying cannot help: the run has moved on."""


class RunFinishedError(RunNotWaitingError):
    """``send`` named a run that has ended (completed, failed, cancelled): no wait of it could
    ever receive the message, so it is not stored."""


class NotAnswerableError(RunNotWaitingError):
    """``respond`` was called for a run that waits, but not for an answer: until a time (a
    timer or a retry's backoff) or for a child run. It goes on by itself."""


class ConcurrentUpdateError(AbstractRuntimeError):
    """Another runtime committed a step of this run after we loaded it.

    Nothing of ours was committed; reload the run (``get_state``) and decide again.
    """

    retryable = True

    def __init__(self, run_id: str, expected_version: int) -> None:
        super().__init__(
            f"run {run_id!r} was advanced by another runtime (we held version "
            f"{expected_version}); nothing was committed by this call - reload it with "
            "get_state() and retry"
        )
        self.run_id = run_id
        self.expected_version = expected_version


class RunLeasedError(AbstractRuntimeError):
    """Another worker is driving this run right now (it holds the run's lease): an answer
    racing another answer, or a worker's step. Retrying shortly may succeed, or tell that the
    run no longer waits (``RunNotWaitingError``)."""

    retryable = True

    def __init__(self, run_id: str, owner: str | None, until: object) -> None:
        super().__init__(
            f"run {run_id!r} is being driven by {owner or 'another worker'} right now (lease "
            f"until {until}); nothing was done - try again in a moment (retryable)"
        )
        self.run_id = run_id
        self.owner = owner


class SerializationError(AbstractRuntimeError, ValueError):
    """A value cannot be stored; the message names the offending key path or field.

    ``where`` says how it would have been stored: as JSON (the default), or in the indexed
    database column of a field such as the wait key (no NUL character, a bounded length).
    """

    def __init__(self, path: str, reason: str, *, where: str = "as JSON") -> None:
        super().__init__(f"{path} cannot be stored {where}: {reason}")
        self.path = path
        self.reason = reason


class SizeLimitError(SerializationError):
    """A run state or payload is larger than the ``RuntimeConfig`` limit it names."""

    def __init__(self, what: str, size: int, limit_name: str, limit: int) -> None:
        super().__init__(
            what,
            f"it is {_human(size)}, over RuntimeConfig.{limit_name} = {_human(limit)}; keep "
            "large data in artifacts (store.artifacts.put) and pass references",
        )
        self.size = size
        self.limit_name = limit_name
        self.limit = limit


def _human(size: int) -> str:
    return f"{size} bytes" if size < 10_000 else f"{size / 1_048_576:.1f} MiB"


class InvalidWorkflowError(AbstractRuntimeError, ValueError):
    """A workflow spec that cannot run."""


class SchemaOutOfDateError(AbstractRuntimeError):
    """The database schema is not at the revision this version of abstractruntime needs."""


class StoreError(AbstractRuntimeError):
    """The storage backend failed; the message says which database and why."""

    retryable = True
