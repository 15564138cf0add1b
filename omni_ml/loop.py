"""The closed loop on a simulated world: train -> score (explore + control) -> continue -> feedback -> retrain.

:func:`run_loop` runs competing channel policies for several cycles, each in its own copy of the same
simulated world (same seed, so the same people and the same history at the start), under the same
consent and contact-pressure rules (:func:`omni_ml.policy.decide`'s cool-down, caps and service rule):

* ``learned``: a :class:`~omni_ml.campaign.CampaignModel` fitted on the world's histories as they stand at
  each cycle (the feedback of the earlier cycles included), scored with :func:`omni_ml.scoring.score` with
  exploration and a control group;
* ``always_email``, ``most_engaged`` (Braze Intelligent Channel's rule: the consented channel with the
  highest opens-or-clicks per message over the last six months) and ``random`` (a random consented
  channel) from :func:`omni_ml.policy.baseline_decisions`;
* ``oracle``: :func:`omni_ml.policy.decide` on the world's truth (``truth/channel_response``).

Every cycle, for every policy: the campaign file (one row per customer, ``control_group``,
``assignment_probability``, rule ``explore`` for explored rows) is sent into the world with
:func:`omni_ml.simulate.continue_histories` (the world moves ``days`` ahead, with truth for its new end),
fed back with :func:`omni_ml.feedback.feedback` and measured with :func:`omni_ml.measure.measure_campaign`.

Values are by the truth at the campaign date, over pausing everyone: the sum over customers of
``(p_if_contacted - p_if_not) x conversion_value - cost`` of the chosen channel (0 for a pause), per
customer. ``value_policy`` is the policy's own recommendation (no control group, no exploration);
``value_sent`` what was actually sent; ``exploration_cost`` the value lost to exploration (the design
with the control group only, minus what was sent). ``share_of_oracle`` = ``value_policy`` / the oracle's.
``measured_incremental`` is ``omni-ml measure``'s incremental purchases of the recommended contacts
(treated vs control; explored rows are left out of the treated group, see :mod:`omni_ml.measure`) with its
interval. ``consent_breaks`` and ``pressure_breaks`` count contacts that broke a rule (must be 0).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omni_ml._time import as_utc, before
from omni_ml.data import NO_CONTACT, Histories, UnknownTableWarning, load_histories
from omni_ml.exceptions import ConfigError

__all__ = ["POLICIES", "LoopConfig", "plot_learning_curves", "run_loop", "summarise", "truth_value"]

POLICIES: tuple[str, ...] = ("learned", "always_email", "most_engaged", "random", "oracle")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Settings of :func:`run_loop` (all policies share them).

    Parameters
    ----------
    cycles, days
        Number of campaign cycles and days between them.
    explore, control_fraction
        Exploration share and control group of the learned policy's campaign file (the others get the same
        control group and no exploration).
    conversion_value
        Value of one conversion (the policy's and the truth value's).
    policies
        Which of :data:`POLICIES` to run.
    seed
        Campaign seed of cycle ``c`` is ``seed + c`` (control group, exploration, random channel).
    measure_window, n_boot
        Outcome window and bootstrap resamples of the measurement.
    campaign
        Mapping of :class:`~omni_ml.campaign.CampaignConfig` fields for the learned policy.
    engagement_days
        Look-back of the most-engaged rule (six months).
    """

    cycles: int = 6
    days: int = 30
    explore: float = 0.1
    control_fraction: float = 0.1
    conversion_value: float = 40.0
    policies: tuple[str, ...] = POLICIES
    seed: int = 0
    measure_window: int = 7
    n_boot: int = 200
    campaign: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"train": {"n_cutoffs": 4}, "channel_backtest_days": None}
    )
    engagement_days: int = 182

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown or not self.policies:
            msg = f"LoopConfig.policies: unknown {unknown} (choose from {list(POLICIES)})."
            raise ConfigError(msg)
        if self.cycles < 1 or self.days < 7:
            msg = f"LoopConfig: cycles must be >= 1 and days >= 7 (got {self.cycles}, {self.days})."
            raise ConfigError(msg)


def _end(world: Path) -> dt.datetime:
    data = json.loads((world / "truth" / "world.json").read_text())
    end = (data.get("continuation") or {}).get("end") or data["config"]["end"]
    return as_utc(str(end), name="world end")


def truth_value(actions: pl.DataFrame, truth: pl.DataFrame, value: float, column: str = "best_channel") -> float:
    """Sum over customers of ``(p_if_contacted - p_if_not) x value - cost`` of ``column`` (0 for a pause)."""
    joined = actions.select("customer_id", pl.col(column).alias("channel")).join(
        truth, on=["customer_id", "channel"], how="left"
    )
    total = joined.select(((pl.col("p_if_contacted") - pl.col("p_if_not")) * value - pl.col("cost")).fill_null(0.0))
    return float(total.sum().item())


def _hard_rules(decisions: pl.DataFrame, facts: pl.DataFrame, policy: Any) -> pl.DataFrame:
    """The pressure, cool-down and service rules of :func:`~omni_ml.policy.decide` applied to any decisions."""
    f = decisions.select("customer_id").join(facts, on="customer_id", how="left")
    blocked = (
        (f["days_since_contact"].fill_null(np.inf) <= policy.cooldown_days)
        | (f["contacts_7d"].fill_null(0) >= policy.max_contacts_7d)
        | (f["contacts_30d"].fill_null(0) >= policy.max_contacts_30d)
        | (f["days_since_incident"].fill_null(np.inf) <= policy.service_incident_days)
    )
    return decisions.with_columns(
        best_channel=pl.when(blocked).then(pl.lit(NO_CONTACT)).otherwise(pl.col("best_channel")),
        rule=pl.when(blocked & (pl.col("best_channel") != NO_CONTACT)).then(pl.lit("pressure_cap")).otherwise("rule"),
    )


def _campaign_frame(
    decisions: pl.DataFrame, as_of: dt.datetime, control: float, seed: int, channels: Sequence[str]
) -> pl.DataFrame:
    """A campaign file (control group, assignment probabilities) for decisions made outside the scoring job."""
    from omni_ml.scoring import finish_chunk

    schema = pl.Schema(
        {
            "customer_id": pl.String(),
            "as_of": pl.Datetime("us", "UTC"),
            "best_channel": pl.String(),
            "recommended_channel": pl.String(),
            "control_group": pl.Boolean(),
            "assignment_probability": pl.Float64(),
            **{f"score_{c}": pl.Float64() for c in channels},
            "rule": pl.String(),
            "model_uri": pl.String(),
            "model_version": pl.String(),
            "run_id": pl.String(),
        }
    )
    frame = decisions.select(
        "customer_id", "best_channel", "rule", *[c for c in decisions.columns if c.startswith("score_")]
    ).with_columns(as_of=pl.lit(as_of).cast(pl.Datetime("us", "UTC")))
    lineage = {"model_uri": None, "model_version": None, "run_id": None}
    return finish_chunk(frame, schema=schema, control_fraction=control, seed=seed, lineage=lineage)


def _breaks(campaign: pl.DataFrame, truth: pl.DataFrame, facts: pl.DataFrame, policy: Any) -> tuple[int, int]:
    sent = campaign.filter(pl.col("best_channel") != NO_CONTACT).select("customer_id", "best_channel")
    consent = sent.join(
        truth.select("customer_id", pl.col("channel").alias("best_channel"), "consented"),
        on=["customer_id", "best_channel"],
        how="left",
    )
    no_consent = int((~consent["consented"].fill_null(False)).sum())
    pressure = _hard_rules(sent.with_columns(rule=pl.lit("x")), facts, policy)
    return no_consent, int((pressure["best_channel"] == NO_CONTACT).sum())


def _decisions(
    name: str, hist: Histories, as_of: dt.datetime, truth: pl.DataFrame, policy: Any, config: LoopConfig, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The policy's decisions and the history facts as of ``as_of`` (for baselines and the oracle)."""
    from omni_ml.identity import consent_state
    from omni_ml.policy import baseline_decisions, decide, engagement_rates, history_facts

    ids = truth["customer_id"].unique().sort()
    consent = consent_state(hist, as_of)
    facts = history_facts(hist, as_of, config=policy, customers=ids)
    if name == "oracle":
        return decide(truth, consent, facts, policy), facts
    engagement = None
    if name == "most_engaged":
        since = as_of - dt.timedelta(days=config.engagement_days)
        recent = hist.replace(
            events=hist.events.filter(~before(since)),
            contacts=None if hist.contacts is None else hist.contacts.filter(~before(since)),
        )
        engagement = engagement_rates(recent, as_of)
    base = baseline_decisions(name, ids, consent, engagement=engagement, facts=facts, config=policy, seed=seed)  # type: ignore[arg-type]
    return _hard_rules(base, facts, policy), facts


def run_loop(
    world: str | Path,
    workdir: str | Path,
    config: LoopConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Run every policy of ``config`` for ``config.cycles`` cycles, each in its own copy of ``world``.

    Parameters
    ----------
    world
        A simulated world (:func:`omni_ml.simulate.simulate`); it is not modified.
    workdir
        Directory for the policies' worlds and campaign files (created; may be large).
    config
        :class:`LoopConfig` (defaults when ``None``).
    progress
        Called with a line of text after each policy's cycle.

    Returns
    -------
    polars.DataFrame
        One row per policy and cycle: ``policy, cycle, as_of, customers, value_policy, value_sent,
        value_control_only, exploration_cost, oracle_value, share_of_oracle, contacts, explored,
        measured_incremental, measured_low, measured_high, consent_breaks, pressure_breaks``
        (values per customer).
    """
    from omni_ml.feedback import feedback
    from omni_ml.identity import resolve_identities
    from omni_ml.measure import measure_campaign
    from omni_ml.policy import PolicyConfig
    from omni_ml.simulate import continue_histories

    cfg = config or LoopConfig()
    base = Path(world)
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    policy = PolicyConfig(conversion_value=cfg.conversion_value)
    rows: list[dict[str, Any]] = []
    current = dict.fromkeys(cfg.policies, base)
    for cycle in range(1, cfg.cycles + 1):
        seed = cfg.seed + cycle
        oracle_value: float | None = None
        for name in sorted(cfg.policies, key=lambda p: p != "oracle"):  # the oracle first: the shares need it
            here = current[name]
            as_of = _end(here)
            truth = pl.read_parquet(here / "truth" / "channel_response.parquet")
            n_persons = truth["customer_id"].n_unique()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownTableWarning)
                raw = load_histories(here)
            hist = resolve_identities(raw, as_of=as_of).collect()
            folder = root / name
            folder.mkdir(exist_ok=True)
            campaign_path = folder / f"campaign_{cycle}.parquet"
            if name == "learned":
                campaign, facts = _learned_campaign(raw, hist, as_of, truth, cfg, policy, seed, campaign_path)
            else:
                decisions, facts = _decisions(name, hist, as_of, truth, policy, cfg, seed)
                campaign = _campaign_frame(decisions, as_of, cfg.control_fraction, seed, policy.channels)
                campaign.write_parquet(campaign_path)
            v_policy, v_sent, v_control = _true_values(campaign, truth, cfg.conversion_value, n_persons)
            if name == "oracle":
                oracle_value = v_policy
            consent_breaks, pressure_breaks = _breaks(campaign, truth, facts, policy)

            nxt = folder / f"world_{cycle}"
            if nxt.exists():
                shutil.rmtree(nxt)
            continue_histories(here, campaign, cfg.days, nxt)
            feedback(campaign_path, nxt, nxt)
            report = measure_campaign(  # explored rows are left out of the treated group
                campaign, nxt, window_days=cfg.measure_window, n_boot=cfg.n_boot, seed=seed, log_mlflow=False
            )
            overall = report.overall
            n_treated = overall["n_treated"]
            if here != base:
                shutil.rmtree(here, ignore_errors=True)  # keep only the latest world per policy
            current[name] = nxt
            row = {
                "policy": name,
                "cycle": cycle,
                "as_of": as_of.date().isoformat(),
                "customers": n_persons,
                "value_policy": v_policy,
                "value_sent": v_sent,
                "value_control_only": v_control,
                "exploration_cost": v_control - v_sent,
                "oracle_value": oracle_value,
                "share_of_oracle": v_policy / oracle_value if oracle_value else float("nan"),
                "contacts": int((campaign["best_channel"] != NO_CONTACT).sum()),
                "explored": int((campaign["rule"] == "explore").sum()),
                "measured_incremental": float(overall["incremental_conversions"]),
                "measured_low": float(overall["conversion_ci_low"]) * n_treated,
                "measured_high": float(overall["conversion_ci_high"]) * n_treated,
                "consent_breaks": consent_breaks,
                "pressure_breaks": pressure_breaks,
            }
            rows.append(row)
            if progress is not None:
                progress(
                    f"cycle {cycle} {name:<13} value {v_policy:+.4f}/customer (sent {v_sent:+.4f}), "
                    f"share of oracle {row['share_of_oracle']:.3f}, contacts {row['contacts']:,}, "
                    f"measured +{row['measured_incremental']:.1f} "
                    f"[{row['measured_low']:.1f}, {row['measured_high']:.1f}]"
                )
    return pl.DataFrame(rows)


def _learned_campaign(
    raw: Histories,
    hist: Histories,
    as_of: dt.datetime,
    truth: pl.DataFrame,
    cfg: LoopConfig,
    policy: Any,
    seed: int,
    campaign_path: Path,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The learned policy's campaign file (fitted on the raw histories, scored on the resolved) and its facts."""
    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.config import from_mapping
    from omni_ml.policy import history_facts
    from omni_ml.scoring import score

    campaign_cfg = from_mapping(
        CampaignConfig,
        {
            **cfg.campaign,
            "policy": {**cfg.campaign.get("policy", {}), "conversion_value": policy.conversion_value},
        },
    )
    model = CampaignModel(campaign_cfg).fit(raw, as_of, horizon_days=28)
    score(
        hist,
        model=model,
        as_of=as_of,
        out=campaign_path,
        reasons=0,
        control_fraction=cfg.control_fraction,
        explore=cfg.explore,
        seed=seed,
        progress=False,
    )
    campaign = pl.read_parquet(campaign_path)
    facts = history_facts(hist, as_of, config=model.policy_, customers=truth["customer_id"].unique())
    return campaign, facts


def _true_values(
    campaign: pl.DataFrame, truth: pl.DataFrame, conversion_value: float, n_persons: int
) -> tuple[float, float, float]:
    """True value per customer over pausing everyone: of the recommendations, of what was sent, of control only."""
    v_policy = truth_value(campaign, truth, conversion_value, "recommended_channel") / n_persons
    v_sent = truth_value(campaign, truth, conversion_value) / n_persons
    control_only = campaign.with_columns(
        pl.when(pl.col("control_group"))
        .then(pl.lit(NO_CONTACT))
        .otherwise(pl.col("recommended_channel"))
        .alias("__design")
    )
    v_control = truth_value(control_only, truth, conversion_value, "__design") / n_persons
    return v_policy, v_sent, v_control


def summarise(table: pl.DataFrame) -> pl.DataFrame:
    """Cumulated over cycles per policy: values summed, share of the oracle's cumulated value, breaks summed."""
    oracle = table.filter(pl.col("policy") == "oracle")["value_policy"].sum() if "oracle" in table["policy"] else None
    out = table.group_by("policy", maintain_order=True).agg(
        pl.col("value_policy").sum().alias("cum_value_policy"),
        pl.col("value_sent").sum().alias("cum_value_sent"),
        pl.col("exploration_cost").sum().alias("cum_exploration_cost"),
        pl.col("measured_incremental").sum().alias("cum_measured_incremental"),
        pl.col("consent_breaks").sum(),
        pl.col("pressure_breaks").sum(),
    )
    if oracle:
        out = out.with_columns((pl.col("cum_value_policy") / oracle).alias("cum_share_of_oracle"))
    return out


def plot_learning_curves(table: pl.DataFrame, path: str | Path | None = None) -> Any:
    """Value per customer by the truth per cycle and policy (matplotlib figure; saved when ``path`` is given)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, group in table.group_by("policy", maintain_order=True):
        g = group.sort("cycle")
        axes[0].plot(g["cycle"], g["value_policy"], marker="o", label=str(name[0]))
        axes[1].plot(g["cycle"], g["share_of_oracle"], marker="o", label=str(name[0]))
    axes[0].set(xlabel="cycle", ylabel="value over pausing, per customer (truth)", title="Value by cycle")
    axes[1].set(xlabel="cycle", ylabel="value / oracle", title="Share of the oracle's value")
    axes[0].axhline(0.0, color="grey", lw=0.5)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
