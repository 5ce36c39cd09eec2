"""The original's JSON file stores at its path (``abstractruntime.storage.json_files``); they
live in ``storage.files``."""

from __future__ import annotations

from .files import JsonFileRunStore, JsonlLedgerStore

__all__ = ["JsonFileRunStore", "JsonlLedgerStore"]
