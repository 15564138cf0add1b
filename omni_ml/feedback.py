"""Feed a campaign back into the histories: the decisions it logged become rows of the contacts table.

:func:`feedback` is the job behind ``omni-ml feedback CAMPAIGN_FILE DIR [--sent SENDS_FILE] --out DIR2``,
the step that closes the loop score -> send -> measure -> **feedback** -> train again. It writes a copy of
the histories directory ``DIR`` whose contacts table holds, in addition to its rows:

* every contact the campaign sent: without a sends log, each row whose ``best_channel`` is a channel (sent
  at the file's ``as_of``); with a sends log (``customer_id, channel, timestamp``), only the sends listed,
  each of which must be the channel the file chose for that customer;
* every **randomised pause**: a customer of the control group, or one whose explored action was
  ``no_contact`` (rule ``explore``), as a row on channel ``no_contact`` with cost 0. These are decisions,
  not messages (:attr:`omni_ml.data.Histories.sent_contacts` leaves them out of contact pressure and
  contact features); the channel model learns the no-contact outcome from them.

Every row carries ``campaign_id`` (default ``cmp-YYYYMMDD`` of the file's ``as_of``, the simulator's
naming), ``cost`` (the mean logged cost of the channel in ``DIR``, else the
:class:`~omni_ml.policy.PolicyConfig` default; 0 for a pause) and the file's ``assignment_probability``
(the probability of that action under the whole design: control group, exploration and policy), so
off-policy estimates and inverse-propensity weights are exact.

Rows of customers the histories do not know (the ``anon-`` ids identity resolution gives unlinked
cookies, which are never contactable) are counted in the summary and not written. **Idempotent**: a row
whose ``(customer_id, channel, campaign_id)`` is already in ``DIR``'s contacts is not added again, so
running feedback twice (or on a simulated continuation that already logged the sends) adds nothing.
**Nothing half-written**: the copy is assembled in a hidden temporary directory next to ``DIR2`` and
renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import warnings
from collections import Counter
from pathlib import Path

import polars as pl

from omni_ml.data import CONTACTABLE_CHANNELS, NO_CONTACT, TIMESTAMP, Histories, UnknownTableWarning, load_histories
from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.measure._inputs import checked_campaign, read_table

__all__ = ["FeedbackSummary", "feedback"]

MIN_KNOWN_SHARE = 0.5
"""A campaign file whose customers are mostly unknown to the histories (below this share known) is refused."""
_RANDOMISED = ("control_group", "explore")
_CONTACT_COLUMNS: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "identifier": pl.String(),
    "timestamp": TIMESTAMP,
    "channel": pl.String(),
    "campaign_id": pl.String(),
    "cost": pl.Float64(),
    "assignment_probability": pl.Float64(),
}


@dataclasses.dataclass(frozen=True)
class FeedbackSummary:
    """What :func:`feedback` added: rows per channel (``no_contact``: logged pauses) and rows already there."""

    out: Path
    campaign_id: str
    added: dict[str, int]
    already_present: int
    campaign_customers: int
    known_customers: int
    skipped_unknown: int = 0

    def to_text(self) -> str:
        """The summary ``omni-ml feedback`` prints."""
        sent = sum(n for c, n in self.added.items() if c != NO_CONTACT)
        lines = [
            f"histories with feedback: {self.out}",
            f"  campaign_id: {self.campaign_id}",
            f"  campaign customers: {self.campaign_customers:,} ({self.known_customers:,} known to the histories)",
            f"  contacts added: {sent:,}",
        ]
        lines += [f"    {c:<16}{n:>12,}" for c, n in sorted(self.added.items()) if c != NO_CONTACT]
        lines.append(f"  randomised pauses logged (no_contact): {self.added.get(NO_CONTACT, 0):,}")
        lines.append(f"  already in the contacts table (not added again): {self.already_present:,}")
        if self.skipped_unknown:
            lines.append(
                f"  not written: {self.skipped_unknown:,} rows of customers unknown to the histories (e.g. anon- ids)"
            )
        return "\n".join(lines)


def _campaign(campaign: str | Path | pl.DataFrame) -> tuple[pl.DataFrame, str]:
    frame, where = read_table(campaign, "campaign file")
    missing = [c for c in ("customer_id", "as_of", "best_channel", "assignment_probability") if c not in frame.columns]
    if missing:
        hint = (
            "Hint: score it again with this version of `omni-ml score` (every row then logs the probability of "
            "its action); without it importance weights cannot be exact."
            if "assignment_probability" in missing
            else "Hint: pass the file `omni-ml score` wrote."
        )
        msg = f"{where}: missing column(s) {missing}; found {frame.columns[:8]}{' ...' if frame.width > 8 else ''}. "
        raise SchemaError(msg + hint)
    frame = checked_campaign(frame, where)
    if "control_group" not in frame.columns:
        frame = frame.with_columns(pl.lit(False).alias("control_group"))
    if "rule" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("rule"))
    p = pl.col("assignment_probability")
    bad = frame.filter(p.is_null() | p.is_nan() | (p <= 0) | (p > 1))
    if bad.height:
        msg = (
            f"{where}: column assignment_probability: {bad.height:,} of {frame.height:,} rows are missing or outside "
            f"(0, 1] (e.g. {bad['customer_id'][0]!r}: {bad['assignment_probability'][0]}). Hint: pass the file "
            "`omni-ml score` wrote, unchanged."
        )
        raise SchemaError(msg)
    return frame, where


def _sends(sent: str | Path | pl.DataFrame, campaign: pl.DataFrame) -> pl.DataFrame:
    """The sends log checked against the campaign file: customer_id, channel, timestamp."""
    log, where = read_table(sent, "sends log (--sent)", hint="customer_id, channel, timestamp as parquet or csv.")
    missing = [c for c in ("customer_id", "channel", "timestamp") if c not in log.columns]
    if missing:
        msg = f"{where}: missing column(s) {missing}; found {log.columns}. Hint: customer_id, channel, timestamp."
        raise SchemaError(msg)
    ts = pl.col("timestamp")
    if log.schema["timestamp"] == pl.String:
        ts = ts.str.to_datetime(time_zone="UTC", strict=False)
    log = log.select(
        pl.col("customer_id").cast(pl.String),
        pl.col("channel").cast(pl.String).str.strip_chars().str.to_lowercase(),
        ts.cast(TIMESTAMP).alias("timestamp"),
    )
    if log["timestamp"].null_count():
        msg = f"{where}: column timestamp: {log['timestamp'].null_count():,} of {log.height:,} rows have no time."
        raise SchemaError(msg + " Hint: ISO 8601, e.g. 2025-01-01T09:30:00Z.")
    unknown = log.join(campaign.select("customer_id"), on="customer_id", how="anti")
    if unknown.height:
        msg = (
            f"{where}: column customer_id: {unknown.height:,} of {log.height:,} sends are to customers not in the "
            f"campaign file (e.g. {unknown['customer_id'][0]!r}). Hint: feed back the campaign file these sends "
            "came from."
        )
        raise SchemaError(msg)
    channels = log.join(campaign.select("customer_id", "best_channel"), on="customer_id", how="left")
    wrong = channels.filter(
        ~pl.col("channel").is_in(list(CONTACTABLE_CHANNELS)) | (pl.col("channel") != pl.col("best_channel"))
    )
    if wrong.height:
        ex = wrong.row(0, named=True)
        msg = (
            f"{where}: column channel: {wrong.height:,} of {log.height:,} sends are on an unknown channel or not "
            f"the campaign file's best_channel (e.g. {ex['customer_id']!r} sent {ex['channel']!r}, file chose "
            f"{ex['best_channel']!r}). Hint: only the chosen action has a known assignment probability; channels "
            f"are {list(CONTACTABLE_CHANNELS)}."
        )
        raise SchemaError(msg)
    dup = log.select("customer_id", "channel").is_duplicated()
    if dup.any():
        msg = (
            f"{where}: column customer_id: {int(dup.sum()):,} rows repeat a send (e.g. "
            f"{log.filter(dup)['customer_id'][0]!r}). Hint: one row per message sent."
        )
        raise SchemaError(msg)
    return log


def _costs(hist: Histories) -> dict[str, float]:
    from omni_ml.policy import PolicyConfig, costs_from_contacts

    default = PolicyConfig()
    return {c: default.cost(c) for c in CONTACTABLE_CHANNELS} | costs_from_contacts(hist)


def _known_customers(hist: Histories) -> pl.Series:
    frames = [
        lf.select("customer_id") for lf in (hist.events, hist.contacts, hist.consents, hist.customers) if lf is not None
    ]
    return pl.concat(frames).drop_nulls().unique().collect()["customer_id"]


def _write_contacts(tmp: Path, rows: pl.DataFrame) -> None:
    """Append ``rows`` to the contacts file of the copy ``tmp`` (parquet or csv, as it is; parquet when absent)."""
    parquet, csv = tmp / "contacts.parquet", tmp / "contacts.csv"
    if csv.exists():
        old = pl.read_csv(csv, infer_schema=False)
        new = rows.with_columns(
            pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
            pl.col("cost").cast(pl.String),
            pl.col("assignment_probability").cast(pl.String),
        ).select(pl.all().cast(pl.String))
        pl.concat([old, new], how="diagonal").write_csv(csv)
        return
    if parquet.exists():
        old = pl.read_parquet(parquet)
        if "timestamp" in old.columns and isinstance(old.schema["timestamp"], pl.Datetime):
            rows = rows.with_columns(pl.col("timestamp").cast(old.schema["timestamp"]))
        rows = pl.concat([old, rows], how="diagonal_relaxed")
    rows.write_parquet(parquet, compression="zstd")


def feedback(
    campaign: str | Path | pl.DataFrame,
    directory: str | Path,
    out: str | Path,
    *,
    sent: str | Path | pl.DataFrame | None = None,
    campaign_id: str | None = None,
    min_known: float = MIN_KNOWN_SHARE,
) -> FeedbackSummary:
    """Write a copy of ``directory`` whose contacts table also holds the campaign's sends and randomised pauses.

    Parameters
    ----------
    campaign
        The campaign file ``omni-ml score`` wrote (path or frame): ``customer_id, as_of, best_channel,
        assignment_probability`` (``control_group`` and ``rule`` mark the randomised pauses).
    directory
        The histories directory the campaign was scored on (or a later one, e.g. a simulated continuation).
    out
        The directory to write: must not exist, or be ``directory`` itself (then replaced when complete).
    sent
        Optional sends log ``customer_id, channel, timestamp`` (file or frame): only these sends are added,
        each must be the channel the file chose for its customer.
    campaign_id
        ``campaign_id`` of the added rows; default ``cmp-YYYYMMDD`` of the file's ``as_of``.
    min_known
        Refuse a campaign file when fewer than this share of its customers are known to ``directory``.

    Returns
    -------
    FeedbackSummary
        Rows added per channel, rows already present; ``.to_text()`` is the printed summary.

    Raises
    ------
    SchemaError
        The campaign file lacks ``assignment_probability`` (or another needed column), its customers are
        mostly unknown to ``directory``, or the sends log names customers or channels the file did not choose.
    ConfigError
        ``out`` exists and is not ``directory``.
    """
    source = Path(directory)
    target = Path(out)
    if not source.is_dir():
        msg = f"feedback: DIR {str(source)!r} is not a directory. Hint: pass the histories directory."
        raise SchemaError(msg)
    in_place = target.exists() and target.resolve() == source.resolve()
    if target.exists() and not in_place:
        msg = f"feedback: --out {str(target)!r} already exists. Hint: choose a new directory (or DIR itself)."
        raise ConfigError(msg)
    frame, where = _campaign(campaign)
    log = _sends(sent, frame) if sent is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownTableWarning)
        hist = load_histories(source)
    known = _known_customers(hist)
    n_known = int(frame["customer_id"].is_in(known.implode()).sum())
    if frame.height == 0 or n_known < min_known * frame.height:
        example = frame.filter(~pl.col("customer_id").is_in(known.implode()))["customer_id"]
        msg = (
            f"{where}: column customer_id: only {n_known:,} of {frame.height:,} customers are known to "
            f"{str(source)!r} (e.g. unknown {example[0] if example.len() else None!r}); feeding it back would "
            "log contacts for strangers. Hint: pass the histories directory the campaign was scored on."
        )
        raise SchemaError(msg)
    as_of = frame["as_of"][0]
    cid = campaign_id or f"cmp-{as_of:%Y%m%d}"
    price = _costs(hist)
    decided = frame.select("customer_id", "best_channel", "assignment_probability", "as_of", "control_group", "rule")
    if log is None:
        sends = decided.filter(pl.col("best_channel") != NO_CONTACT).select(
            "customer_id", pl.col("best_channel").alias("channel"), pl.col("as_of").alias("timestamp")
        )
    else:
        sends = log
    sends = sends.join(decided.select("customer_id", "assignment_probability"), on="customer_id", how="left")
    pauses = decided.filter(
        (pl.col("best_channel") == NO_CONTACT) & (pl.col("control_group") | pl.col("rule").is_in(list(_RANDOMISED)))
    ).select(
        "customer_id", pl.lit(NO_CONTACT).alias("channel"), pl.col("as_of").alias("timestamp"), "assignment_probability"
    )
    rows = (
        pl.concat([sends.with_columns(pl.col("timestamp").cast(TIMESTAMP)), pauses.cast({"timestamp": TIMESTAMP})])
        .with_columns(
            pl.lit(None, dtype=pl.String).alias("identifier"),
            pl.lit(cid).alias("campaign_id"),
            pl.col("channel").replace_strict(price, default=0.0, return_dtype=pl.Float64).alias("cost"),
        )
        .with_columns(pl.when(pl.col("channel") == NO_CONTACT).then(0.0).otherwise(pl.col("cost")).alias("cost"))
        .select(pl.col(k).cast(v) for k, v in _CONTACT_COLUMNS.items())
        .sort("customer_id", "channel")
    )
    # rows of customers the histories do not know (e.g. anon- ids the identity resolution made up for unlinked
    # cookies: never contactable) cannot become rows of its contacts table; they are counted, not written
    known_rows = pl.col("customer_id").is_in(known.implode())
    unknown = rows.filter(~known_rows).height
    rows = rows.filter(known_rows)
    key = ["customer_id", "channel", "campaign_id"]
    present = 0
    if hist.contacts is not None:
        existing = hist.contacts.select(key).unique().collect()
        fresh = rows.join(existing, on=key, how="anti")
        present = rows.height - fresh.height
        rows = fresh

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.feedback-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        shutil.copytree(source, tmp)
        if rows.height:
            _write_contacts(tmp, rows)
        if in_place:
            old = target.parent / f".{target.name}.replaced-{secrets.token_hex(4)}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    added = Counter(rows["channel"].to_list())
    return FeedbackSummary(
        out=target,
        campaign_id=cid,
        added=dict(sorted(added.items())),
        already_present=present,
        campaign_customers=frame.height,
        known_customers=n_known,
        skipped_unknown=unknown,
    )
