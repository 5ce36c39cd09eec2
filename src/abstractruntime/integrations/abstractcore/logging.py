"""The integration's logger (the original's ``get_logger``): AbstractCore's structured logger
when ``abstractcore`` is installed, else the standard library's."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ._util import abstractcore_available


def get_logger(name: str) -> Any:
    """A logger named ``name``."""
    if not abstractcore_available():
        return logging.getLogger(name)
    structured = importlib.import_module("abstractcore.utils.structured_logging")
    return structured.get_logger(name)
