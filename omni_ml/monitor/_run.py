"""Monitor one scoring run: compare the scored population with the training reference, chunk by chunk.

:class:`ScoringMonitor` is fed by the scoring job: every scored chunk of the campaign table
(:meth:`ScoringMonitor.add_scores`: propensity, decile, channel) and the features of a deterministic
hash sample of its customers (:meth:`ScoringMonitor.add_features`) with the tally of its input rows
(:meth:`ScoringMonitor.add_input_tally`). :meth:`ScoringMonitor.finish`
returns a :class:`MonitorReport`: per-feature drift (PSI and Jensen-Shannon distance on the
training bins, null-share change), decile occupancy, contacted share per channel vs the previous run,
expected performance without labels (CBPE from the calibrated propensities) and a health verdict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import polars as pl

from omni_ml.data import NO_CONTACT
from omni_ml.monitor._drift import MonitorConfig, expected_auc, expected_auc_band, js_distance, psi, psi_noise
from omni_ml.monitor._events import INPUT_SCHEMA, InputCounter
from omni_ml.monitor._profile import BinCounter, Reference, drift_detail, reference_binned
from omni_ml.monitor._reference import N_DECILES

__all__ = ["MONITOR_COLUMNS", "MonitorReport", "ScoringMonitor", "Verdict", "monitor_path"]

Verdict = Literal["ok", "warn", "bad"]
SAMPLE_SEED = 7_919
"""Seed of the stable hash that picks the customers whose features are profiled."""

MONITOR_COLUMNS: dict[str, pl.DataType] = {
    "section": pl.String(),
    "name": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "reference": pl.Float64(),
    "threshold": pl.Float64(),
    "flag": pl.String(),
    "description": pl.String(),
}
"""Columns of ``<campaign>.monitor.parquet`` (long format: one row per section, name and metric)."""


def monitor_path(campaign: Any) -> Any:
    """``<dir>/<stem>.monitor.parquet`` beside the campaign file ``campaign`` (a path)."""
    from pathlib import Path

    path = Path(campaign)
    return path.with_name(f"{path.stem}.monitor.parquet")


@dataclasses.dataclass(frozen=True)
class MonitorReport:
    """Drift, score health and expected performance of one scoring run.

    Attributes
    ----------
    verdict
        ``ok``, ``warn`` (something moved, worth a look) or ``bad`` (the scores should not be trusted
        as they are: a feature drifted past ``psi_bad``, a null share jumped, or the deciles moved).
    reasons
        Why the verdict is not ``ok``, in words.
    features
        One row per monitored feature: ``feature, description, kind, psi, natural_psi, noise_psi, threshold,
        js_distance, null_share, null_share_reference, flag`` (``drift``, ``shift``, ``nulls`` or ``ok``):
        flagged features first (drift and nulls, then shifts), each group by decreasing index. ``noise_psi``
        is the index two samples of the compared sizes from one distribution pass with probability
        ``psi_alpha``; ``threshold`` the drift threshold (``psi_bad``, the natural movement times its factor,
        ``noise_psi``: the largest). An aggregate of our own outbound messages is at most ``shift``.
    deciles
        ``decile, share, share_reference, expected_rate, expected_lift``.
    channels
        ``channel, contacted, share, share_previous, flag``.
    expected
        ``expected_auc`` (+ ``_lo``/``_hi``: 95% band from label noise), ``expected_conversions``,
        ``expected_conversions_contacted``, ``expected_incremental_contacted``, ``mean_propensity``,
        ``contacted``, ``customers`` ...
    inputs
        One row per input summary (:data:`~omni_ml.monitor._events.INPUT_SCHEMA`): volumes per
        customer-day of each event type and channel, contacts and consent changes per channel, the order
        value of purchases and the two mixes, over the ``horizon`` days before the scoring date vs the
        training windows; ``flag`` ``drift``, ``shift`` or ``ok``; flagged first, by decreasing
        ``severity`` (the binding ratio of statistic to threshold). Empty for a model without input reference.
    calibrated
        Whether the propensities behind ``expected`` went through a calibration map (``None``: not known).
        Without one (e.g. trained on under a year of cutoffs, :func:`omni_ml.training.adapt_to_history`)
        the expected figures are the booster's own level, and the summary says so.
    """

    as_of: dt.datetime
    customers: int
    sampled: int
    verdict: Verdict
    reasons: tuple[str, ...]
    features: pl.DataFrame
    deciles: pl.DataFrame
    channels: pl.DataFrame
    expected: dict[str, float]
    score_psi: float
    config: MonitorConfig
    inputs: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=INPUT_SCHEMA))
    inputs_days: int = 0
    calibrated: bool | None = None

    @property
    def drifting(self) -> list[str]:
        """Names of the features flagged ``drift`` or ``nulls``, most drifting first."""
        return self.features.filter(pl.col("flag").is_in(["drift", "nulls"]))["feature"].to_list()

    def moved(self, top: int | None = None) -> pl.DataFrame:
        """Features and input summaries that moved, most severe first: ``name, description, severity, flag``.

        ``severity`` is the statistic over its threshold (a feature: PSI over its drift threshold, or the
        null-share change over ``null_share_bad``; an input: see :attr:`inputs`), 1 or more when flagged
        ``drift`` / ``nulls``. The summary names the first ``top`` (default ``top_features``).
        """
        cfg = self.config
        f = self.features
        null_move = (pl.col("null_share") - pl.col("null_share_reference")).abs() / cfg.null_share_bad
        feats = f.select(
            name=pl.col("feature"),
            description=pl.col("description"),
            severity=pl.max_horizontal(pl.col("psi") / pl.col("threshold"), null_move),
            flag=pl.col("flag"),
        )
        inputs = self.inputs.select(name=pl.col("item"), description="description", severity="severity", flag="flag")
        both = pl.concat([feats, inputs]).filter(pl.col("flag") != "ok")
        rank = pl.col("flag").replace_strict({"nulls": 0, "drift": 0, "shift": 1}, return_dtype=pl.Int8)
        return both.sort([rank, "severity", "name"], descending=[False, True, False]).head(top or cfg.top_features)

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow (``monitor_*``, ``expected_*``, ``share_contacted_<channel>``)."""
        code = {"ok": 0.0, "warn": 1.0, "bad": 2.0}[self.verdict]
        out = {
            "monitor_verdict": code,
            "monitor_customers": float(self.customers),
            "monitor_sampled": float(self.sampled),
            "monitor_score_psi": self.score_psi,
            "monitor_max_psi": float(self.features["psi"].fill_null(0.0).to_numpy().max(initial=0.0)),
            "monitor_features_drifting": float(len(self.drifting)),
            "monitor_features_shifted": float((self.features["flag"] == "shift").sum()),
            "monitor_inputs_drifting": float((self.inputs["flag"] == "drift").sum()),
            "monitor_inputs_shifted": float((self.inputs["flag"] == "shift").sum()),
        }
        out.update({k: float(v) for k, v in self.expected.items()})
        for row in self.channels.iter_rows(named=True):
            out[f"share_contacted_{row['channel']}"] = float(row["share"])
        for row in self.deciles.iter_rows(named=True):
            out[f"decile_share_{row['decile']}"] = float(row["share"])
            out[f"expected_lift_decile_{row['decile']}"] = float(row["expected_lift"])
        return out

    def to_frame(self) -> pl.DataFrame:
        """The long table written to ``<campaign>.monitor.parquet`` (:data:`MONITOR_COLUMNS`)."""
        cfg = self.config
        rows: list[tuple[Any, ...]] = [
            ("health", "verdict", "verdict", {"ok": 0.0, "warn": 1.0, "bad": 2.0}[self.verdict], None, None,
             self.verdict, "; ".join(self.reasons) or "no drift past the thresholds"),
            ("health", "population", "customers", float(self.customers), None, None, None, "customers scored"),
            ("health", "population", "sampled", float(self.sampled), None, None, None,
             "customers whose features were profiled"),
            ("score", "propensity_decile", "psi", self.score_psi, None, cfg.score_psi_bad, None,
             "decile occupancy vs training"),
        ]  # fmt: skip
        for f in self.features.iter_rows(named=True):
            rows += [
                ("feature", f["feature"], "psi", f["psi"], f["natural_psi"], f["threshold"], f["flag"],
                 f["description"]),
                ("feature", f["feature"], "noise_psi", f["noise_psi"], None, None, f["flag"], f["description"]),
                ("feature", f["feature"], "js_distance", f["js_distance"], None, None, f["flag"], f["description"]),
                ("feature", f["feature"], "null_share", f["null_share"], f["null_share_reference"],
                 cfg.null_share_bad, f["flag"], f["description"]),
            ]  # fmt: skip
        for i in self.inputs.iter_rows(named=True):
            rows += [
                ("input", i["item"], "value", i["value"], i["reference"], None, i["flag"], i["description"]),
                ("input", i["item"], "change", i["change"], i["natural_change"], i["change_min"], i["flag"],
                 i["description"]),
                ("input", i["item"], "z", i["z"], i["natural_z"], i["threshold"], i["flag"], i["description"]),
            ]  # fmt: skip
            if i["kind"] == "order_value":
                rows += [
                    ("input", i["item"], "psi", i["psi"], None, None, i["flag"], "PSI of the bins of ln(amount)"),
                    ("input", i["item"], "ks", i["ks"], None, None, i["flag"], "Kolmogorov-Smirnov distance (bins)"),
                ]
        for d in self.deciles.iter_rows(named=True):
            name = str(d["decile"])
            rows += [
                ("decile", name, "share", d["share"], d["share_reference"], None, None, "share of customers"),
                ("decile", name, "expected_rate", d["expected_rate"], None, None, None, "mean propensity"),
                ("decile", name, "expected_lift", d["expected_lift"], None, None, None, "expected lift"),
            ]
        for c in self.channels.iter_rows(named=True):
            rows += [
                ("channel", c["channel"], "contacted", float(c["contacted"]), None, None, None, "customers contacted"),
                ("channel", c["channel"], "share", c["share"], c["share_previous"], cfg.channel_share_warn, c["flag"],
                 "share of customers contacted vs the previous run"),
            ]  # fmt: skip
        for k, v in self.expected.items():
            rows.append(("performance", "expected", k, float(v), None, None, None, _EXPECTED_WORDS.get(k, k)))
        return pl.DataFrame(rows, schema=MONITOR_COLUMNS, orient="row")

    def to_text(self, top: int | None = None) -> str:
        """The monitoring part of the ``omni-ml score`` summary: verdict, top drifting features in words."""
        k = top or self.config.top_features
        e = self.expected
        lines = [f"  health: {self.verdict.upper()}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")]
        moved = self.moved(k)
        if moved.height:
            lines.append("  what moved most since training (statistic / threshold):")
            features = {r["feature"]: r for r in self.features.iter_rows(named=True)}
            inputs = {r["item"]: r for r in self.inputs.iter_rows(named=True)}
            for m in moved.iter_rows(named=True):
                if m["name"] in features:
                    f = features[m["name"]]
                    detail = f"PSI {f['psi']:.2f}, nulls {f['null_share']:.0%} vs {f['null_share_reference']:.0%}"
                else:
                    detail = _input_words(inputs[m["name"]], self.inputs_days)
                lines.append(f"    {m['severity']:>6.2f}  {m['description']} ({m['name']}; {detail}) [{m['flag']}]")
        shares = ", ".join(f"{s:.0%}" for s in self.deciles["share"].to_list())
        lines.append(f"  decile occupancy 1..10: {shares} (PSI {self.score_psi:.3f} vs training)")
        if np.isfinite(e.get("expected_auc", np.nan)):
            lines.append(
                f"  expected without labels: AUC {e['expected_auc']:.3f} (95% {e['expected_auc_lo']:.3f}-"
                f"{e['expected_auc_hi']:.3f}), {e['expected_conversions']:,.0f} buyers in the horizon, "
                f"{e['expected_conversions_contacted']:,.0f} among {int(e['contacted']):,} contacted, "
                f"top-decile lift {e.get('expected_lift_top_decile', float('nan')):.2f} (corrected by the back-test: "
                f"{e.get('expected_lift_top_decile_corrected', float('nan')):.2f})"
            )
            if self.calibrated is False:
                lines.append(
                    "    (the propensities have no calibration map -- trained on under a year of cutoffs -- so these "
                    "figures are the booster's own level, measured up to 21% high on simulated one-year worlds; "
                    "train.model.calibration: sigmoid keeps the map)"
                )
        for c in self.channels.filter(pl.col("flag") != "ok").iter_rows(named=True):
            lines.append(
                f"  channel {c['channel']}: {c['share']:.1%} of customers contacted vs {c['share_previous']:.1%} "
                "in the previous run"
            )
        return "\n".join(lines)


def _input_words(row: Mapping[str, Any], days: int) -> str:
    """How an input summary moved, in words."""
    if row["kind"] == "mix":
        return f"PSI {row['change']:.2f} over the last {days} days"
    ratio = math.exp(row["change"])
    if row["kind"] == "order_value":
        return f"geometric mean {row['value']:,.2f} vs {row['reference']:,.2f} (x{ratio:.2f}), z {row['z']:.1f}"
    return f"{row['value']:.4f} vs {row['reference']:.4f} per customer-day (x{ratio:.2f}), z {row['z']:.1f}"


_EXPECTED_WORDS = {
    "expected_auc": "expected AUC from the calibrated propensities (CBPE)",
    "expected_auc_lo": "2.5% quantile of the AUC under label noise",
    "expected_auc_hi": "97.5% quantile of the AUC under label noise",
    "expected_conversions": "expected buyers within the horizon (sum of propensities)",
    "expected_conversions_contacted": "expected buyers among the contacted customers",
    "expected_incremental_contacted": "expected incremental conversions of the contacts (sum of expected_uplift)",
    "expected_lift_top_decile": "expected conversion rate of decile 1 over the overall rate",
    "expected_lift_top_decile_corrected": "expected top-decile lift x realised / expected of the back-test",
    "mean_propensity": "mean propensity",
    "mean_propensity_reference": "mean propensity at training",
    "label_rate_reference": "purchase rate at the latest training cutoff",
    "contacted": "customers contacted",
    "customers": "customers scored",
    "horizon_days": "horizon of the propensity",
}


class ScoringMonitor:
    """Accumulates a scoring run chunk by chunk and compares it with the model's training reference.

    Parameters
    ----------
    reference
        The model's :class:`Reference` (``CampaignModel.reference_``).
    config
        Thresholds and sample size.
    expected_customers
        Customers the job expects to score (sets the sampling rate of the feature profile).
    calibrated
        Whether the scored propensities went through a calibration map (``None``: not known); passed on to
        :attr:`MonitorReport.calibrated`.
    """

    def __init__(
        self,
        reference: Reference,
        config: MonitorConfig | None = None,
        *,
        expected_customers: int,
        calibrated: bool | None = None,
    ) -> None:
        self.reference = reference
        self.calibrated = calibrated
        self.config = config or MonitorConfig()
        self.rate = min(1.0, self.config.sample_size / max(int(expected_customers), 1))
        self._bins = BinCounter(reference.features)
        inputs = getattr(reference, "inputs", None)  # None: a model saved before input summaries existed
        self._inputs = InputCounter(inputs) if inputs is not None else None
        self._propensity: list[np.ndarray] = []
        self._decile: list[np.ndarray] = []
        self._contacted: list[np.ndarray] = []
        self._uplift: list[np.ndarray] = []
        self._channels: dict[str, int] = {}

    def add_features(self, X: pl.DataFrame) -> None:
        """Profile the feature rows of sampled customers (columns as the model's feature set)."""
        self._bins.add(X)

    def add_input_tally(self, tally: Any) -> None:
        """Add the tally of a chunk's input rows in the reference's window (every customer, not a sample).

        Tallied by :func:`omni_ml.monitor._events.tally_window`, in this process or on a Spark executor.
        """
        if self._inputs is not None:
            self._inputs.add_tally(tally)

    def add_scores(self, frame: pl.DataFrame) -> None:
        """Add a scored chunk of the campaign table (``propensity, propensity_decile, best_channel``)."""
        self._propensity.append(frame["propensity"].cast(pl.Float64).fill_null(np.nan).to_numpy())
        self._decile.append(frame["propensity_decile"].cast(pl.Int64).fill_null(0).to_numpy())
        contacted = (frame["best_channel"] != NO_CONTACT).fill_null(False).to_numpy()  # noqa: FBT003
        self._contacted.append(contacted)
        if "expected_uplift" in frame.columns:
            self._uplift.append(frame["expected_uplift"].cast(pl.Float64).fill_null(0.0).to_numpy())
        for channel, n in frame["best_channel"].value_counts().iter_rows():
            if channel != NO_CONTACT and channel is not None:
                self._channels[channel] = self._channels.get(channel, 0) + int(n)

    def finish(self, *, as_of: dt.datetime, previous: Mapping[str, float] | None = None) -> MonitorReport:
        """Compare everything seen with the reference; ``previous`` holds the last run's channel shares."""
        cfg, ref = self.config, self.reference
        p = np.concatenate(self._propensity) if self._propensity else np.zeros(0)
        dec = np.concatenate(self._decile) if self._decile else np.zeros(0, dtype=np.int64)
        contacted = np.concatenate(self._contacted) if self._contacted else np.zeros(0, dtype=bool)
        n = int(p.size)
        features = self._feature_table()
        occupancy = np.bincount(np.clip(dec, 1, N_DECILES) - 1, minlength=N_DECILES)[:N_DECILES] / max(n, 1)
        score_psi = psi(ref.decile_shares, occupancy) if n else 0.0
        finite = np.isfinite(p)
        mean_p = float(p[finite].mean()) if finite.any() else float("nan")
        rates = [
            float(p[(dec == d) & finite].mean()) if ((dec == d) & finite).any() else float("nan") for d in range(1, 11)
        ]
        deciles = pl.DataFrame(
            {
                "decile": list(range(1, N_DECILES + 1)),
                "share": occupancy.tolist(),
                "share_reference": list(ref.decile_shares),
                "expected_rate": rates,
                "expected_lift": [r / mean_p if mean_p > 0 else float("nan") for r in rates],
            }
        )
        auc = expected_auc(p[finite], p[finite])
        lo, hi = expected_auc_band(p[finite], p[finite])
        uplift = np.concatenate(self._uplift) if self._uplift else np.zeros(n)
        expected = {
            "expected_auc": auc,
            "expected_auc_lo": lo,
            "expected_auc_hi": hi,
            "expected_conversions": float(np.nansum(p)),
            "expected_conversions_contacted": float(np.nansum(p[contacted])),
            "expected_incremental_contacted": float(np.nansum(uplift[contacted])),
            "expected_lift_top_decile": rates[0] / mean_p if mean_p > 0 else float("nan"),
            "expected_lift_top_decile_corrected": (rates[0] / mean_p if mean_p > 0 else float("nan"))
            * ref.lift_correction,
            "mean_propensity": mean_p,
            "mean_propensity_reference": ref.mean_propensity,
            "label_rate_reference": ref.label_rate,
            "contacted": float(contacted.sum()),
            "customers": float(n),
            "horizon_days": float(ref.horizon_days),
        }
        channels = self._channel_table(n, previous)
        inputs = self._inputs.compare(cfg) if self._inputs is not None else pl.DataFrame(schema=INPUT_SCHEMA)
        verdict, reasons = self._verdict(features, score_psi, channels, inputs)
        return MonitorReport(
            as_of=as_of,
            customers=n,
            sampled=self._bins.rows,
            verdict=verdict,
            reasons=tuple(reasons),
            features=features,
            deciles=deciles,
            channels=channels,
            expected=expected,
            score_psi=float(score_psi),
            config=cfg,
            inputs=inputs,
            inputs_days=self._inputs.reference.window_days if self._inputs is not None else 0,
            calibrated=self.calibrated,
        )

    def _feature_table(self) -> pl.DataFrame:
        cfg = self.config
        shares = self._bins.shares()
        rows = []
        for prof in self.reference.features:
            current = shares[prof.name]
            cur, null_now, _ = current
            ref_full = np.append(np.asarray(prof.shares) * (1 - prof.null_share), prof.null_share)
            cur_full = np.append(cur * (1 - null_now), null_now)
            value, df, inv_n = drift_detail(prof, reference_binned(prof), current) if self._bins.rows else (0, 2, 0)
            js = js_distance(ref_full, cur_full) if self._bins.rows else 0.0
            factor = cfg.outbound_factor if prof.outbound else cfg.natural_factor
            natural = factor * prof.natural_psi
            noise = psi_noise(df, inv_n, cfg.psi_alpha)
            if abs(null_now - prof.null_share) >= max(cfg.null_share_bad, factor * prof.natural_null_change):
                flag = "nulls"
            elif value >= max(cfg.psi_bad, natural, noise) and not prof.outbound:
                flag = "drift"
            elif value >= max(cfg.psi_warn, natural, noise):
                flag = "shift"
            else:
                flag = "ok"
            threshold = max(cfg.psi_bad, natural, noise)
            rows.append(
                (prof.name, prof.description, prof.kind, value, prof.natural_psi, noise, threshold, js, null_now,
                 prof.null_share, flag)
            )  # fmt: skip
        schema = {
            "feature": pl.String,
            "description": pl.String,
            "kind": pl.String,
            "psi": pl.Float64,
            "natural_psi": pl.Float64,
            "noise_psi": pl.Float64,
            "threshold": pl.Float64,
            "js_distance": pl.Float64,
            "null_share": pl.Float64,
            "null_share_reference": pl.Float64,
            "flag": pl.String,
        }
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        severity = pl.col("flag").replace_strict({"nulls": 0, "drift": 0, "shift": 1, "ok": 2}, return_dtype=pl.Int8)
        return frame.sort([severity, "psi", "feature"], descending=[False, True, False])

    def _channel_table(self, n: int, previous: Mapping[str, float] | None) -> pl.DataFrame:
        prev = dict(previous or {})
        names = sorted(set(self._channels) | set(prev))
        rows = []
        for c in names:
            share = self._channels.get(c, 0) / n if n else 0.0
            before = prev.get(c)
            moved = before is not None and abs(share - before) >= self.config.channel_share_warn
            rows.append((c, self._channels.get(c, 0), share, before, "moved" if moved else "ok"))
        schema = {"channel": pl.String, "contacted": pl.Int64, "share": pl.Float64, "share_previous": pl.Float64,
                  "flag": pl.String}  # fmt: skip
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _verdict(
        self, features: pl.DataFrame, score_psi: float, channels: pl.DataFrame, inputs: pl.DataFrame
    ) -> tuple[Verdict, list[str]]:
        cfg = self.config
        bad, warn = [], []
        drift = features.filter(pl.col("flag").is_in(["drift", "nulls"]))
        if drift.height:
            names = ", ".join(drift["feature"].head(3).to_list())
            bad.append(f"{drift.height} feature{'s' if drift.height != 1 else ''} drifted (e.g. {names})")
        drifted = inputs.filter(pl.col("flag") == "drift")
        if drifted.height:
            names = ", ".join(drifted["item"].head(3).to_list())
            bad.append(f"{drifted.height} input summar{'ies' if drifted.height != 1 else 'y'} drifted (e.g. {names})")
        shifted_inputs = int((inputs["flag"] == "shift").sum())
        if shifted_inputs:
            warn.append(f"{shifted_inputs} input summar{'ies' if shifted_inputs != 1 else 'y'} shifted")
        if score_psi >= cfg.score_psi_bad:
            bad.append(f"decile occupancy moved (PSI {score_psi:.2f} >= {cfg.score_psi_bad})")
        elif score_psi >= cfg.score_psi_warn:
            warn.append(f"decile occupancy shifted (PSI {score_psi:.2f})")
        shifted = int((features["flag"] == "shift").sum())
        if shifted:
            warn.append(f"{shifted} feature{'s' if shifted != 1 else ''} shifted")
        moved = channels.filter(pl.col("flag") == "moved")["channel"].to_list()
        if moved:
            warn.append(f"contacted share moved on {', '.join(moved)}")
        if self._bins.missing:
            bad.append(f"{len(self._bins.missing)} feature(s) missing from the scored features")
        if bad:
            return "bad", bad + warn
        if warn:
            return "warn", warn
        return "ok", []
