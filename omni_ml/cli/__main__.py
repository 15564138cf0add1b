"""``python -m omni_ml.cli``: the ``omni-ml`` command line."""

from omni_ml.cli import app

app()
