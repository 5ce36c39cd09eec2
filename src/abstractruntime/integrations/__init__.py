"""Integrations with other libraries, one sub-package each (``abstractcore``).

Nothing here is imported by ``import abstractruntime``: an integration's optional dependency is
only needed once you import (and use) that integration.
"""

from __future__ import annotations

__all__: list[str] = []
