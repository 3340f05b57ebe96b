"""The one exception type of the data layer.

A ``ValueError`` subclass so that callers that validate configs generically still catch
it; every message names the offending path or config option and says how to fix it.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """Bad dataset on disk or bad ``dataset.*`` option; the message names both cause and fix."""
