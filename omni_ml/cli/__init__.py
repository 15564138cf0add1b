"""The ``omni-ml`` command line: thin wrappers that parse arguments, call the public API, print summaries.

Every command exits 0 on success, 2 on bad input (a :class:`~omni_ml.exceptions.OmniMLError`)
with the message on stderr, 3 when ``score --fail-on-drift`` stops on a bad health verdict, and 1 on an
unexpected failure.
"""

from __future__ import annotations

import sys

# Importing the command modules registers their commands on ``app``, in this order (the order of ``--help``).
from omni_ml.cli._data import resolve, validate  # isort: skip
from omni_ml.cli._build import simulate, train  # isort: skip
from omni_ml.cli._campaign import features, monitor, score  # isort: skip
from omni_ml.cli._after import feedback, forget, measure  # isort: skip
from omni_ml.cli._app import app, console

__all__ = [
    "app",
    "console",
    "features",
    "feedback",
    "forget",
    "main",
    "measure",
    "monitor",
    "resolve",
    "score",
    "simulate",
    "train",
    "validate",
]


def main() -> None:  # pragma: no cover - console entry point
    """Entry point used by ``python -m omni_ml``."""
    app()
    sys.exit(0)
