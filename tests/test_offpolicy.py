"""Off-policy estimators on synthetic logged data whose true policy value is known exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from omni_ml.evaluation import OffPolicyResult, estimate_logging_probability, off_policy_value
from omni_ml.exceptions import DataInsufficientError, SchemaError

ACTIONS = ("no_contact", "email", "sms")


def _truth(x: np.ndarray) -> np.ndarray:
    """P(convert | x, action) for each action: base rate from x0, channel effects depend on x1."""
    base = 1 / (1 + np.exp(-(-2.0 + 0.8 * x[:, 0])))
    email = np.clip(base + 0.04 + 0.03 * (x[:, 1] > 0), 0, 1)
    sms = np.clip(base + 0.10 * (x[:, 1] < 0), 0, 1)
    return np.column_stack([base, email, sms])


def _logging(x: np.ndarray) -> np.ndarray:
    """A partly random historic policy that prefers email for active customers."""
    logits = np.column_stack([np.full(len(x), 1.0), 0.5 + 0.7 * x[:, 0], -0.3 - 0.3 * x[:, 0]])
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _target(x: np.ndarray) -> np.ndarray:
    """The policy to evaluate: sms when x1 < 0, email otherwise, pause for the least active."""
    return np.where(x[:, 0] < -1.0, "no_contact", np.where(x[:, 1] < 0, "sms", "email"))


def _logged(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    p0 = _logging(x)
    a = (rng.random(n)[:, None] > np.cumsum(p0, axis=1)).sum(axis=1)
    p = _truth(x)
    r = (rng.random(n) < p[np.arange(n), a]).astype(float)
    return {"x": x, "action": np.asarray(ACTIONS)[a], "p0": p0[np.arange(n), a], "reward": r}


def _true_value() -> float:
    """The target policy's value in the population, from a large independent sample of x (exact p)."""
    x = np.random.default_rng(10_000).normal(size=(2_000_000, 2))
    tgt = np.searchsorted(ACTIONS, _target(x), sorter=np.argsort(ACTIONS))
    order = np.argsort(ACTIONS)
    idx = order[tgt]
    return float(_truth(x)[np.arange(len(x)), idx].mean())


TRUE_VALUE = _true_value()


def _q_model(seed: int) -> object:
    """An outcome model fitted on separate logged data (logistic regression per action)."""
    from sklearn.linear_model import LogisticRegression

    train = _logged(seed + 500, 6000)
    models = {}
    for a in ACTIONS:
        rows = train["action"] == a
        models[a] = LogisticRegression().fit(train["x"][rows], train["reward"][rows])
    return models


def _q_hat(models: dict, x: np.ndarray) -> np.ndarray:
    return np.column_stack([models[a].predict_proba(x)[:, 1] for a in ACTIONS])


def test_intervals_cover_the_true_value_on_at_least_9_of_10_seeds() -> None:
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for seed in range(10):
        log = _logged(seed, 6000)
        res = off_policy_value(
            log["action"],
            log["reward"],
            _target(log["x"]),
            logging_probability=log["p0"],
            action_space=ACTIONS,
            q_hat=_q_hat(_q_model(seed), log["x"]),  # type: ignore[arg-type]
            n_bootstrap=300,
            seed=seed,
        )
        for name in covered:
            low, high = getattr(res, f"{name}_ci")
            covered[name] += int(low <= TRUE_VALUE <= high)
        assert res.propensity_source == "logged assignment_probability"
    assert covered["dr"] >= 9, covered
    assert covered["snips"] >= 9, covered
    assert covered["ips"] >= 9, covered


def test_dr_is_tighter_than_ips_and_estimates_are_near_truth() -> None:
    log = _logged(42, 8000)
    res = off_policy_value(
        log["action"],
        log["reward"],
        _target(log["x"]),
        logging_probability=log["p0"],
        action_space=ACTIONS,
        q_hat=_q_hat(_q_model(42), log["x"]),  # type: ignore[arg-type]
        n_bootstrap=300,
    )
    width = {k: getattr(res, f"{k}_ci")[1] - getattr(res, f"{k}_ci")[0] for k in ("ips", "snips", "dr")}
    assert width["dr"] < width["ips"]
    assert abs(res.dr - TRUE_VALUE) < 0.02
    assert res.best[0] == "dr"


def test_stochastic_target_equals_deterministic_when_one_hot() -> None:
    log = _logged(3, 2000)
    tgt = _target(log["x"])
    one_hot = (tgt[:, None] == np.asarray(ACTIONS)[None, :]).astype(float)
    a = off_policy_value(log["action"], log["reward"], tgt, logging_probability=log["p0"], action_space=ACTIONS)
    b = off_policy_value(log["action"], log["reward"], one_hot, logging_probability=log["p0"], action_space=ACTIONS)
    assert a.snips == pytest.approx(b.snips)
    assert a.ips_ci == pytest.approx(b.ips_ci)


def test_same_seed_same_interval_and_seed_changes_it() -> None:
    log = _logged(5, 1500)
    run = [
        off_policy_value(log["action"], log["reward"], _target(log["x"]), logging_probability=log["p0"], seed=s)
        for s in (1, 1, 2)
    ]
    assert (run[0].ips_ci, run[0].snips_ci) == (run[1].ips_ci, run[1].snips_ci)
    assert run[0].snips == run[2].snips
    assert run[0].snips_ci != run[2].snips_ci


def test_estimated_logging_probability_is_flagged_and_close() -> None:
    log = _logged(7, 5000)
    res = off_policy_value(log["action"], log["reward"], _target(log["x"]), X=log["x"], n_bootstrap=200)
    assert res.propensity_source.startswith("estimated")
    assert res.snips_ci[0] <= TRUE_VALUE <= res.snips_ci[1]
    p_hat = estimate_logging_probability(log["x"], log["action"])
    assert np.corrcoef(p_hat, log["p0"])[0, 1] > 0.9
    partial = log["p0"].copy()
    partial[:100] = np.nan
    res2 = off_policy_value(log["action"], log["reward"], _target(log["x"]), logging_probability=partial, X=log["x"])
    assert res2.propensity_source == "logged for 4,900 units, estimated for 100"


def test_overlap_diagnostic_flags_tiny_logging_probabilities() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    rare = rng.random(n) < 0.004
    action = np.where(rare, "sms", "email")
    p0 = np.where(rare, 0.004, 0.996)
    reward = rng.random(n) < 0.1
    res = off_policy_value(action, reward, np.full(n, "sms"), logging_probability=p0, n_bootstrap=100)
    assert res.n_matched == int(rare.sum())
    assert res.share_tiny_probability == 1.0
    assert res.max_weight == pytest.approx(250.0)
    assert res.effective_sample_size == pytest.approx(rare.sum())
    fair = off_policy_value(action, reward, np.full(n, "email"), logging_probability=p0, n_bootstrap=100)
    assert fair.share_tiny_probability == 0.0
    assert fair.effective_sample_size == pytest.approx(fair.n_matched)


def test_to_dict_is_flat_and_loggable() -> None:
    log = _logged(1, 800)
    res = off_policy_value(log["action"], log["reward"], _target(log["x"]), logging_probability=log["p0"])
    d = res.to_dict()
    assert isinstance(res, OffPolicyResult)
    assert all(isinstance(v, int | float | str) for v in d.values())
    assert {"ope_snips", "ope_snips_ci_low", "ope_dr", "ope_effective_sample_size", "ope_propensity_source"} <= set(d)
    assert "IPS" in str(res)
    assert "ESS" in str(res)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(DataInsufficientError, match="no assignment_probability and no features"):
        off_policy_value(["email", "sms"], [1.0, 0.0], ["email", "email"])
    with pytest.raises(SchemaError, match=r"values must be in \(0, 1\]"):
        off_policy_value(["email"], [1.0], ["email"], logging_probability=[0.0])
    with pytest.raises(SchemaError, match="expected one value per logged unit"):
        off_policy_value(["email", "sms"], [1.0], ["email", "sms"], logging_probability=[0.5, 0.5])
    with pytest.raises(SchemaError, match=r"are not in the action space"):
        off_policy_value(["fax"], [1.0], ["email"], logging_probability=[0.5], action_space=["email"])
    with pytest.raises(DataInsufficientError, match="no logged units"):
        off_policy_value([], [], [])


def test_design_weights_equal_duplicated_units() -> None:
    log = _logged(9, 1000)
    twice = np.r_[np.arange(1000), np.arange(500)]  # the first 500 units appear twice
    weight = np.r_[np.full(500, 2.0), np.ones(500)]
    kw = {"logging_probability": log["p0"], "action_space": ACTIONS, "n_bootstrap": 20}
    dup = off_policy_value(log["action"][twice], log["reward"][twice], _target(log["x"])[twice], **{
        **kw, "logging_probability": log["p0"][twice]})  # fmt: skip
    wtd = off_policy_value(log["action"], log["reward"], _target(log["x"]), sample_weight=weight, **kw)
    assert wtd.ips == pytest.approx(dup.ips)
    assert wtd.snips == pytest.approx(dup.snips)
    assert wtd.effective_sample_size < wtd.n_matched


def test_incremental_value_over_a_baseline_is_paired_and_covers_truth() -> None:
    x = np.random.default_rng(10_000).normal(size=(1_000_000, 2))
    p = _truth(x)
    order = {a: i for i, a in enumerate(ACTIONS)}
    tgt_idx = np.array([order[a] for a in _target(x)])
    true_gain = float(p[np.arange(len(x)), tgt_idx].mean() - p[:, 0].mean())
    log = _logged(11, 6000)
    pause = np.full(6000, "no_contact")
    kw = {"logging_probability": log["p0"], "action_space": ACTIONS, "n_bootstrap": 300, "seed": 1}
    q = _q_hat(_q_model(11), log["x"])  # type: ignore[arg-type]
    gain = off_policy_value(log["action"], log["reward"], _target(log["x"]), baseline=pause, q_hat=q, **kw)
    alone = off_policy_value(log["action"], log["reward"], _target(log["x"]), q_hat=q, **kw)
    base = off_policy_value(log["action"], log["reward"], pause, q_hat=q, **kw)
    assert gain.snips == pytest.approx(alone.snips - base.snips)
    assert gain.dr == pytest.approx(alone.dr - base.dr)
    assert gain.dr_ci[0] <= true_gain <= gain.dr_ci[1]
    # pairing: the interval of the difference is narrower than the two separate intervals suggest
    assert gain.dr_ci[1] - gain.dr_ci[0] < (alone.dr_ci[1] - alone.dr_ci[0]) + (base.dr_ci[1] - base.dr_ci[0])


def test_bootstrap_draws_without_a_matching_unit_are_reported() -> None:
    """With one matching unit in 30, about a third of the draws miss it: SNIPS is undefined there, say so."""
    actions = np.array(["email"] + ["sms"] * 29)
    rewards = np.r_[1.0, np.zeros(29)]
    target = np.array(["email"] * 30)
    with pytest.warns(UserWarning, match=r"bootstrap draws had no unit .* \(only 1 of 30 units match\)"):
        res = off_policy_value(actions, rewards, target, logging_probability=np.full(30, 0.5), n_bootstrap=200)
    assert res.n_matched == 1
    many = _logged(3, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        off_policy_value(many["action"], many["reward"], _target(many["x"]), logging_probability=many["p0"])


@pytest.mark.parametrize("where", ["actions", "target", "baseline"])
def test_a_missing_action_is_named_as_missing_not_as_the_action_none(where: str) -> None:
    log = _logged(3, 200)
    acts, tgt, base = log["action"].astype(object), _target(log["x"]).astype(object), np.full(200, "no_contact", object)
    {"actions": acts, "target": tgt, "baseline": base}[where][7] = None
    with pytest.raises(SchemaError, match=rf"{where}: 1 of 200 actions are missing \(null\), e.g. unit 7"):
        off_policy_value(acts, log["reward"], tgt, logging_probability=log["p0"], baseline=base, action_space=ACTIONS)
