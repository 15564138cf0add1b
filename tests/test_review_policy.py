"""Review of the decision rules and off-policy evaluation: each test pins a defect that was fixed."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_ml.policy import NO_CONTACT, PolicyConfig, decide

CH = ("email", "sms", "push")
CFG = PolicyConfig(conversion_value=10.0, channels=CH, channel_costs={"email": 0.1, "sms": 0.5, "push": 0.05})


def _consent(cid: str, flags: tuple[bool, bool, bool]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [cid], **{f"consent_{c}": [v] for c, v in zip(CH, flags, strict=True)}})


def _facts(**cols: object) -> pl.DataFrame:
    base: dict[str, object] = {
        "customer_id": ["a"],
        "contacts_7d": [0],
        "contacts_30d": [0],
        "days_since_contact": [None],
        "days_since_incident": [None],
        "recent_categories": [[]],
        "preferred_category": [None],
    }
    base.update(cols)
    return pl.DataFrame(
        base,
        schema_overrides={
            "days_since_contact": pl.Float64,
            "days_since_incident": pl.Float64,
            "recent_categories": pl.List(pl.String),
            "preferred_category": pl.String,
        },
    )


@settings(max_examples=40, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
    nan_at=st.integers(0, 2),
)
def test_a_nan_cost_never_hides_the_other_channels(p: list[float], nan_at: int) -> None:
    """A NaN in the cost column is a missing cost (like null): the configured cost applies.

    It used to win np.argmax and pause the customer with rule no_positive_value.
    """
    costs = [CFG.cost(c) for c in CH]
    with_nan = [float("nan") if j == nan_at else costs[j] for j in range(3)]
    rows = {"customer_id": ["a"] * 3, "channel": list(CH), "p_if_contacted": p, "p_if_not": [0.0] * 3}
    got = decide(pl.DataFrame({**rows, "cost": with_nan}), _consent("a", (True, True, True)), config=CFG)
    want = decide(pl.DataFrame({**rows, "cost": costs}), _consent("a", (True, True, True)), config=CFG)
    assert got.select("best_channel", "rule").rows() == want.select("best_channel", "rule").rows()
    assert got["expected_value"][0] == pytest.approx(want["expected_value"][0])


def test_a_consented_customer_without_estimates_is_not_reported_as_no_consent() -> None:
    """The recorded rule must be the one that decided: consent was given, there is just nothing to beat the pause."""
    est = pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "channel": ["email", "email"],
            "p_if_contacted": [None, None],
            "p_if_not": [0.1, 0.1],
        },
        schema_overrides={"p_if_contacted": pl.Float64},
    )
    consent = pl.concat([_consent("a", (True, False, False)), _consent("b", (False, False, False))])
    out = decide(est, consent, config=CFG)
    assert out["best_channel"].to_list() == [NO_CONTACT, NO_CONTACT]
    assert out["rule"].to_list() == ["no_positive_value", "no_consent"]
    # and, being consented, the pressure rules apply to it like to anyone else
    facts = _facts(contacts_7d=[5])
    assert decide(est.head(1), consent.head(1), facts, CFG)["rule"].to_list() == ["pressure_cap"]
