"""Off-policy evaluation of a channel policy from logged contacts: IPS, self-normalised IPS, doubly robust.

A *unit* is one logged decision: a customer at a moment, the action the historic (logging) policy
took (a channel, or ``no_contact``), the probability it had of taking it (``assignment_probability``)
and the reward that followed (conversion, or value). For a target policy ``pi`` that would have taken
action ``pi(x)``:

- IPS (Horvitz & Thompson 1952; Precup et al. 2000): ``mean(w * r)`` with ``w = pi(a|x) / p0(a|x)``.
  Unbiased when ``p0`` is right and positive wherever ``pi`` acts; high variance with small ``p0``.
- SNIPS (Swaminathan & Joachims 2015): ``sum(w * r) / sum(w)``; slightly biased, far less variance.
- DR (Dudik, Langford & Li 2011): ``mean(sum_a pi(a|x) q(x, a) + w * (r - q(x, a_logged)))`` with an
  outcome model ``q``; unbiased if either ``p0`` or ``q`` is right, and usually the tightest.

Intervals are seeded percentile bootstraps over units (the outcome model is held fixed, so fit it on
other data or cross-fit it). The overlap diagnostic reports how much the estimate leans on few units:
the share of matched units with a tiny logging probability, the effective sample size
``(sum w)^2 / sum w^2`` (Kish) and the largest weight. When the logging probability is absent it is
estimated with a cross-fitted multinomial logistic regression on the given features, and the result
says so (``propensity_source``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from omni_ml.exceptions import DataInsufficientError, SchemaError

__all__ = ["OffPolicyResult", "estimate_logging_probability", "off_policy_value"]


@dataclasses.dataclass(frozen=True)
class OffPolicyResult:
    """Estimated value of a target policy per unit, with intervals and overlap diagnostics.

    ``ips``, ``snips`` and ``dr`` are point estimates of the mean reward per unit under the target
    policy; ``*_ci`` the bootstrap intervals at ``confidence``. ``dr`` is ``nan`` without an outcome model.
    """

    ips: float
    ips_ci: tuple[float, float]
    snips: float
    snips_ci: tuple[float, float]
    dr: float
    dr_ci: tuple[float, float]
    n_units: int
    n_matched: int
    effective_sample_size: float
    max_weight: float
    share_tiny_probability: float
    tiny_probability: float
    propensity_source: str
    confidence: float
    n_bootstrap: int
    seed: int

    @property
    def best(self) -> tuple[str, float, tuple[float, float]]:
        """The estimator to report: DR when an outcome model was given, else SNIPS."""
        if np.isfinite(self.dr):
            return "dr", self.dr, self.dr_ci
        return "snips", self.snips, self.snips_ci

    def to_dict(self) -> dict[str, float | int | str]:
        """Flat ``name -> number|text`` mapping, ready for ``mlflow.log_metrics`` / ``log_params``."""
        out: dict[str, float | int | str] = {}
        for name in ("ips", "snips", "dr"):
            out[f"ope_{name}"] = float(getattr(self, name))
            low, high = getattr(self, f"{name}_ci")
            out[f"ope_{name}_ci_low"] = float(low)
            out[f"ope_{name}_ci_high"] = float(high)
        out.update(
            ope_n_units=self.n_units,
            ope_n_matched=self.n_matched,
            ope_effective_sample_size=float(self.effective_sample_size),
            ope_max_weight=float(self.max_weight),
            ope_share_tiny_probability=float(self.share_tiny_probability),
            ope_tiny_probability=float(self.tiny_probability),
            ope_propensity_source=self.propensity_source,
            ope_confidence=float(self.confidence),
            ope_n_bootstrap=self.n_bootstrap,
            ope_seed=self.seed,
        )
        return out

    def __str__(self) -> str:
        def fmt(v: float, ci: tuple[float, float]) -> str:
            return f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if np.isfinite(v) else "n/a"

        return (
            f"off-policy value per unit ({self.confidence:.0%} bootstrap CI, {self.n_bootstrap} draws):\n"
            f"  IPS   {fmt(self.ips, self.ips_ci)}\n  SNIPS {fmt(self.snips, self.snips_ci)}\n"
            f"  DR    {fmt(self.dr, self.dr_ci)}\n"
            f"  overlap: {self.n_matched:,} of {self.n_units:,} units match the target policy; "
            f"ESS {self.effective_sample_size:,.0f}; max weight {self.max_weight:,.1f}; "
            f"{self.share_tiny_probability:.1%} of matches have p0 < {self.tiny_probability}\n"
            f"  logging probability: {self.propensity_source}"
        )


def _as_1d(values: Any, n: int | None, *, name: str, dtype: Any = np.float64) -> np.ndarray:
    arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values, dtype=dtype)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        msg = f"{name}: expected one value per logged unit ({n:,}), got shape {arr.shape}."
        raise SchemaError(msg)
    return arr


def estimate_logging_probability(
    X: Any,
    actions: Sequence[str] | np.ndarray,
    *,
    sample_weight: Any = None,
    n_folds: int = 5,
    seed: int = 0,
    floor: float = 1e-3,
) -> np.ndarray:
    """Cross-fitted P(logged action | x) from a multinomial logistic regression on standardised features.

    Each unit's probability comes from a model that did not see it (``n_folds`` folds), so the
    estimate is not over-fitted to the logged actions. Probabilities are floored at ``floor``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 1))
    >>> a = np.where(rng.random(400) < 1 / (1 + np.exp(-2 * x[:, 0])), "email", "no_contact")
    >>> p = estimate_logging_probability(x, a)
    >>> bool(p[a == "email"][x[a == "email", 0] > 1].mean() > p[a == "email"][x[a == "email", 0] < -1].mean())
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    acts = np.asarray(actions).astype(str)
    matrix = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float64)
    matrix = np.where(np.isfinite(matrix), matrix, 0.0)
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    labels, y = np.unique(acts, return_inverse=True)
    out = np.empty(acts.shape[0])
    if labels.size == 1:
        out[:] = 1.0
        return out
    folds = min(n_folds, int(np.bincount(y).min()))
    if folds < 2:
        msg = (
            f"cannot estimate the logging probability: the rarest logged action occurs {np.bincount(y).min()} "
            "time(s). Hint: log assignment_probability with each contact, or pass more logged units."
        )
        raise DataInsufficientError(msg)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(matrix, y):
        fit_params = {} if weight is None else {"logisticregression__sample_weight": weight[train]}
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
            matrix[train], y[train], **fit_params
        )
        proba = clf.predict_proba(matrix[test])
        col = {c: i for i, c in enumerate(clf.classes_)}
        out[test] = [proba[k, col[y_k]] if y_k in col else 0.0 for k, y_k in enumerate(y[test])]
    return np.maximum(out, floor)


def _action_names(values: Any, what: str) -> np.ndarray:
    """Action names as text; a missing action (None/NaN) is an error here, not the action ``'None'``."""
    arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if arr.dtype.kind in "Of":  # text arrays cannot hold a missing value; object and float ones can
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in arr.ravel()], dtype=bool)
        if missing.any():
            first = int(np.flatnonzero(missing)[0])
            msg = (
                f"{what}: {int(missing.sum()):,} of {arr.size:,} actions are missing (null), e.g. unit {first}. "
                "Hint: every unit needs an action; a pause is the action 'no_contact'."
            )
            raise SchemaError(msg)
    return arr.astype(str)


def off_policy_value(
    actions: Sequence[str] | np.ndarray,
    rewards: Any,
    target: Any,
    *,
    logging_probability: Any = None,
    action_space: Sequence[str] | None = None,
    q_hat: np.ndarray | None = None,
    X: Any = None,
    sample_weight: Any = None,
    baseline: Any = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    tiny_probability: float = 0.01,
    seed: int = 0,
) -> OffPolicyResult:
    """Estimate a target policy's mean reward per unit from logged decisions (IPS, SNIPS, DR).

    Parameters
    ----------
    actions
        The logged action of each unit (a channel or ``"no_contact"``).
    rewards
        The reward observed after each unit (e.g. converted 0/1, or value net of cost).
    target
        The target policy: the action it takes for each unit (deterministic, shape ``(n,)``), or its
        probability of each action of ``action_space`` (stochastic, shape ``(n, k)``).
    logging_probability
        The logging policy's probability of the logged action (``assignment_probability``). ``None`` or
        NaN entries are estimated from ``X`` with :func:`estimate_logging_probability`.
    action_space
        Names of the actions (columns of a stochastic ``target`` and of ``q_hat``); default: the sorted
        union of logged and target actions.
    q_hat
        Outcome model predictions ``(n, k)``: expected reward of each action for each unit. Enables DR.
    X
        Features of the units, used only to estimate missing logging probabilities.
    sample_weight
        Design weights of the units (e.g. ``1 / sampling fraction`` for subsampled no-contact units);
        every estimate becomes the weighted mean over units. Default: all 1.
    baseline
        Another policy in the same form as ``target``: the estimates become the *difference*
        ``value(target) - value(baseline)`` on the same units, with a paired bootstrap (e.g. the
        incremental value of a policy over pausing everyone). Diagnostics describe ``target``.
    n_bootstrap, confidence, seed
        Percentile bootstrap over units.
    tiny_probability
        Threshold of the overlap diagnostic.

    Returns
    -------
    OffPolicyResult

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> n = 4000
    >>> logged = rng.choice(["email", "no_contact"], size=n, p=[0.3, 0.7])
    >>> p0 = np.where(logged == "email", 0.3, 0.7)
    >>> reward = (rng.random(n) < np.where(logged == "email", 0.2, 0.1)).astype(float)
    >>> res = off_policy_value(logged, reward, np.full(n, "email"), logging_probability=p0, seed=0)
    >>> bool(res.snips_ci[0] < 0.2 < res.snips_ci[1])
    True
    """
    acts = _action_names(actions, "actions")
    n = acts.shape[0]
    if n == 0:
        msg = "off_policy_value: no logged units. Hint: pass the logged contacts (and no-contact units) to evaluate."
        raise DataInsufficientError(msg)
    r = _as_1d(rewards, n, name="rewards")
    if not np.isfinite(r).all():
        msg = f"rewards: {int((~np.isfinite(r)).sum()):,} of {n:,} rewards are null or not finite."
        raise SchemaError(msg)
    tgt = np.asarray(target.to_numpy() if hasattr(target, "to_numpy") else target)
    deterministic = tgt.ndim == 1
    if deterministic:
        tgt = _action_names(tgt, "target")
    names = _action_space(acts, tgt, action_space, baseline)
    index = {a: i for i, a in enumerate(names)}
    unknown = sorted(set(acts) - set(index)) + (sorted(set(tgt) - set(index)) if deterministic else [])
    if unknown:
        msg = f"actions: {unknown[:5]} are not in the action space {names}."
        raise SchemaError(msg)

    pi = _policy_matrix(tgt, "target", names, n)
    pi_base = None if baseline is None else _policy_matrix(baseline, "baseline", names, n)
    a_idx = np.array([index[a] for a in acts])

    if sample_weight is not None:
        _check_design(sample_weight, n)
    p0, source = _logging_probabilities(logging_probability, X, acts, sample_weight=sample_weight, seed=seed)

    w = pi[np.arange(n), a_idx] / p0
    w_base = None if pi_base is None else pi_base[np.arange(n), a_idx] / p0
    design = np.ones(n) if sample_weight is None else _as_1d(sample_weight, n, name="sample_weight")
    base = None if pi_base is None or w_base is None else (pi_base, w_base)
    dr_terms = _dr_terms(q_hat, r, a_idx, (pi, w), base, names)

    def estimates(idx: np.ndarray | None) -> tuple[float, float, float]:
        return _estimates(idx, r, design, (w, w_base), dr_terms)

    point = estimates(None)
    rng = np.random.default_rng(seed)
    draws = np.array([estimates(np.asarray(rng.integers(0, n, n))) for _ in range(n_bootstrap)])
    alpha = (1.0 - confidence) / 2.0
    unmatched = int((~np.isfinite(draws[:, 1])).sum())
    if unmatched:  # SNIPS is undefined on a draw without a unit the policy agrees with: the interval ignores it
        warnings.warn(
            f"off_policy_value: {unmatched:,} of {n_bootstrap:,} bootstrap draws had no unit whose logged action the "
            f"policy takes (only {int((w > 0).sum()):,} of {n:,} units match); the SNIPS interval is over the other "
            "draws and understates the uncertainty. Hint: the overlap is too thin for this policy; log more "
            "diverse decisions or evaluate on more units.",
            UserWarning,
            stacklevel=2,
        )

    matched = w > 0
    dw = design * w
    ess = float(dw.sum() ** 2 / np.square(dw).sum()) if matched.any() else 0.0
    return OffPolicyResult(
        ips=point[0],
        ips_ci=_interval(draws[:, 0], alpha),
        snips=point[1],
        snips_ci=_interval(draws[:, 1], alpha),
        dr=point[2],
        dr_ci=_interval(draws[:, 2], alpha),
        n_units=n,
        n_matched=int(matched.sum()),
        effective_sample_size=ess,
        max_weight=float(w.max()),
        share_tiny_probability=float((p0[matched] < tiny_probability).mean()) if matched.any() else 0.0,
        tiny_probability=tiny_probability,
        propensity_source=source,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


def _weighted_means(
    weights: np.ndarray, r: np.ndarray, design: np.ndarray, idx: np.ndarray | None
) -> tuple[float, float]:
    """IPS and SNIPS means of ``r`` under ``weights`` (times the design weights), on the units ``idx`` (all: None)."""
    ww, rr, dd = (weights, r, design) if idx is None else (weights[idx], r[idx], design[idx])
    wr = float(np.dot(dd * ww, rr))
    sw = float(np.dot(dd, ww))
    return wr / float(dd.sum()), (wr / sw if sw > 0 else float("nan"))


def _estimates(
    idx: np.ndarray | None,
    r: np.ndarray,
    design: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray | None],
    dr_terms: np.ndarray | None,
) -> tuple[float, float, float]:
    """IPS, SNIPS and DR values on the units ``idx`` (all: None), each minus the baseline's when it has weights."""
    w, w_base = weights
    ips, snips = _weighted_means(w, r, design, idx)
    if w_base is not None:
        ips_b, snips_b = _weighted_means(w_base, r, design, idx)
        ips, snips = ips - ips_b, snips - snips_b
    if dr_terms is None:
        dr = float("nan")
    else:
        dd = design if idx is None else design[idx]
        dr = float(np.dot(dd, dr_terms if idx is None else dr_terms[idx]) / float(dd.sum()))
    return ips, snips, dr


def _interval(col: np.ndarray, alpha: float) -> tuple[float, float]:
    """The ``alpha`` and ``1 - alpha`` quantiles of the finite bootstrap draws (NaN without any)."""
    col = col[np.isfinite(col)]
    if col.size == 0:
        return (float("nan"), float("nan"))
    return (float(np.quantile(col, alpha)), float(np.quantile(col, 1.0 - alpha)))


def _action_space(acts: np.ndarray, tgt: np.ndarray, action_space: Sequence[str] | None, baseline: Any) -> list[str]:
    """The actions' names: ``action_space``, else every action logged or chosen (a deterministic target)."""
    deterministic = tgt.ndim == 1
    if action_space is None:
        base = np.asarray(baseline) if baseline is not None else None
        extra = set(base.astype(str)) if base is not None and base.ndim == 1 else set()
        names = sorted(set(acts) | (set(tgt) if deterministic else set()) | extra)
        if not deterministic:
            msg = "action_space: required with a stochastic target (the names of its columns)."
            raise SchemaError(msg)
    else:
        names = list(action_space)
    return names


def _policy_matrix(policy: Any, what: str, names: list[str], n: int) -> np.ndarray:
    """A policy as an ``(n, k)`` matrix of action probabilities: one-hot for action names, checked otherwise."""
    index = {a: i for i, a in enumerate(names)}
    k = len(names)
    arr = np.asarray(policy.to_numpy() if hasattr(policy, "to_numpy") else policy)
    if arr.ndim == 1:
        chosen = _action_names(arr, what)
        bad = sorted(set(chosen) - set(index))
        if bad or chosen.shape[0] != n:
            msg = f"{what}: expected {n:,} actions from {names}, got {chosen.shape[0]:,} (unknown: {bad[:5]})."
            raise SchemaError(msg)
        out = np.zeros((n, k))
        out[np.arange(n), [index[a] for a in chosen]] = 1.0
        return out
    out = arr.astype(np.float64)
    if out.shape != (n, k) or not np.allclose(out.sum(axis=1), 1.0, atol=1e-6):
        msg = f"{what}: expected an ({n}, {k}) matrix of probabilities summing to 1 per unit, got {out.shape}."
        raise SchemaError(msg)
    outside = ~((out >= 0.0) & (out <= 1.0))
    if outside.any():
        unit, col = (int(v[0]) for v in np.nonzero(outside))
        msg = (
            f"{what}: expected probabilities in [0, 1]; {int(outside.any(axis=1).sum()):,} of {n:,} units have "
            f"one outside (e.g. unit {unit}, action {names[col]!r}: {out[unit, col]!r}). Hint: pass each "
            "unit's probability of each action of action_space."
        )
        raise SchemaError(msg)
    return out


def _check_design(sample_weight: Any, n: int) -> None:
    """Raise unless the design weights are finite, non-negative and not all 0."""
    sw_check = _as_1d(sample_weight, n, name="sample_weight")
    bad_w = ~(np.isfinite(sw_check) & (sw_check >= 0))
    if bad_w.any() or sw_check.sum() <= 0:
        first = int(np.flatnonzero(bad_w)[0]) if bad_w.any() else 0
        msg = (
            f"sample_weight: {int(bad_w.sum()):,} of {n:,} design weights are null, negative or not finite "
            f"(e.g. unit {first}: {sw_check[first]!r}), or they sum to 0. Hint: 1 / sampling fraction per unit."
        )
        raise SchemaError(msg)


def _logging_probabilities(
    logging_probability: Any, X: Any, acts: np.ndarray, *, sample_weight: Any, seed: int
) -> tuple[np.ndarray, str]:
    """P(logged action | unit): as logged, estimated from ``X`` where missing; and a sentence on the source."""
    n = acts.shape[0]
    p0 = (
        np.full(n, np.nan)
        if logging_probability is None
        else _as_1d(logging_probability, n, name="logging_probability")
    )
    missing = np.isnan(p0)  # null/NaN = not logged; +-inf is a wrong value, rejected below
    if missing.any():
        if X is None:
            msg = (
                f"logging_probability: {int(missing.sum()):,} of {n:,} units have no assignment_probability and no "
                "features were given to estimate it. Hint: pass X (features of the units) or log "
                "assignment_probability with each contact."
            )
            raise DataInsufficientError(msg)
        p0[missing] = estimate_logging_probability(X, acts, sample_weight=sample_weight, seed=seed)[missing]
        source = (
            "estimated (cross-fitted multinomial logistic regression on X)"
            if missing.all()
            else f"logged for {n - int(missing.sum()):,} units, estimated for {int(missing.sum()):,}"
        )
    else:
        source = "logged assignment_probability"
    if ((p0 <= 0) | (p0 > 1)).any():
        bad = p0[(p0 <= 0) | (p0 > 1)][0]
        msg = f"logging_probability: values must be in (0, 1] (e.g. {bad!r}). Hint: it is P(logged action | x)."
        raise SchemaError(msg)
    return p0, source


def _dr_terms(
    q_hat: Any,
    r: np.ndarray,
    a_idx: np.ndarray,
    target: tuple[np.ndarray, np.ndarray],
    base: tuple[np.ndarray, np.ndarray] | None,
    names: list[str],
) -> np.ndarray | None:
    """Per-unit doubly robust terms (minus the baseline's when given); ``None`` without ``q_hat``."""
    if q_hat is None:
        return None
    pi, w = target
    n, k = r.shape[0], len(names)
    q = np.asarray(q_hat, dtype=np.float64)
    if q.shape != (n, k):
        msg = f"q_hat: expected shape ({n}, {k}) (units x actions {names}), got {q.shape}."
        raise SchemaError(msg)
    not_finite = ~np.isfinite(q)
    if not_finite.any():
        unit, col = (int(v[0]) for v in np.nonzero(not_finite))
        msg = (
            f"q_hat: {int(not_finite.any(axis=1).sum()):,} of {n:,} units have a null or non-finite predicted "
            f"reward (e.g. unit {unit}, action {names[col]!r}). Hint: predict every action of the action "
            "space (a channel never logged still needs a prediction), or leave q_hat out (no DR)."
        )
        raise SchemaError(msg)
    residual = r - q[np.arange(n), a_idx]
    dr_terms: np.ndarray = (pi * q).sum(axis=1) + w * residual
    if base is not None:
        pi_base, w_base = base
        dr_terms = dr_terms - ((pi_base * q).sum(axis=1) + w_base * residual)
    return dr_terms
