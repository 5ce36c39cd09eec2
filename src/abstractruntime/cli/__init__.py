"""The ``abstractruntime`` command line: operate a database of runs.

    abstractruntime [--database-url URL] [--json] COMMAND ...

Every command also accepts ``--database-url`` and ``--json`` after its own name. The URL comes
from the option, else ``$ABSTRACTRUNTIME_DATABASE_URL``, else the embedded SQLite file
``./abstractruntime.db``. Human output is aligned tables; ``--json`` prints JSON on stdout. Long
operations show their progress on stderr when it is a terminal.

Exit status: 0 done; 1 a ledger chain is broken (``ledger verify``), or a bug, shown with its
traceback; 2 a user or database error (an ``AbstractRuntimeError``, or bad arguments), printed as
one line (passwords masked), never a traceback.

One module per command (``db``, ``runs``, ``ledger``, ``snapshot``, ``schedules``, ``limits``,
``worker``, ``demo``), each with a ``configure_parser(subparsers, common)`` and a table of its
actions' handlers; ``toplevel`` builds the parser and runs ``main``, which maps errors to exit
statuses (it is not called ``main.py``: ``abstractruntime.cli.main`` is the function); ``output``
prints.
"""

from __future__ import annotations

from .toplevel import main

__all__ = ["main"]
