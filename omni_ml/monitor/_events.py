"""Input-data summaries: the histories feed of the window before a scoring date vs the training windows.

Per-customer features move little when something changes for a minority of rows (a price change moves
only the month's buyers' amounts); data-drift tools therefore also watch the *input rows*. This module
tallies, over the ``window_days`` before a moment, without keeping any row:

* the volume of every cell -- ``events:<event_type>:<channel>``, ``contacts:<channel>`` (messages sent),
  ``consents:<channel>:withdrawn`` -- per customer-day (customers: those with an event before the
  window's end). Consent grants are not watched: they come with signups, i.e. with acquisition;
* the order value of purchases: count, sum and sum of squares of ``ln(amount)`` and the counts in fixed
  bins of it (the training windows' deciles);
* the shares of each event cell among events (``event_mix``) and of each channel among contacts
  (``contact_mix``).

At training (:func:`input_reference`) the windows ending at each training cutoff and at the training
date are tallied; the reference is their pool (:class:`InputReference`, aggregates only), and each
window compared with the pool of the others gives the item's natural movement (the largest
standardised change: seasonality, campaign calendar and over-dispersion of the counts). A scoring run
(:class:`InputCounter`, fed chunk by chunk) is compared with the pool:

* volumes: the log rate ratio (with half an event added on each side) and its Poisson z statistic;
* order value: the change of the mean log amount and its Welch z statistic (a 1.6x price shock moves
  every purchase by ``ln 1.6 = 0.47``); PSI and Kolmogorov-Smirnov distance of the bins for reading;
* mixes: the population stability index.

A volume drifts when its z statistic passes ``max(input_z_bad, natural_factor * natural z)`` *and* its
log ratio passes ``max(volume_change_min, natural_factor * natural change)`` (``outbound_factor`` instead
of ``natural_factor`` for contacts sent and the events on contactable channels, which answer them and so
follow our own campaign calendar: :func:`outbound`). The order value drifts when its z statistic passes
``input_z_bad`` *and* its change passes ``max(order_value_change_min, natural_factor * natural change)``:
its natural movement is judged on the change, not on z (a z statistic grows with the month's purchases, so
a busy training month would raise the bar for a real price change). Significant and large enough to
matter, so a large population does not flag tiny moves and a rare cell (a few consent changes a month)
needs more than its own month-to-month noise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from omni_ml._time import as_utc, before, window

__all__ = [
    "INPUT_SCHEMA",
    "ORDER_VALUE",
    "InputCounter",
    "InputItem",
    "InputReference",
    "WindowTally",
    "input_reference",
    "tally_window",
]

ORDER_VALUE = "order_value:purchase"
"""Name of the order-value item (distribution of ``ln(amount)`` of purchases)."""
EVENT_MIX = "event_mix"
CONTACT_MIX = "contact_mix"
_MAX_CELLS = 64
_N_BINS = 10
_HALF = 0.5


@dataclasses.dataclass
class WindowTally:
    """Counts of one window (or of a scoring run's chunks added up); no row and no identifier.

    Attributes
    ----------
    customers
        Customers with an event before the window's end (the denominator of the rates).
    days
        Window length in days.
    counts
        Rows per cell (``events:<type>:<channel>``, ``contacts:<channel>``, ``consents:<channel>:withdrawn``).
    amount_n, amount_sum, amount_sumsq
        Purchases with a positive amount and the sum / sum of squares of ``ln(amount)``.
    amount_bins
        Counts of ``ln(amount)`` per bin of the reference edges (empty before the edges are known).
    """

    customers: int = 0
    days: float = 0.0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    amount_n: int = 0
    amount_sum: float = 0.0
    amount_sumsq: float = 0.0
    amount_bins: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def exposure(self) -> float:
        """Customer-days of the window."""
        return float(self.customers) * self.days

    def add(self, other: WindowTally) -> None:
        """Add another tally of the same window (another chunk of customers)."""
        self.customers += other.customers
        self.days = other.days or self.days
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.amount_n += other.amount_n
        self.amount_sum += other.amount_sum
        self.amount_sumsq += other.amount_sumsq
        if other.amount_bins.size:
            self.amount_bins = other.amount_bins + (self.amount_bins if self.amount_bins.size else 0)


def _cells(frame: pl.LazyFrame, table: str, keys: Sequence[str], start: dt.datetime, end: dt.datetime) -> pl.LazyFrame:
    when = window(start, end=end)
    parts = [pl.lit(table)] + [pl.col(k).cast(pl.String).fill_null("unknown") for k in keys]
    return frame.filter(when).group_by(pl.concat_str(parts, separator=":").alias("cell")).len()


def tally_window(hist: Any, end: dt.datetime, days: int, edges: Sequence[float] = ()) -> WindowTally:
    """Tally the rows of ``hist`` (a :class:`~omni_ml.data.Histories`) in ``[end - days, end)``.

    ``edges`` are the interior bin edges of ``ln(amount)`` for ``amount_bins``.
    """
    tally, x = _tally(hist, end, days)
    tally.amount_bins = _bin(x, edges)
    return tally


def _bin(x: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)


def _tally(hist: Any, end: dt.datetime, days: int) -> tuple[WindowTally, np.ndarray]:
    end = as_utc(end)
    start = end - dt.timedelta(days=days)
    events = hist.events
    frames = [_cells(events, "events", ["event_type", "channel"], start, end)]
    if hist.sent_contacts is not None:
        frames.append(_cells(hist.sent_contacts, "contacts", ["channel"], start, end))
    if hist.consents is not None:
        withdrawn = hist.consents.filter(~pl.col("granted")).with_columns(state=pl.lit("withdrawn"))
        frames.append(_cells(withdrawn, "consents", ["channel", "state"], start, end))
    purchase = window(start, end=end) & (pl.col("event_type") == "purchase") & (pl.col("amount") > 0)
    amounts = events.filter(purchase).select(pl.col("amount").cast(pl.Float64).log().alias("x"))
    customers = events.filter(before(end)).select(pl.col("customer_id").n_unique().alias("n"))
    results = pl.collect_all([*frames, amounts, customers])
    counts: dict[str, int] = {}
    for part in results[: len(frames)]:
        for cell, n in part.iter_rows():
            counts[cell] = counts.get(cell, 0) + int(n)
    x = results[-2]["x"].to_numpy()
    tally = WindowTally(
        customers=int(results[-1]["n"][0]),
        days=float(days),
        counts=counts,
        amount_n=int(x.size),
        amount_sum=float(x.sum()),
        amount_sumsq=float(np.square(x).sum()),
    )
    return tally, x


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One watched input summary of the reference (pooled training windows).

    Attributes
    ----------
    name, description
        ``events:<type>:<channel>``, ``contacts:<channel>``, ``consents:<channel>:withdrawn``,
        :data:`ORDER_VALUE`, ``event_mix`` or ``contact_mix``; the same in words.
    kind
        ``volume`` (rows per customer-day), ``order_value`` or ``mix``.
    count, exposure
        Volume: rows and customer-days of the pooled windows. Order value: purchases and 0.
    mean, var
        Order value: mean and variance of ``ln(amount)``. Otherwise 0.
    shares, cells
        Mix: share per cell (names in ``cells``, then ``other``). Order value: share per bin. Else empty.
    natural_z, natural_change
        The largest |z| and |change| of one training window against the pool of the others (mix: the
        largest PSI between consecutive windows, in ``natural_change``).
    """

    name: str
    description: str
    kind: str
    count: float = 0.0
    exposure: float = 0.0
    mean: float = 0.0
    var: float = 0.0
    shares: tuple[float, ...] = ()
    cells: tuple[str, ...] = ()
    natural_z: float = 0.0
    natural_change: float = 0.0


@dataclasses.dataclass(frozen=True)
class InputReference:
    """The input summaries of the training windows (aggregates only: no identifier, no per-customer row).

    Attributes
    ----------
    window_days
        Length of each window (a scoring run is summarised over the same length before its date).
    windows
        Training windows pooled.
    customers
        Mean customers per window (denominator of the rates).
    amount_edges
        Interior edges of the bins of ``ln(amount)`` (deciles of the pooled purchases).
    items
        One :class:`InputItem` per cell, the order value and the two mixes.
    """

    window_days: int
    windows: int
    customers: float
    amount_edges: tuple[float, ...]
    items: tuple[InputItem, ...]

    def item(self, name: str) -> InputItem:
        """The item called ``name``."""
        for it in self.items:
            if it.name == name:
                return it
        msg = f"the input reference has no item {name!r}"
        raise KeyError(msg)


def outbound(cell: str) -> bool:
    """Whether a cell counts contacts we sent or the responses to them (judged with ``outbound_factor``).

    Responses are the events on a contactable channel (opens, clicks, redemptions, call outcomes): like the
    contacts, they follow our own campaign calendar.
    """
    from omni_ml.data import CONTACTABLE_CHANNELS

    parts = cell.split(":")
    return parts[0] == "contacts" or (parts[0] == "events" and len(parts) == 3 and parts[2] in CONTACTABLE_CHANNELS)


def describe_cell(cell: str) -> str:
    """A cell name in words: ``events:view:web`` -> ``view events on web per customer-day``."""
    parts = cell.split(":")
    if parts[0] == "events" and len(parts) == 3:
        return f"{parts[1]} events on {parts[2]} per customer-day"
    if parts[0] == "contacts" and len(parts) == 2:
        return f"{parts[1]} contacts sent per customer-day"
    if parts[0] == "consents" and len(parts) == 3:
        return f"{parts[1]} consents {parts[2]} per customer-day"
    return f"{cell} per customer-day"


def rate_change(count: float, exposure: float, ref_count: float, ref_exposure: float) -> tuple[float, float]:
    """Log rate ratio (half a row added on each side) and its Poisson z statistic."""
    if exposure <= 0 or ref_exposure <= 0:
        return 0.0, 0.0
    a, b = count + _HALF, ref_count + _HALF
    change = math.log(a / exposure) - math.log(b / ref_exposure)
    z = (count / exposure - ref_count / ref_exposure) / math.sqrt(a / exposure**2 + b / ref_exposure**2)
    return change, z


def mean_change(
    n: int, total: float, sumsq: float, ref_n: float, ref_mean: float, ref_var: float
) -> tuple[float, float]:
    """Change of the mean of ``ln(amount)`` and its Welch z statistic (0, 0 with fewer than two purchases)."""
    if n < 2 or ref_n < 2:
        return 0.0, 0.0
    mean = total / n
    var = max((sumsq - n * mean * mean) / (n - 1), 0.0)
    se = math.sqrt(var / n + ref_var / ref_n)
    change = mean - ref_mean
    return change, change / se if se > 0 else 0.0


def _moments(tallies: Iterable[WindowTally]) -> tuple[int, float, float]:
    n, s, q = 0, 0.0, 0.0
    for t in tallies:
        n, s, q = n + t.amount_n, s + t.amount_sum, q + t.amount_sumsq
    mean = s / n if n else 0.0
    var = max((q - n * mean * mean) / (n - 1), 0.0) if n > 1 else 0.0
    return n, mean, var


def _mix(tally: WindowTally, cells: Sequence[str], table: str) -> np.ndarray:
    counts = np.array([tally.counts.get(c, 0) for c in cells], dtype=np.float64)
    other = sum(v for k, v in tally.counts.items() if k.startswith(f"{table}:") and k not in set(cells))
    counts = np.append(counts, other)
    total = counts.sum()
    return counts / total if total else counts


def _pool(tallies: Sequence[WindowTally]) -> WindowTally:
    pooled = WindowTally()
    for t in tallies:
        pooled.add(t)
    return pooled


def _exposure(tallies: Sequence[WindowTally]) -> float:
    return float(sum(t.exposure for t in tallies))


def input_reference(hist: Any, ends: Sequence[dt.datetime], days: int) -> InputReference:
    """Tally the windows of ``days`` ending at each of ``ends`` and pool them into the reference.

    Parameters
    ----------
    hist
        Resolved histories (rows before the last end are used).
    ends
        Ends of the training windows (the training cutoffs and the training date).
    days
        Window length (the model's horizon).
    """
    from omni_ml.monitor._drift import psi

    ends = sorted({as_utc(e) for e in ends})
    tallied = [_tally(hist, end, days) for end in ends]
    raw = [t for t, _ in tallied]
    # bins of ln(amount): the deciles of the pooled purchases
    pooled_x = np.concatenate([x for _, x in tallied]) if tallied else np.zeros(0)
    deciles = np.quantile(pooled_x, np.arange(1, _N_BINS) / _N_BINS) if pooled_x.size else np.zeros(0)
    edges = tuple(float(e) for e in np.unique(deciles))
    for t, x in tallied:
        t.amount_bins = _bin(x, edges)
    pool = _pool(raw)
    exposure = _exposure(raw)
    items: list[InputItem] = []
    # volumes of the most common cells
    cells = sorted(pool.counts, key=lambda c: (-pool.counts[c], c))[:_MAX_CELLS]
    for cell in sorted(cells):
        nat_z, nat_c = 0.0, 0.0
        for i, t in enumerate(raw):
            rest = [r for j, r in enumerate(raw) if j != i]
            change, z = rate_change(
                t.counts.get(cell, 0), t.exposure, sum(r.counts.get(cell, 0) for r in rest), _exposure(rest)
            )
            nat_z, nat_c = max(nat_z, abs(z)), max(nat_c, abs(change))
        items.append(
            InputItem(cell, describe_cell(cell), "volume", count=float(pool.counts[cell]), exposure=exposure,
                      natural_z=nat_z, natural_change=nat_c)
        )  # fmt: skip
    n, mean, var = _moments(raw)
    nat_z, nat_c = 0.0, 0.0
    for i, t in enumerate(raw):
        rn, rmean, rvar = _moments(r for j, r in enumerate(raw) if j != i)
        change, z = mean_change(t.amount_n, t.amount_sum, t.amount_sumsq, rn, rmean, rvar)
        nat_z, nat_c = max(nat_z, abs(z)), max(nat_c, abs(change))
    bins = pool.amount_bins.astype(np.float64) if pool.amount_bins.size else np.zeros(len(edges) + 1)
    items.append(
        InputItem(
            ORDER_VALUE,
            "order value of purchases (mean of ln amount)",
            "order_value",
            count=float(n),
            mean=mean,
            var=var,
            shares=tuple(float(b) for b in (bins / bins.sum() if bins.sum() else bins)),
            natural_z=nat_z,
            natural_change=nat_c,
        )
    )
    for name, table, words in ((EVENT_MIX, "events", "share of each event type and channel among events"),
                               (CONTACT_MIX, "contacts", "share of each channel among contacts sent")):  # fmt: skip
        mix_cells = tuple(c for c in cells if c.startswith(f"{table}:"))
        if not mix_cells:
            continue
        shares = _mix(pool, mix_cells, table)
        moves = [psi(_mix(a, mix_cells, table), _mix(b, mix_cells, table)) for a, b in zip(raw, raw[1:], strict=False)]
        items.append(
            InputItem(name, words, "mix", shares=tuple(float(s) for s in shares), cells=mix_cells,
                      natural_change=float(max(moves, default=0.0)))
        )  # fmt: skip
    customers = float(np.mean([t.customers for t in raw])) if raw else 0.0
    return InputReference(
        window_days=int(days), windows=len(raw), customers=customers, amount_edges=edges, items=tuple(items)
    )


class InputCounter:
    """Tallies a scoring run's input window chunk by chunk and compares it with an :class:`InputReference`."""

    def __init__(self, reference: InputReference) -> None:
        self.reference = reference
        self.tally = WindowTally(days=float(reference.window_days))

    def add_tally(self, tally: WindowTally) -> None:
        """Add a chunk's window ``[as_of - window_days, as_of)``, tallied by :func:`tally_window`."""
        self.tally.add(tally)

    def compare(self, config: Any) -> pl.DataFrame:
        """One row per reference item (and per new cell): value, reference, change, z, threshold, flag, severity."""
        from omni_ml.monitor._drift import psi

        ref, t = self.reference, self.tally
        rows: list[tuple[Any, ...]] = []
        known = {it.name for it in ref.items}
        items = list(ref.items)
        for cell in sorted(set(t.counts) - known):
            items.append(InputItem(cell, describe_cell(cell) + " (not seen in training)", "volume",
                                   exposure=ref.items[0].exposure if ref.items else 0.0))  # fmt: skip
        for it in items:
            ks = float("nan")
            distance = float("nan")
            if it.kind == "volume":
                value = t.counts.get(it.name, 0) / t.exposure if t.exposure else 0.0
                reference = it.count / it.exposure if it.exposure else 0.0
                change, z = rate_change(t.counts.get(it.name, 0), t.exposure, it.count, it.exposure)
                floor = config.volume_change_min
            elif it.kind == "order_value":
                value = math.exp(t.amount_sum / t.amount_n) if t.amount_n else float("nan")
                reference = math.exp(it.mean) if it.count else float("nan")
                change, z = mean_change(t.amount_n, t.amount_sum, t.amount_sumsq, it.count, it.mean, it.var)
                floor = config.order_value_change_min
                if t.amount_bins.size and t.amount_n:
                    cur = t.amount_bins / t.amount_n
                    distance = psi(it.shares, cur)
                    ks = float(np.max(np.abs(np.cumsum(cur) - np.cumsum(it.shares))))
            else:
                table = "events" if it.name == EVENT_MIX else "contacts"
                cur = _mix(t, it.cells, table)
                value = reference = float("nan")
                distance = psi(it.shares, cur) if cur.sum() else 0.0
                change, z = distance, float("nan")
                floor = config.psi_bad
            if it.kind == "mix":
                threshold = max(config.psi_bad, config.natural_factor * it.natural_change)
                severity = change / threshold
                flag = "drift" if severity >= 1 else "shift" if change >= config.psi_warn else "ok"
            else:
                factor = config.outbound_factor if outbound(it.name) else config.natural_factor
                if it.kind == "volume":  # counts move with the season and the campaign calendar
                    threshold = max(config.input_z_bad, factor * it.natural_z)
                    floor = max(floor, factor * it.natural_change)
                else:  # the order value: significant, and a move beyond what the training windows show
                    threshold = config.input_z_bad
                    floor = max(floor, config.natural_factor * it.natural_change)
                severity = min(abs(z) / threshold, abs(change) / floor)
                flag = "drift" if severity >= 1 else "shift" if severity >= 0.5 else "ok"  # noqa: PLR2004
            rows.append((it.name, it.description, it.kind, value, reference, change, it.natural_change, z,
                         it.natural_z, threshold, floor, distance, ks, severity, flag))  # fmt: skip
        return _sorted(pl.DataFrame(rows, schema=INPUT_SCHEMA, orient="row"))


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    rank = pl.col("flag").replace_strict({"drift": 0, "shift": 1, "ok": 2}, return_dtype=pl.Int8)
    return frame.sort([rank, "severity", "item"], descending=[False, True, False])


INPUT_SCHEMA: dict[str, Any] = {
    "item": pl.String,
    "description": pl.String,
    "kind": pl.String,
    "value": pl.Float64,
    "reference": pl.Float64,
    "change": pl.Float64,
    "natural_change": pl.Float64,
    "z": pl.Float64,
    "natural_z": pl.Float64,
    "threshold": pl.Float64,
    "change_min": pl.Float64,
    "psi": pl.Float64,
    "ks": pl.Float64,
    "severity": pl.Float64,
    "flag": pl.String,
}
"""Columns of :attr:`MonitorReport.inputs`."""
