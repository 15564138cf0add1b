"""Reuse one simulated world across notebooks and scripts, and read its truth the way they need it.

:func:`ensure_world` simulates into a directory only when it does not already hold a complete world
simulated with the same config (``truth/world.json``), so six notebooks share one world and a changed
config never silently reuses a stale one. :func:`purchase_outcomes` and :func:`policy_value` turn the
truth tables into what an experiment is judged by: who really bought in the future window, and what a
set of channel decisions is worth by the true channel response.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from omni_ml.data import NO_CONTACT
from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.simulate.config import SimulationConfig
from omni_ml.simulate.continuation import load_config
from omni_ml.simulate.events import EVENT_TYPES
from omni_ml.simulate.world import simulate

__all__ = ["ensure_world", "policy_value", "purchase_outcomes", "world_window"]

_TABLES = ("events", "contacts", "consents", "identity_links", "customers")
_TRUTH = ("identity", "propensity", "channel_response", "future_events")


def _complete(path: Path) -> bool:
    return all((path / f"{n}.parquet").is_file() for n in _TABLES) and all(
        (path / "truth" / f"{n}.parquet").is_file() for n in _TRUTH
    )


def _current_events(path: Path) -> bool:
    """Whether the world was written by a simulator with today's event types (older ones lack outcome events)."""
    recorded = json.loads((path / "truth" / "world.json").read_text()).get("event_types")
    return recorded == list(EVENT_TYPES)


def ensure_world(config: SimulationConfig, path: str | Path) -> Path:
    """The world simulated with ``config`` in ``path``: reused when already there, else (re)simulated.

    Parameters
    ----------
    config
        The world's settings (e.g. ``preset("small")``).
    path
        Directory of the world. Reused when it holds every table and ``truth/world.json`` records
        exactly ``config`` and the simulator's current event types; a directory written by
        :func:`simulate` with another config (or by an older simulator) is replaced.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ConfigError
        ``path`` exists, is not empty and is not a simulated world (it is never deleted then).

    Examples
    --------
    >>> import tempfile
    >>> from omni_ml.simulate import preset
    >>> d = tempfile.mkdtemp()
    >>> w = ensure_world(preset("small", n_customers=100), d)
    >>> stamp = (w / "events.parquet").stat().st_mtime_ns
    >>> (ensure_world(preset("small", n_customers=100), d) / "events.parquet").stat().st_mtime_ns == stamp
    True
    """
    out = Path(path)
    if out.is_dir() and any(out.iterdir()):
        try:
            current: SimulationConfig | None = load_config(out)
        except ConfigError:
            current = None
        if current is None:
            msg = (
                f"ensure_world: {str(out)!r} is not empty and holds no simulated world (no readable "
                "truth/world.json). Hint: choose a new directory; ensure_world never deletes foreign files."
            )
            raise ConfigError(msg)
        if current == config and _complete(out) and _current_events(out):
            return out
        shutil.rmtree(out)
    return simulate(config, out)


def world_window(world: str | Path) -> tuple[dt.datetime, int]:
    """The world's ``end`` (UTC midnight: where history stops and the truth's future starts) and its future days.

    Examples
    --------
    >>> import tempfile
    >>> from omni_ml.simulate import preset
    >>> world_window(ensure_world(preset("small", n_customers=50), tempfile.mkdtemp()))
    (datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), 30)
    """
    cfg = load_config(world)
    end = dt.datetime(cfg.end.year, cfg.end.month, cfg.end.day, tzinfo=dt.UTC)
    return end, int(cfg.future_days)


def purchase_outcomes(world: str | Path, horizon_days: int | None = None) -> pl.DataFrame:
    """Per true person: the oracle probability and whether they really bought in ``[end, end + horizon)``.

    Parameters
    ----------
    world
        A directory written by :func:`simulate`.
    horizon_days
        Defaults to the world's ``future_days`` (the horizon ``p_purchase`` refers to); a shorter
        horizon changes ``bought`` but not ``p_purchase``.

    Returns
    -------
    polars.DataFrame
        ``customer_id, p_purchase, bought`` (Int8 0/1), one row per person, sorted by ``customer_id``.
    """
    root = Path(world)
    end, future = world_window(root)
    horizon = future if horizon_days is None else int(horizon_days)
    if not 0 < horizon <= future:
        msg = f"purchase_outcomes: horizon_days={horizon_days!r} must be in 1..{future} (the world's future_days)."
        raise ConfigError(msg)
    oracle = pl.read_parquet(root / "truth" / "propensity.parquet")
    buyers = (
        pl.scan_parquet(root / "truth" / "future_events.parquet")
        .filter(
            (pl.col("event_type") == "purchase")
            & (pl.col("timestamp") >= end)
            & (pl.col("timestamp") < end + dt.timedelta(days=horizon))
        )
        .select("customer_id")
        .unique()
        .with_columns(pl.lit(1, pl.Int8).alias("bought"))
        .collect()
    )
    return (
        oracle.join(buyers, on="customer_id", how="left")
        .with_columns(pl.col("bought").fill_null(0))
        .sort("customer_id")
    )


def policy_value(decisions: pl.DataFrame, world: str | Path | pl.DataFrame, conversion_value: float) -> dict[str, Any]:
    """What channel decisions are worth by the world's true channel response.

    The value of a decision is ``(p_if_contacted - p_if_not) * conversion_value - cost`` of its channel
    (``truth/channel_response.parquet``), 0 for ``no_contact``.

    Parameters
    ----------
    decisions
        ``customer_id, best_channel`` (e.g. :func:`omni_ml.policy.decide` or a campaign file).
    world
        A simulated world directory, or its ``channel_response`` table.
    conversion_value
        Value of one conversion, in the cost's currency.

    Returns
    -------
    dict
        ``value`` (total), ``value_per_customer``, ``contacts``, ``customers``, ``true_conversions``
        (expected extra conversions) and ``contacts_without_true_consent`` (decisions on a channel the
        truth marks as not consented; should be 0).

    Raises
    ------
    SchemaError
        ``decisions`` lacks ``customer_id`` or ``best_channel``, or names a customer twice.
    """
    missing = [c for c in ("customer_id", "best_channel") if c not in decisions.columns]
    if missing:
        msg = f"decisions: missing column(s) {missing}; found {decisions.columns}. Hint: pass decide()'s output."
        raise SchemaError(msg)
    dup = decisions.filter(pl.col("customer_id").is_duplicated())
    if dup.height:
        msg = (
            f"decisions.customer_id: {dup.height:,} rows repeat a customer (e.g. {dup['customer_id'][0]!r}). "
            "Hint: one decision per customer."
        )
        raise SchemaError(msg)
    truth = (
        world
        if isinstance(world, pl.DataFrame)
        else pl.read_parquet(Path(world) / "truth" / "channel_response.parquet")
    )
    j = decisions.select("customer_id", "best_channel").join(
        truth, left_on=["customer_id", "best_channel"], right_on=["customer_id", "channel"], how="left"
    )
    contacted = pl.col("best_channel") != NO_CONTACT
    out = j.select(
        pl.when(contacted)
        .then((pl.col("p_if_contacted") - pl.col("p_if_not")) * conversion_value - pl.col("cost"))
        .otherwise(0.0)
        .fill_null(0.0)
        .sum()
        .alias("value"),
        pl.when(contacted).then(pl.col("p_if_contacted") - pl.col("p_if_not")).fill_null(0.0).sum().alias("conv"),
        contacted.sum().alias("contacts"),
        (contacted & (pl.col("consented") == False)).sum().alias("bad"),  # noqa: E712
    ).row(0, named=True)
    n = decisions.height
    return {
        "value": float(out["value"]),
        "value_per_customer": float(out["value"]) / n if n else 0.0,
        "contacts": int(out["contacts"]),
        "customers": n,
        "true_conversions": float(out["conv"]),
        "contacts_without_true_consent": int(out["bad"]),
    }
