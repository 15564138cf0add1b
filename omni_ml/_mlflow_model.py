"""MLflow models-from-code definition of the omni_ml campaign model (logged by omni_ml.tracking).

MLflow 3 recommends models-from-code: this file is imported at log time and at load time and ends
with ``mlflow.models.set_model``. The fitted :class:`omni_ml.campaign.CampaignModel` travels as the
artifact ``campaign_model`` (joblib); this wrapper turns "histories + as-of date" into the campaign table.

Input: a pandas DataFrame with one row per job and the columns ``histories_path`` (a histories
directory readable by :func:`omni_ml.load_histories`) and ``as_of`` (ISO date). Params: ``reasons``
(int, reason codes per customer). Output: the campaign table as a pandas DataFrame.
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class CampaignPyfunc(PythonModel):
    """Pyfunc wrapper: raw histories and an as-of date in, campaign table out."""

    def load_context(self, context):  # type: ignore[no-untyped-def]  # MLflow reads these hints: keep none
        """Load the fitted CampaignModel from the run's artifacts, after checking its sha256.

        The checksum is the one recorded in the model's ``model_config`` when it was logged
        (:data:`omni_ml._model_files.PYFUNC_SHA256_KEY`); without it, a ``.sha256`` file beside the
        bundle. A bundle that does not match (swapped, damaged) or has no checksum is refused with
        :class:`~omni_ml.exceptions.ModelNotFoundError` before any of its bytes are unpickled.
        """
        from omni_ml._model_files import PYFUNC_SHA256_KEY, load_verified

        config = getattr(context, "model_config", None) or {}
        expected = config.get(PYFUNC_SHA256_KEY)
        self.campaign_model = load_verified(context.artifacts["campaign_model"], expected_sha256=expected)

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Score each (histories_path, as_of) job and return the concatenated campaign tables."""
        import polars as pl

        from omni_ml.data import load_histories
        from omni_ml.exceptions import SchemaError

        frame = pl.from_pandas(model_input) if not isinstance(model_input, pl.DataFrame) else model_input
        missing = {"histories_path", "as_of"} - set(frame.columns)
        if missing:
            msg = (
                f"model input: missing column(s) {sorted(missing)}; got {frame.columns}. "
                "Hint: pass a DataFrame with histories_path and as_of, one row per scoring job."
            )
            raise SchemaError(msg)
        reasons = int((params or {}).get("reasons", 3))
        tables = []
        for job in frame.iter_rows(named=True):
            hist = load_histories(job["histories_path"])
            tables.append(self.campaign_model.score(hist, str(job["as_of"]), reasons=reasons))
        return pl.concat(tables, how="diagonal_relaxed").to_pandas()


mlflow.models.set_model(CampaignPyfunc())
