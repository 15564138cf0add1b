"""Reproducible performance scripts, one per measured claim: ``python -m benchmarks.bench_<topic>``.

The benchmarks run on simulated worlds, which hold no personal data: unless a pseudonym key is set,
their anonymous customer ids are plain hashes (``OMNI_ML_UNSALTED=1``, see ``omni_ml._privacy``).
"""

import os

os.environ.setdefault("OMNI_ML_UNSALTED", "1")
