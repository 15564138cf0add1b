"""``train_campaign``: fit a campaign model inside one MLflow run and log its back-test, plots and model."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from omni_ml.tracking._runs import TrackedRun, _flat_params, _log_contents, _run
from omni_ml.tracking._store import DEFAULT_EXPERIMENT

if TYPE_CHECKING:
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.data import Histories


def _config_params(obj: Any) -> Any:
    """Plain, loggable values of a (possibly nested) config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _config_params(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _config_params(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_config_params(v) for v in obj)
    if isinstance(obj, list):
        return [_config_params(v) for v in obj]
    return obj


def _feature_table(feature_set: Any) -> pl.DataFrame:
    names = list(feature_set.names)
    return pl.DataFrame(
        {
            "feature": names,
            "family": [feature_set.family_of(n) for n in names],
            "description": [feature_set.describe(n) for n in names],
        }
    )


def train_campaign(
    hist: Histories,
    as_of: str | dt.date | dt.datetime,
    horizon_days: int,
    *,
    config: CampaignConfig | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    register_as: str | None = None,
    alias: str | None = None,
    tracking_uri: str | None = None,
    explain_sample: int = 2000,
    source: str | None = None,
    seed: int = 0,
) -> tuple[CampaignModel, TrackedRun]:
    """Fit a :class:`~omni_ml.campaign.CampaignModel` at ``as_of`` and log it as one MLflow run.

    Logged: parameters (horizon, cutoffs, feature families, model, channel and policy settings),
    every metric of the out-of-time back-test (overall and per cutoff), the channel policy's off-policy
    values on held-out decisions (``offpolicy_<policy>_<ips|snips|dr>[_lo|_hi]`` for the learned policy and
    the random / always-email baselines, table ``channel_policy_offpolicy``), the training set's
    fingerprint as an MLflow dataset, artifacts (feature list with descriptions, gains / lift /
    calibration plots, SHAP beeswarm and family importance computed on a sample of
    ``explain_sample`` customers scored at ``as_of``, evaluation tables), tags (git commit, package
    version) and the campaign pyfunc, registered as ``register_as`` with ``alias`` when given.

    The run starts before the fit, so it spans the whole job; the fit is exactly
    ``CampaignModel(config).fit(hist, as_of, horizon_days=horizon_days)``, the call
    ``omni-ml train --no-tracking`` makes, so both give the same model and metrics (pass the histories
    as loaded: the fit resolves identities as of each training cutoff). When anything inside raises, the
    run ends ``FAILED`` with the error in the tag ``omni_ml.error`` and the exception propagates.

    Returns
    -------
    (CampaignModel, TrackedRun)
    """
    from omni_ml.campaign import CampaignConfig, CampaignModel  # noqa: F811 - the runtime import
    from omni_ml.features import build_features
    from omni_ml.identity import ensure_resolved
    from omni_ml.training import to_utc

    if alias and not register_as:
        msg = "alias given without register_as. Hint: pass --register-as NAME together with --alias."
        raise ValueError(msg)
    moment = to_utc(as_of)
    cfg = config or CampaignConfig()
    train_cfg, channel_cfg = cfg.train, cfg.channel
    title = run_name or f"campaign-{moment:%Y-%m-%d}-h{horizon_days}"
    with _run(experiment, run_name=title, tracking_uri=tracking_uri) as (run, exp, uri):
        import mlflow

        # Known before fitting: a failed fit still shows what was asked for.
        mlflow.log_params(
            _flat_params(
                {
                    "as_of": moment.isoformat(),
                    "horizon_days": horizon_days,
                    "train": _config_params(train_cfg),
                    "channel": _config_params(channel_cfg) if channel_cfg is not None else "disabled",
                }
            )
        )
        # The very call `omni-ml train --no-tracking` makes, on the same (unresolved) histories: the fit
        # resolves identities as of each training cutoff itself.
        model = CampaignModel(cfg).fit(hist, moment, horizon_days=horizon_days)
        report = model.report_

        scoring_rows = build_features(ensure_resolved(hist, moment), moment, feature_set=model.feature_set_)
        if scoring_rows.height > explain_sample:
            scoring_rows = scoring_rows.sample(explain_sample, seed=seed, shuffle=False)
        X = scoring_rows.select(model.propensity_.feature_names_)

        plots = _plots_available()
        figures, tables = _artifacts(model, X, plots=plots)
        choice = getattr(model, "history_choice_", None)
        if choice is not None:  # calendar features / calibration map on a short history (training.adapt_to_history)
            mlflow.log_params(choice.params())
            mlflow.set_tag("omni_ml.history_choice", choice.reason[:5000])
        if not plots:
            mlflow.set_tag("omni_ml.plots", "skipped: matplotlib/shap not installed (pip install 'omni_ml[lab]')")
        params: dict[str, Any] = {
            "channel_model": type(model.channel_model_).__name__ if model.channel_model_ is not None else "none",
            "channel_note": model.channel_note_ or "",
            "policy": _config_params(model.policy_),
            "feature_families": list(model.feature_set_.families()),
            "n_features": len(model.feature_set_.names),
            "propensity": {k: v for k, v in model.propensity_.get_params().items() if not callable(v)},
            "propensity_best_iteration": getattr(model.propensity_, "best_iteration_", None),
        }
        datasets = {"backtest": report.scores.select([c for c in report.scores.columns if c != "oracle"])}
        channel_bt = getattr(model, "channel_backtest_", None)
        if channel_bt is not None:
            tables["channel_policy_offpolicy"] = channel_bt.table
            params["channel_backtest_split"] = channel_bt.split.isoformat()
        info, version, held = _log_contents(
            model,
            uri,
            metrics=model.metrics_,  # propensity back-test + offpolicy_* (merged once, in CampaignModel.fit)
            params=params,
            datasets=datasets,
            figures=figures,
            tables=tables,
            register_as=register_as,
            alias=alias,
            input_example={"histories_path": source, "as_of": moment.date().isoformat()} if source else None,
            series=_training_series(model),
            training_set=getattr(model, "training_set_fingerprint_", None),
            source=source,
            description=_version_description(model),
            version_tags=_version_tags(model),
        )
    return model, TrackedRun(
        run_id=run.info.run_id,
        experiment_id=exp.experiment_id,
        model_uri=info.model_uri,
        registered_name=register_as,
        version=version,
        alias=alias,
        tracking_uri=uri,
        alias_version=held,
    )


def _artifacts(model: Any, X: pl.DataFrame, *, plots: bool) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """The run's figures and tables: back-test plots and tables, features, SHAP on the scored sample ``X``."""
    from omni_ml.explanation import global_importance, plot_beeswarm, plot_importance, plot_waterfall, reason_codes

    report = model.report_
    figures = {f"backtest_{name}": fig for name, fig in report.plot().items()} if plots else {}
    tables = {
        "backtest_per_cutoff": report.per_cutoff,
        "backtest_lift_by_decile": report.lift,
        "backtest_calibration": report.calibration,
        "features": _feature_table(model.feature_set_),
    }
    if X.height:
        if plots:
            figures["shap_beeswarm"] = plot_beeswarm(model.propensity_, X, feature_set=model.feature_set_)
            # one customer's reasons, in pp from the moment's baseline: the likeliest buyer of the sample
            top = int(np.argmax(model.propensity_.predict_proba(X)[:, 1]))
            figures["reasons_waterfall"] = plot_waterfall(model.propensity_, X, row=top, feature_set=model.feature_set_)
            fig = plot_importance(model.propensity_, X, feature_set=model.feature_set_)
            figures["shap_importance_by_family"] = fig
        tables["reason_codes"] = reason_codes(model.channels)
        tables["shap_importance"] = global_importance(model.propensity_, X, feature_set=model.feature_set_)
    return figures, tables


def _plots_available() -> bool:
    """Whether the plotting extra (matplotlib, shap: ``omni_ml[lab]``) is installed."""
    from importlib.util import find_spec

    return find_spec("matplotlib") is not None and find_spec("shap") is not None


def _training_series(model: Any) -> dict[str, list[tuple[int, float, int]]]:
    """Metric histories of a fit: the back-test per cutoff and LightGBM's learning curve.

    Per-cutoff metrics have step = cutoff index and timestamp = the cutoff; the learning curve has
    step = boosting iteration (train and early-stopping parts).
    """
    out: dict[str, list[tuple[int, float, int]]] = {}
    per_cutoff = model.report_.per_cutoff
    if per_cutoff.height and "cutoff" in per_cutoff.columns:
        stamps = per_cutoff.select(pl.col("cutoff").dt.epoch("ms"))["cutoff"].to_list()
        for column in per_cutoff.columns:
            if column == "cutoff" or not per_cutoff[column].dtype.is_numeric():
                continue
            values = per_cutoff[column].cast(pl.Float64).to_list()
            out[f"backtest_by_cutoff/{column}"] = [
                (i, float(v), stamps[i]) for i, v in enumerate(values) if v is not None
            ]
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    for part, curves in (getattr(model.propensity_, "evals_result_", None) or {}).items():
        for metric, values in curves.items():
            out[f"learning_curve/{part}_{metric}"] = [(i + 1, float(v), now) for i, v in enumerate(values)]
    return out


def _version_tags(model: Any) -> dict[str, str]:
    """Registered-version tags: as-of, horizon, features, back-test AUC, channel model."""
    tags = {
        "as_of": model.as_of_.date().isoformat(),
        "horizon_days": str(model.horizon_days_),
        "n_features": str(len(model.feature_set_.names)),
        "feature_families": ",".join(model.feature_set_.families()),
        "channel_model": type(model.channel_model_).__name__ if model.channel_model_ is not None else "none",
    }
    auc = model.metrics_.get("auc")
    if auc is not None and auc == auc:
        tags["backtest_auc"] = f"{auc:.4f}"
    return tags


def _version_description(model: Any) -> str:
    """One paragraph on what this version is, for the registry UI."""
    tags = _version_tags(model)
    auc = tags.get("backtest_auc", "n/a")
    return (
        f"Campaign model trained as of {tags['as_of']} for a {tags['horizon_days']}-day purchase horizon on "
        f"{tags['n_features']} features ({tags['feature_families']}); out-of-time back-test AUC {auc}; "
        f"channel model: {tags['channel_model']}."
    )
