"""MLflow tracking: one run per training, the registered campaign model, loading by URI, run comparison.

With nothing configured, runs and the model registry live in a local SQLite store in the working
directory (``sqlite:///<cwd>/mlflow.db``); ``MLFLOW_TRACKING_URI`` or an explicit ``tracking_uri``
(CLI ``--tracking-uri``) point at a team server instead. The registered model is a models-from-code
pyfunc (``omni_ml/_mlflow_model.py``, MLflow 3's recommended form) carrying the fitted
:class:`~omni_ml.campaign.CampaignModel`: histories + as-of date in, campaign table out.

Nothing personal is logged: metrics, parameters, feature descriptions, plots, aggregate evaluation
tables and dataset fingerprints (row counts, date range, content hash) only.
"""

# The package's modules: _store (URI, lock, experiment), _runs (one run and its contents, registration),
# _loading (load by URI, compare runs), _train (train_campaign). Constants and store helpers stay
# importable from omni_ml.tracking as before the split (``X as X``: re-exported).
from omni_ml.tracking._loading import LoadedModel, compare_runs, load_campaign_model
from omni_ml.tracking._runs import ERROR_TAG as ERROR_TAG
from omni_ml.tracking._runs import MODEL_NAME_IN_RUN as MODEL_NAME_IN_RUN
from omni_ml.tracking._runs import TrackedRun, dataset_fingerprint, log_run
from omni_ml.tracking._store import DEFAULT_EXPERIMENT as DEFAULT_EXPERIMENT
from omni_ml.tracking._store import artifact_root, resolve_tracking_uri, use_experiment
from omni_ml.tracking._store import ensure_store as ensure_store
from omni_ml.tracking._store import store_lock as store_lock
from omni_ml.tracking._train import train_campaign

# Public classes report this package as their home (pickles and docs name omni_ml.tracking.X).
LoadedModel.__module__ = TrackedRun.__module__ = __name__

__all__ = [
    "LoadedModel",
    "TrackedRun",
    "artifact_root",
    "compare_runs",
    "dataset_fingerprint",
    "load_campaign_model",
    "log_run",
    "resolve_tracking_uri",
    "train_campaign",
    "use_experiment",
]
