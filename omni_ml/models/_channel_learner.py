"""The channel learner: :class:`ChannelModel`, per-arm conversion probabilities from LightGBM (S- or T-learner).

The data side (decision units, configuration, fitting from histories) is :mod:`omni_ml.models.channel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from omni_ml.data import NO_CONTACT
from omni_ml.exceptions import ConfigError, DataInsufficientError, SchemaError
from omni_ml.models._common import as_matrix, check_binary_y

__all__ = ["NO_CONTACT", "ChannelModel", "Learner", "Weighting"]

Learner = Literal["s", "t"]
Weighting = Literal["none", "ipw"]


class ChannelModel(BaseEstimator):
    """Per-channel conversion if contacted now and if not contacted (LightGBM inside, scikit-learn outside).

    Parameters
    ----------
    learner
        ``"s"`` (one model, arm as a categorical input) or ``"t"`` (one model per arm).
    weighting
        ``"ipw"``: weight contact rows by ``1 / assignment_probability`` (see the module docstring);
        ``"none"``: unweighted.
    arm_aligned
        S-learner only: add *arm-aligned* copies of per-channel features. A feature that exists once per
        channel (``open_rate_email_90d``, ``open_rate_sms_90d`` ...) gets a column ``arm:open_rate_{arm}_90d``
        holding the value for the arm of the row (missing for ``no_contact``), so what the model learns
        about "people who open this channel respond to it" is shared across channels instead of being
        rebuilt from the arm code by deep interactions.
    max_weight
        Cap of an inverse-probability weight before normalisation.
    n_estimators, learning_rate, num_leaves, min_child_samples, reg_lambda, subsample, colsample_bytree
        LightGBM parameters.
    min_rows_per_arm
        An arm (channel) with fewer training rows is not estimated (its effects are absent).
    random_state
        Seed of LightGBM's bagging and feature sampling.
    n_jobs
        LightGBM threads. Default 1: on a shared, busy 2-core machine two OpenMP threads were measured
        8x slower than one (70 s vs 9 s for 24k rows x 173 features), and one thread is deterministic.

    Attributes
    ----------
    arms_ : list[str]
        ``"no_contact"`` then the channels that could be estimated.
    channels_ : list[str]
        The estimated channels.
    feature_names_ : list[str]
        Feature columns seen at fit time (in order).
    boosters_ : dict[str, lightgbm.Booster]
        ``{"all": booster}`` for the S-learner, one booster per arm for the T-learner.
    n_rows_per_arm_ : dict[str, int]
    arm_offsets_ : dict[str, float]
        Log-odds added to an arm's predicted conversion (set by :meth:`calibrate_arm`; empty after
        :meth:`fit`).
    training_summary_ : dict
        Set by :func:`fit_channel_model`: units per arm, no-contact sampling fraction, windows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n = 3000
    >>> x = rng.normal(size=(n, 2))
    >>> arm = rng.choice(["no_contact", "email", "sms"], size=n)
    >>> p = 0.1 + 0.3 * ((arm == "sms") & (x[:, 0] > 0)) + 0.1 * (arm == "email")
    >>> y = (rng.random(n) < p).astype(int)
    >>> model = ChannelModel(n_estimators=60, random_state=0).fit(x, arm, y)
    >>> eff = model.predict_effects(np.array([[1.0, 0.0], [-1.0, 0.0]]), customer_id=["a", "b"])
    >>> eff.columns
    ['customer_id', 'channel', 'p_if_contacted', 'p_if_not', 'uplift']
    >>> best = eff.sort("uplift", descending=True).group_by("customer_id", maintain_order=True).first()
    >>> dict(best.select("customer_id", "channel").iter_rows())
    {'a': 'sms', 'b': 'email'}
    """

    training_summary_: dict[str, Any]
    feature_set_: Any

    def __init__(
        self,
        *,
        learner: Learner = "s",
        weighting: Weighting = "none",
        arm_aligned: bool = True,
        max_weight: float = 50.0,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 40,
        reg_lambda: float = 1.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_rows_per_arm: int = 30,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.learner = learner
        self.weighting = weighting
        self.arm_aligned = arm_aligned
        self.max_weight = max_weight
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_rows_per_arm = min_rows_per_arm
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1.0 else 0,
            "feature_fraction": self.colsample_bytree,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
        }

    def fit(
        self,
        X: Any,
        arm: Sequence[str] | np.ndarray | pl.Series,
        y: Any,
        *,
        assignment_probability: Any = None,
        sample_weight: Any = None,
    ) -> ChannelModel:
        """Fit on decision units: features ``X``, the arm taken (a channel or ``"no_contact"``) and the outcome.

        Parameters
        ----------
        X
            Numeric features as of each unit's decision moment (polars/pandas frame or 2-D array).
        arm
            ``"no_contact"`` for units without a contact, else the contact's channel.
        y
            Converted (0/1) within the response window.
        assignment_probability
            The logging policy's probability of the logged contact (NaN/None for no-contact units or
            when unknown); used by ``weighting="ipw"``.
        sample_weight
            Optional extra weights (multiplied in).

        Returns
        -------
        ChannelModel
            ``self``, fitted.
        """
        import lightgbm as lgb

        if self.learner not in ("s", "t"):
            msg = f"ChannelModel: learner={self.learner!r} is not one of ['s', 't']."
            raise ConfigError(msg)
        if self.weighting not in ("none", "ipw"):
            msg = f"ChannelModel: weighting={self.weighting!r} is not one of ['none', 'ipw']."
            raise ConfigError(msg)
        matrix, names = as_matrix(X, where="ChannelModel.fit X")
        n = matrix.shape[0]
        arms = np.asarray(arm.to_numpy() if isinstance(arm, pl.Series) else arm).astype(str)
        if arms.shape != (n,):
            msg = f"ChannelModel.fit: {arms.shape[0] if arms.ndim else 0} arms for {n:,} feature rows; they must match."
            raise SchemaError(msg)
        labels = check_binary_y(y, n, where="ChannelModel.fit y")
        if not (arms == NO_CONTACT).any():
            msg = (
                f"ChannelModel.fit: none of the {n:,} units is a {NO_CONTACT!r} unit, so the effect of contacting "
                "cannot be estimated. Hint: add sampled no-contact units (channel_training_data does)."
            )
            raise DataInsufficientError(msg)
        counts = {a: int((arms == a).sum()) for a in sorted(set(arms))}
        channels = [a for a in counts if a != NO_CONTACT and counts[a] >= self.min_rows_per_arm]
        if not channels:
            msg = (
                f"ChannelModel.fit: no channel has at least {self.min_rows_per_arm} contacts (counts: {counts}). "
                "Hint: channel choice needs a contacts table with enough logged contacts per channel."
            )
            raise DataInsufficientError(msg)
        if counts[NO_CONTACT] < self.min_rows_per_arm:
            msg = (
                f"ChannelModel.fit: only {counts[NO_CONTACT]} no-contact units (need {self.min_rows_per_arm}). "
                "Hint: raise pause_ratio."
            )
            raise DataInsufficientError(msg)
        keep = np.isin(arms, [NO_CONTACT, *channels])
        matrix, arms, labels = matrix[keep], arms[keep], labels[keep]
        weight = self._weights(arms, assignment_probability, sample_weight, keep)

        self.arms_ = [NO_CONTACT, *channels]
        self.channels_ = channels
        self.feature_names_ = names
        self.n_features_in_ = len(names)
        self.n_rows_per_arm_ = {a: int((arms == a).sum()) for a in self.arms_}
        self.arm_offsets_: dict[str, float] = {}
        self.positives_per_arm_ = {a: int(labels[arms == a].sum()) for a in self.arms_}
        params = self._params()
        code = {a: i for i, a in enumerate(self.arms_)}
        if self.learner == "s":
            self.aligned_ = _aligned_templates(names, channels) if self.arm_aligned else {}
            arm_code = np.array([code[a] for a in arms], dtype=np.int64)
            data = lgb.Dataset(
                self._s_matrix(matrix, arm_code),
                label=labels,
                weight=weight,
                feature_name=[*_safe_names(names), *(_safe_names(list(self.aligned_))), "arm"],
                categorical_feature=["arm"],
                free_raw_data=True,
            )
            self.boosters_ = {"all": lgb.train(params, data, num_boost_round=self.n_estimators)}
        else:
            self.boosters_ = {}
            for a in self.arms_:
                rows = arms == a
                if labels[rows].min() == labels[rows].max():
                    msg = (
                        f"ChannelModel.fit (T-learner): every outcome of arm {a!r} is {int(labels[rows][0])} "
                        f"({int(rows.sum()):,} rows). Hint: use learner='s' or more history."
                    )
                    raise DataInsufficientError(msg)
                data = lgb.Dataset(
                    matrix[rows], label=labels[rows], weight=weight[rows], feature_name=_safe_names(names)
                )
                self.boosters_[a] = lgb.train(params, data, num_boost_round=self.n_estimators)
        return self

    def _s_matrix(self, matrix: np.ndarray, arm_code: np.ndarray) -> np.ndarray:
        """Features, the arm-aligned columns for each row's arm, and the arm code (last column)."""
        aligned = np.full((matrix.shape[0], len(self.aligned_)), np.nan)
        for j, columns in enumerate(self.aligned_.values()):
            for k, col in enumerate(columns):  # k-th channel = arm code k + 1
                rows = arm_code == k + 1
                aligned[rows, j] = matrix[rows, col]
        return np.column_stack([matrix, aligned, arm_code.astype(np.float64)])

    def _weights(
        self, arms: np.ndarray, assignment_probability: Any, sample_weight: Any, keep: np.ndarray
    ) -> np.ndarray:
        n = arms.shape[0]
        weight = np.ones(n)
        if sample_weight is not None:
            weight *= np.asarray(sample_weight, dtype=np.float64)[keep]
        if self.weighting == "ipw" and assignment_probability is not None:
            raw = assignment_probability
            p = np.asarray(raw.to_numpy() if hasattr(raw, "to_numpy") else raw, dtype=np.float64)[keep]
            p = np.where((arms != NO_CONTACT) & np.isfinite(p) & (p > 0), p, np.nan)
            inv = np.minimum(1.0 / p, self.max_weight)
            for a in set(arms) - {NO_CONTACT}:
                rows = (arms == a) & np.isfinite(inv)
                if rows.any():
                    weight[rows] *= inv[rows] / inv[rows].mean()
        return weight

    # ------------------------------------------------------------------ predict

    def predict_arm_proba(self, X: Any) -> np.ndarray:
        """P(convert | x, arm) for every arm of ``arms_``: an ``(n, len(arms_))`` array.

        An arm with an offset in ``arm_offsets_`` (see :meth:`calibrate_arm`) gets
        ``sigmoid(raw score + offset)``.
        """
        check_is_fitted(self, "boosters_")
        matrix, _ = as_matrix(X, expected=self.feature_names_, where="ChannelModel X")
        out = np.empty((matrix.shape[0], len(self.arms_)))
        offsets = getattr(self, "arm_offsets_", {})  # models pickled before offsets existed have none
        for j, a in enumerate(self.arms_):
            offset = offsets.get(a, 0.0)
            raw = self._arm_score(matrix, j, raw_score=offset != 0.0)
            out[:, j] = expit(raw + offset) if offset != 0.0 else raw
        return out

    def _arm_score(self, matrix: np.ndarray, j: int, *, raw_score: bool) -> np.ndarray:
        """The booster's prediction for arm ``arms_[j]`` on every row (log-odds with ``raw_score``)."""
        if self.learner == "s":
            rows = self._s_matrix(matrix, np.full(matrix.shape[0], j, dtype=np.int64))
            return np.asarray(self.boosters_["all"].predict(rows, raw_score=raw_score), dtype=np.float64)
        return np.asarray(self.boosters_[self.arms_[j]].predict(matrix, raw_score=raw_score), dtype=np.float64)

    def calibrate_arm(self, X: Any, arm: str, y: Any, *, sample_weight: Any = None, max_offset: float = 1.0) -> float:
        """Shift arm ``arm``'s log-odds so its mean predicted conversion on ``X`` equals the observed rate of ``y``.

        Meant for randomised units of that arm (a control group, explored pauses): their outcomes are an
        unbiased sample of the arm's conversion, which the non-randomised training units may not be (the
        sampled no-contact units select on the future; see :mod:`omni_ml.models.channel`). The offset
        ``d`` solves ``sum_i w_i * sigmoid(s_i + d) = sum_i w_i * y_i`` (``s_i`` the arm's raw score,
        ``w_i`` ``sample_weight``) by Newton's method, clipped to ``[-max_offset, max_offset]``, and is
        stored in ``arm_offsets_`` (replacing an earlier one).

        Returns
        -------
        float
            The offset.

        Raises
        ------
        ConfigError
            When ``arm`` is not an estimated arm.
        DataInsufficientError
            When ``y`` is all zeros or all ones (the rate gives no finite offset).
        """
        check_is_fitted(self, "boosters_")
        if arm not in self.arms_:
            msg = f"ChannelModel.calibrate_arm: arm {arm!r} is not estimated; arms: {self.arms_}."
            raise ConfigError(msg)
        matrix, _ = as_matrix(X, expected=self.feature_names_, where="ChannelModel.calibrate_arm X")
        labels = check_binary_y(y, matrix.shape[0], where="ChannelModel.calibrate_arm y")
        weight = np.ones(matrix.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != (matrix.shape[0],) or not (np.isfinite(weight) & (weight >= 0)).all():
            msg = (
                f"ChannelModel.calibrate_arm: sample_weight must hold one finite, non-negative weight per row of X "
                f"({matrix.shape[0]:,} rows; got shape {weight.shape})."
            )
            raise SchemaError(msg)
        target = float(np.sum(weight * labels))
        if target <= 0.0 or target >= float(weight.sum()):
            msg = (
                f"ChannelModel.calibrate_arm: the {matrix.shape[0]:,} units of arm {arm!r} all have outcome "
                f"{int(labels[0]) if labels.size else 0}; an observed rate of 0 or 1 gives no offset. Hint: "
                "calibrate on more units."
            )
            raise DataInsufficientError(msg)
        raw = self._arm_score(matrix, self.arms_.index(arm), raw_score=True)
        offset = 0.0
        for _ in range(50):
            p = expit(raw + offset)
            gap = float(np.sum(weight * p)) - target
            slope = float(np.sum(weight * p * (1.0 - p)))
            step = gap / max(slope, 1e-12)
            offset = float(np.clip(offset - step, -max_offset, max_offset))
            if abs(step) < 1e-10:
                break
        self.arm_offsets_ = {**getattr(self, "arm_offsets_", {}), arm: offset}
        return offset

    def arm_inputs(self, X: Any, channel: str) -> tuple[Any, np.ndarray, Any, np.ndarray]:
        """The booster and input rows of "contact on ``channel``" and of "no contact", for explanations.

        Returns ``(booster_c, x_c, booster_0, x_0)``: for the S-learner the one booster with the arm column
        (and arm-aligned columns) set to ``channel`` and to ``no_contact``; for the T-learner the two arms'
        boosters on the same feature rows. ``booster_c.predict(x_c, raw_score=True) -
        booster_0.predict(x_0, raw_score=True)`` is the log-odds effect of contacting on ``channel`` (before the
        ``arm_offsets_`` of :meth:`calibrate_arm`, which shift it by a constant).
        Column names are :meth:`explanation_names`.
        """
        check_is_fitted(self, "boosters_")
        if channel not in self.channels_:
            msg = f"ChannelModel: channel {channel!r} is not estimated; estimated channels: {self.channels_}."
            raise ConfigError(msg)
        matrix, _ = as_matrix(X, expected=self.feature_names_, where="ChannelModel X")
        if self.learner == "s":
            booster = self.boosters_["all"]
            n = matrix.shape[0]
            code = self.arms_.index(channel)
            contact = self._s_matrix(matrix, np.full(n, code, dtype=np.int64))
            pause = self._s_matrix(matrix, np.zeros(n, dtype=np.int64))
            return booster, contact, booster, pause
        return self.boosters_[channel], matrix, self.boosters_[NO_CONTACT], matrix

    def explanation_names(self, channel: str) -> dict[str, str]:
        """Booster column name -> the feature it shows for ``channel``: ``"arm"`` and aligned columns resolved.

        An arm-aligned column ``arm:open_rate_{arm}_90d`` shows ``open_rate_<channel>_90d``; the arm code
        column maps to ``"arm"``; every other column to its own feature name.
        """
        check_is_fitted(self, "boosters_")
        out = dict(zip(_safe_names(self.feature_names_), self.feature_names_, strict=True))
        for template in getattr(self, "aligned_", {}) if self.learner == "s" else {}:
            out[_safe_names([template])[0]] = template.removeprefix("arm:").replace("{arm}", channel)
        if self.learner == "s":
            out["arm"] = "arm"
        return out

    def predict_effects(self, X: Any, *, customer_id: Sequence[str] | pl.Series | None = None) -> pl.DataFrame:
        """Long frame of per-channel estimates: one row per customer (row of ``X``) and channel.

        Returns
        -------
        polars.DataFrame
            ``customer_id`` (the row number as text when not given), ``channel``, ``p_if_contacted``,
            ``p_if_not``, ``uplift = p_if_contacted - p_if_not``; the input of :func:`omni_ml.policy.decide`.
        """
        proba = self.predict_arm_proba(X)
        n = proba.shape[0]
        ids = (
            pl.Series("customer_id", [str(i) for i in range(n)], dtype=pl.String)
            if customer_id is None
            else pl.Series("customer_id", list(customer_id), dtype=pl.String)
        )
        if ids.len() != n:
            msg = f"customer_id: {ids.len():,} ids for {n:,} feature rows; they must match."
            raise SchemaError(msg)
        k = len(self.channels_)
        p_not = np.repeat(proba[:, 0], k)
        p_contacted = proba[:, 1:].reshape(-1)
        return pl.DataFrame(
            {
                "customer_id": ids.gather(np.repeat(np.arange(n), k)),
                "channel": pl.Series(np.tile(np.asarray(self.channels_, dtype=object), n).tolist(), dtype=pl.String),
                "p_if_contacted": p_contacted,
                "p_if_not": p_not,
                "uplift": p_contacted - p_not,
            }
        )


def _aligned_templates(names: Sequence[str], channels: Sequence[str]) -> dict[str, list[int]]:
    """``{"arm:open_rate_{arm}_90d": [column index for each channel in order]}`` for per-channel features."""
    position = {n: i for i, n in enumerate(names)}
    templates: dict[str, list[int]] = {}
    first = channels[0]
    for name in names:
        for pattern in (f"_{first}_", f"_{first}"):
            if pattern in name and (pattern.endswith("_") or name.endswith(pattern)):
                head, _, tail = name.rpartition(pattern) if not pattern.endswith("_") else name.partition(pattern)
                template = head + pattern.replace(first, "{arm}") + tail
                columns = [position.get(template.replace("{arm}", c)) for c in channels]
                if all(c is not None for c in columns):
                    templates[f"arm:{template}"] = [int(c) for c in columns if c is not None]
                break
    return templates


def _safe_names(names: Sequence[str]) -> list[str]:
    """LightGBM rejects some characters in feature names (JSON special characters)."""
    import re

    return [re.sub(r'[",:\[\]{}]', "_", n) for n in names]
