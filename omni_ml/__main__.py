"""``python -m omni_ml`` runs the ``omni-ml`` command line."""

from omni_ml.cli import app

app(prog_name="omni-ml")
