"""Out-of-time back-test of a channel policy: its value off-policy, on decisions it never saw.

A channel model trained on history before a split moment is turned into decisions for the held-out
decision units after it (logged contacts and sampled no-contact units, features as of each unit's own
moment), and the value of those decisions is estimated off-policy (:func:`off_policy_value`: IPS,
SNIPS and DR with bootstrap intervals) from what the historic policy did and what followed. The same
is done for baselines, so a run says how much better than "a random consented channel" or "always
email" the learned policy is expected to be, with intervals, before it ships.

Time: held-out units have their decision moment in ``[split, as_of - window)`` (every outcome window
closes before ``as_of``); the back-test model sees only units whose outcome window closed by ``split``
(decision moment ``< split - window``), so no outcome it learns from happens after a held-out decision.

Value per decision unit, over pausing everyone: ``converted x conversion_value - cost(logged channel)``
as the reward, target minus the all-``no_contact`` policy (paired bootstrap). Consent of a unit comes
from its ``consent_<channel>`` features (as of the unit's moment); units without those columns use the
policy's ``default_consent``. The business rules that need per-unit history (pressure caps, cool-downs,
category and service rules) are not applied: the back-test measures the value rule and the consent mask.
The no-contact units' logging probability is not logged by a campaign tool; it is estimated
(:func:`estimate_logging_probability`, cross-fitted), as is that of a contact logged without
``assignment_probability``, and each result says so (``propensity_source``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from omni_ml.data import NO_CONTACT
from omni_ml.evaluation._offpolicy import OffPolicyResult, estimate_logging_probability, off_policy_value
from omni_ml.exceptions import DataInsufficientError

__all__ = ["BACKTEST_POLICIES", "ChannelBacktest", "channel_backtest"]

BACKTEST_POLICIES = ("learned", "random", "always_email")


@dataclasses.dataclass(frozen=True)
class ChannelBacktest:
    """Off-policy values of the learned channel policy and baselines on held-out decision units.

    Attributes
    ----------
    table
        One row per policy: ``policy``, ``ips``/``snips``/``dr`` with ``*_lo``/``*_hi`` (incremental value
        per decision over pausing everyone, in the currency of ``conversion_value``), ``ess`` (effective
        sample size of the target's weights), ``max_weight``, ``contact_share`` (share of held-out units the
        policy would contact).
    split
        First decision moment of the held-out units.
    n_train, n_holdout
        Decision units used to fit the back-test model and to evaluate.
    n_dropped
        Held-out units on a channel the back-test model could not estimate (too few training rows), left out.
    results
        The full :class:`OffPolicyResult` per policy.
    model
        The back-test's :class:`~omni_ml.models.ChannelModel` (fitted on the units before the split only).
    """

    table: pl.DataFrame
    split: dt.datetime
    n_train: int
    n_holdout: int
    n_dropped: int
    results: dict[str, OffPolicyResult]
    model: Any

    def to_text(self) -> str:
        """A few lines for a terminal: each policy's DR value per decision over pausing, with its interval.

        Examples
        --------
        >>> import polars as pl
        >>> row = {"policy": "learned", "dr": 0.12, "dr_lo": 0.05, "dr_hi": 0.2, "contact_share": 0.3}
        >>> bt = ChannelBacktest(pl.DataFrame([row]), dt.datetime(2024, 11, 13), 900, 400, 0, {}, None)
        >>> print(bt.to_text())
        channel policy off-policy, 400 held-out decisions from 2024-11-13 (value per decision vs pausing, DR, 95% CI):
          learned        +0.1200 [+0.0500, +0.2000]  contacts 30% of decisions
        """
        lines = [
            f"channel policy off-policy, {self.n_holdout:,} held-out decisions from {self.split:%Y-%m-%d} "
            "(value per decision vs pausing, DR, 95% CI):"
        ]
        for row in self.table.iter_rows(named=True):
            lines.append(
                f"  {row['policy']:14s} {row['dr']:+.4f} [{row['dr_lo']:+.4f}, {row['dr_hi']:+.4f}]  "
                f"contacts {row['contact_share']:.0%} of decisions"
            )
        return "\n".join(lines)

    @property
    def metrics(self) -> dict[str, float]:
        """Flat, MLflow-ready: ``offpolicy_<policy>_<estimator>[_lo|_hi]``, ``..._ess`` and unit counts."""
        out: dict[str, float] = {
            "offpolicy_n_train_units": float(self.n_train),
            "offpolicy_n_holdout_units": float(self.n_holdout),
        }
        for row in self.table.iter_rows(named=True):
            name = row["policy"]
            for key, value in row.items():
                if key != "policy" and value is not None:
                    out[f"offpolicy_{name}_{key}"] = float(value)
        return out


def _unit_consent(X: pl.DataFrame, unit_ids: pl.Series, channels: Any, default: bool) -> pl.DataFrame:
    """Consent per unit from its ``consent_<channel>`` features: granted only when the value is 1.

    A missing value (null, or NaN in a float column) is no consent: a cast to Boolean would read NaN as True.
    A channel without a consent column takes ``default``.
    """
    n = unit_ids.len()
    columns = {
        f"consent_{c}": (
            X[f"consent_{c}"].cast(pl.Float64).fill_nan(None).fill_null(0.0) == 1.0
            if f"consent_{c}" in X.columns
            else pl.Series([default] * n, dtype=pl.Boolean)
        )
        for c in channels
    }
    return pl.DataFrame({"customer_id": unit_ids, **columns})


def channel_backtest(
    hist: Any,
    as_of: dt.datetime,
    config: Any = None,
    policy: Any = None,
    *,
    holdout_days: int = 42,
    policies: tuple[str, ...] = BACKTEST_POLICIES,
    n_bootstrap: int = 200,
    seed: int = 0,
    data: Any = None,
) -> ChannelBacktest:
    """Fit the channel model before a split and estimate each policy's value on the units after it.

    Parameters
    ----------
    hist
        Resolved histories with contacts.
    as_of
        End of the data (UTC). Held-out decisions are in ``[as_of - window - holdout_days, as_of - window)``.
    config, policy
        :class:`~omni_ml.models.channel.ChannelConfig` and :class:`~omni_ml.policy.PolicyConfig` (defaults).
    holdout_days
        Length of the held-out decision period.
    policies
        Any of ``"learned"``, ``"random"`` (a uniformly random consented channel), ``"always_email"``.
    n_bootstrap, seed
        Bootstrap of the intervals; seed of the random baseline and the bootstrap.
    data
        The :class:`~omni_ml.models.channel.ChannelTrainingData` at ``as_of`` if already built.

    Raises
    ------
    DataInsufficientError
        Too few decision units before the split or after it.
    """
    from omni_ml.models.channel import ChannelConfig, channel_training_data
    from omni_ml.policy import PolicyConfig, baseline_decisions, decide

    cfg = config or ChannelConfig()
    rules = policy or PolicyConfig()
    unknown = sorted(set(policies) - set(BACKTEST_POLICIES))
    if unknown:
        msg = f"channel_backtest: unknown policies {unknown}; choose from {list(BACKTEST_POLICIES)}."
        raise ValueError(msg)
    units = data if data is not None else channel_training_data(hist, as_of, cfg)
    split = as_of - dt.timedelta(days=cfg.window_days + holdout_days)
    cutoff = units.keys["cutoff"]
    train_end = split - dt.timedelta(days=cfg.window_days)
    train = (cutoff < train_end).to_numpy()
    held = (cutoff >= split).to_numpy()
    if train.sum() == 0 or held.sum() == 0:
        msg = (
            f"channel_backtest: {int(train.sum()):,} decision units before {train_end:%Y-%m-%d} "
            f"and {int(held.sum()):,} from {split:%Y-%m-%d}; both are needed. Hint: lower holdout_days "
            f"(now {holdout_days}) or raise ChannelConfig.lookback_days (now {cfg.lookback_days})."
        )
        raise DataInsufficientError(msg)
    model = cfg.model().fit(
        units.X.filter(pl.Series(train)),
        units.arm.filter(pl.Series(train)),
        units.y[train],
        assignment_probability=units.keys["assignment_probability"].filter(pl.Series(train)),
    )
    arms = model.arms_
    logged_all = units.keys["arm"].to_numpy().astype(str)
    keep = held & np.isin(logged_all, arms)
    X_h, keys_h = units.X.filter(pl.Series(keep)), units.keys.filter(pl.Series(keep))
    logged = logged_all[keep]
    n = keys_h.height

    cost = np.array([0.0, *[rules.cost(c) for c in arms[1:]]])
    arm_index = {a: i for i, a in enumerate(arms)}
    reward = keys_h["converted"].to_numpy() * rules.conversion_value - cost[[arm_index[a] for a in logged]]
    design = keys_h["sample_weight_population"].to_numpy()
    p_logged, source = _logging_probability(X_h, keys_h, logged, design, seed)
    q_hat = model.predict_arm_proba(X_h) * rules.conversion_value - cost

    unit_ids = pl.Series("customer_id", [f"unit{i:08d}" for i in range(n)], dtype=pl.String)
    consent = _unit_consent(X_h, unit_ids, rules.channels, rules.default_consent)
    targets: dict[str, pl.DataFrame] = {}
    for name in policies:
        if name == "learned":
            targets[name] = decide(model.predict_effects(X_h, customer_id=unit_ids), consent, None, rules)
        else:
            targets[name] = baseline_decisions(name, unit_ids, consent, config=rules, seed=seed)  # type: ignore[arg-type]
    pause = np.full(n, NO_CONTACT)
    rows: list[dict[str, Any]] = []
    results: dict[str, OffPolicyResult] = {}
    for name, decisions in targets.items():
        action = unit_ids.to_frame().join(decisions, on="customer_id", how="left", maintain_order="left")
        chosen = action["best_channel"].fill_null(NO_CONTACT).to_numpy().astype(str)
        chosen = np.where(np.isin(chosen, arms), chosen, NO_CONTACT)  # a channel the model could not estimate
        res = off_policy_value(
            logged,
            reward,
            chosen,
            logging_probability=p_logged,
            action_space=arms,
            q_hat=q_hat,
            sample_weight=design,
            baseline=pause,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        res = dataclasses.replace(res, propensity_source=source)  # all finite by now, yet partly estimated
        results[name] = res
        rows.append(_table_row(name, res, chosen, design))
    return ChannelBacktest(
        table=pl.DataFrame(rows),
        split=split,
        n_train=int(train.sum()),
        n_holdout=n,
        n_dropped=int(held.sum()) - n,
        results=results,
        model=model,
    )


def _logging_probability(
    X_h: pl.DataFrame, keys_h: pl.DataFrame, logged: np.ndarray, design: np.ndarray, seed: int
) -> tuple[np.ndarray, str]:
    """P(logged action | unit) per held-out unit, and a sentence on where each came from.

    Contacts carry their logged ``assignment_probability``; no-contact units (and contacts logged without
    one) get a cross-fitted logistic estimate from the unit features.
    """
    paused = logged == NO_CONTACT
    p_logged = keys_h["assignment_probability"].to_numpy().astype(float)
    p_pause = estimate_logging_probability(
        X_h.fill_null(0), np.where(paused, NO_CONTACT, "contact"), sample_weight=design, seed=seed
    )
    # a contact logged without assignment_probability (optional in the data contract): P(its arm | x)
    unlogged = ~paused & np.isnan(p_logged)
    if unlogged.any():
        p_arm = estimate_logging_probability(X_h.fill_null(0), logged, sample_weight=design, seed=seed)
        p_logged = np.where(unlogged, p_arm, p_logged)
    p_logged = np.where(paused, p_pause, p_logged)
    source = (
        f"logged for {int((~paused & ~unlogged).sum()):,} contacted units; estimated (cross-fitted logistic "
        f"regression on the unit features) for {int(paused.sum()):,} no-contact units"
        + (f" and {int(unlogged.sum()):,} contacted units without one" if unlogged.any() else "")
    )
    return p_logged, source


def _table_row(name: str, res: OffPolicyResult, chosen: np.ndarray, design: np.ndarray) -> dict[str, Any]:
    """One row of the back-test table: each estimator's value with its interval, ESS, weights, contact share."""
    return {
        "policy": name,
        **{
            f"{est}{suffix}": float(v)
            for est in ("ips", "snips", "dr")
            for suffix, v in zip(("", "_lo", "_hi"), (getattr(res, est), *getattr(res, f"{est}_ci")), strict=True)
        },
        "ess": float(res.effective_sample_size),
        "max_weight": float(res.max_weight),
        "contact_share": float(np.average(chosen != NO_CONTACT, weights=design)),
    }
