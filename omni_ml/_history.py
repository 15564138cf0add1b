"""The training history's length and what it changes: calendar features and calibration map on short histories.

:func:`adapt_to_history` is called by :meth:`omni_ml.campaign.CampaignModel.fit` with the fitted training
cutoffs; :mod:`omni_ml.training` re-exports its names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omni_ml._time import as_utc
from omni_ml.features import FeatureConfig

if TYPE_CHECKING:
    from omni_ml.training import TrainConfig

__all__ = ["SHORT_HISTORY_DAYS", "HistoryChoice", "adapt_to_history"]

#: Training cutoffs spanning fewer days than this (first to last) see no day of the year twice: the
#: ``time_of_year`` family and the calibration map are then left out unless configured
#: (:func:`adapt_to_history`; ``benchmarks/RESULTS.md``, "Propensity on one-year worlds").
SHORT_HISTORY_DAYS = 365
#: The feature family that ``adapt_to_history`` leaves out of short histories.
_CALENDAR_FAMILY = "time_of_year"


@dataclasses.dataclass(frozen=True)
class HistoryChoice:
    """What :func:`adapt_to_history` chose for the length of the training history, and why.

    Attributes
    ----------
    short : bool
        The history was treated as short (cutoffs spanning less than :data:`SHORT_HISTORY_DAYS` days, or
        ``TrainConfig.short_history=True``).
    span_days : int
        Days from the first to the last training cutoff.
    calendar : str
        The ``time_of_year`` family: ``"kept"``, ``"left out"`` (automatic) or ``"as configured"``.
    calibration : str
        The propensity calibration map: ``"kept"``, ``"left out"`` (automatic) or ``"as configured"``.
    reason : str
        One sentence for the training summary.

    Examples
    --------
    >>> choice = HistoryChoice(short=True, span_days=308, calendar="left out", calibration="as configured", reason="")
    >>> choice.params()["short_history"]
    True
    """

    short: bool
    span_days: int
    calendar: str
    calibration: str
    reason: str

    def params(self) -> dict[str, Any]:
        """Flat values for MLflow params (``short_history``, ``short_history_span_days``, ...)."""
        return {
            "short_history": self.short,
            "short_history_span_days": self.span_days,
            "short_history_calendar": self.calendar,
            "short_history_calibration": self.calibration,
        }


def adapt_to_history(config: TrainConfig, cutoffs: Sequence[dt.datetime]) -> tuple[TrainConfig, HistoryChoice]:
    """Leave the calendar features and the calibration map out when the training cutoffs span under a year.

    With cutoffs spanning less than :data:`SHORT_HISTORY_DAYS` days (first to last; e.g. the 12 cutoffs
    2024-01-29..2024-12-02 of a history that starts 2024-01-01) no day of the year is seen twice. The
    ``time_of_year`` features then learn the history's start, not a season (at the first cutoffs only the
    early customers are known, and their purchase rate is high), and the calibration map is fitted on one
    label window whose season the booster never saw a year earlier (a December peak applied to January).
    Both are left out -- the ``time_of_year`` family unless ``config.features`` names the families
    (``families``) or already lists it in ``exclude``, the map (``model["calibration"] = None``) unless
    ``config.model`` sets ``calibration``. Longer spans keep the config as it is.

    Parameters
    ----------
    config
        The training recipe; ``config.short_history`` forces the decision when not ``None``.
    cutoffs
        The fitted training cutoffs (:func:`fit_cutoffs`).

    Returns
    -------
    (TrainConfig, HistoryChoice)
        The config to train with and what was chosen, with the reason.

    Examples
    --------
    >>> from omni_ml.training import TrainConfig, training_cutoffs
    >>> cuts = training_cutoffs("2025-01-01", 30, n=None, first_event="2024-01-01")
    >>> cfg, choice = adapt_to_history(TrainConfig(), cuts)
    >>> cfg.features.exclude, cfg.model["calibration"], choice.span_days
    (('time_of_year',), None, 308)
    >>> cfg, choice = adapt_to_history(TrainConfig(model={"calibration": "sigmoid"}), cuts)
    >>> cfg.model["calibration"], choice.calibration
    ('sigmoid', 'as configured')
    >>> two_years = training_cutoffs("2025-01-01", 30, n=None, first_event="2023-01-01")
    >>> adapt_to_history(TrainConfig(), two_years)[1].short
    False
    """
    moments = sorted(as_utc(c, name="cutoffs") for c in cutoffs)
    span = (moments[-1] - moments[0]).days if moments else 0
    short = span < SHORT_HISTORY_DAYS if config.short_history is None else config.short_history
    features = config.features
    calendar_set = features is not None and (features.families is not None or _CALENDAR_FAMILY in features.exclude)
    calibration_set = "calibration" in config.model
    how = "set by train.short_history" if config.short_history is not None else f"cutoffs span {span} days"
    if not short:
        choice = HistoryChoice(
            short=False,
            span_days=span,
            calendar="as configured" if calendar_set else "kept",
            calibration="as configured" if calibration_set else "kept",
            reason=f"history treated as long ({how}): calendar features and calibration map as configured",
        )
        return config, choice
    changed: dict[str, Any] = {}
    if not calendar_set:
        base = features if features is not None else FeatureConfig()
        changed["features"] = dataclasses.replace(base, exclude=(*base.exclude, _CALENDAR_FAMILY))
    if not calibration_set:
        changed["model"] = {**dict(config.model), "calibration": None}
    left = [
        what
        for what, auto in (
            (f"the {_CALENDAR_FAMILY} features", not calendar_set),
            ("the calibration map", not calibration_set),
        )
        if auto
    ]
    kept = [
        what for what, explicit in (("calendar features", calendar_set), ("calibration", calibration_set)) if explicit
    ]
    reason = (
        f"history treated as short ({how}, under {SHORT_HISTORY_DAYS}: no day of the year is seen twice): "
        + (f"left out {' and '.join(left)}" if left else "nothing left out")
        + (f"; {' and '.join(kept)} as configured" if kept else "")
    )
    choice = HistoryChoice(
        short=True,
        span_days=span,
        calendar="as configured" if calendar_set else "left out",
        calibration="as configured" if calibration_set else "left out",
        reason=reason,
    )
    return dataclasses.replace(config, **changed), choice
