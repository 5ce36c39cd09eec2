"""``python -m abstractruntime.cli``, the same as the ``abstractruntime`` command."""

from __future__ import annotations

import sys

from .toplevel import main

sys.exit(main())
