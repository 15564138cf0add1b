"""The feedback round trip: the contacts a campaign sent, appended to a histories directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from omni_ml._io import write_atomically
from omni_ml.data import CONTACTABLE_CHANNELS, TIMESTAMP
from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.measure._inputs import NO_CONTACT, read_campaign

__all__ = ["append_contacts", "feedback_contacts"]


_CONTACT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "identifier": pl.String(),
    "timestamp": TIMESTAMP,
    "channel": pl.String(),
    "campaign_id": pl.String(),
    "cost": pl.Float64(),
    "assignment_probability": pl.Float64(),
}


def feedback_contacts(
    campaign: str | Path | pl.DataFrame,
    *,
    campaign_id: str,
    sends: pl.DataFrame | None = None,
    control_fraction: float | None = None,
    costs: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """The contacts a campaign actually sent, as rows of the contacts table (see the module docstring).

    Parameters
    ----------
    campaign
        The campaign file (path or frame) with ``best_channel`` and ``control_group``.
    campaign_id
        ``campaign_id`` of the rows (also how :func:`append_contacts` recognises a repeated append).
    sends
        Optional log of what was really sent: ``customer_id, channel`` and optionally ``timestamp`` and
        ``cost``. Without it every ``best_channel != no_contact`` of the file counts as sent at ``as_of``.
        A send must match the customer's ``best_channel`` (the action whose probability is known).
    control_fraction
        The ``--control-fraction`` the file was scored with; default: the share of ``control_group`` rows
        (the hash draw makes it close to the configured fraction on large files).
    costs
        Cost per channel when ``sends`` has no cost (default: :class:`omni_ml.policy.PolicyConfig` costs).

    Returns
    -------
    polars.DataFrame
        Contacts schema ``customer_id, identifier (crm:<id>), timestamp, channel, campaign_id, cost,
        assignment_probability (= 1 - control_fraction)``, sorted by customer_id.

    Raises
    ------
    SchemaError
        A send to a customer not in the file, held out, or on another channel than its ``best_channel``.

    Examples
    --------
    >>> import datetime as dt
    >>> c = pl.DataFrame({"customer_id": ["a", "b", "c"], "as_of": [dt.datetime(2025, 1, 1)] * 3,
    ...                   "best_channel": ["email", "no_contact", "sms"], "control_group": [False, True, False]})
    >>> feedback_contacts(c, campaign_id="c1", control_fraction=0.1).select("customer_id", "channel",
    ...     "assignment_probability").rows()
    [('a', 'email', 0.9), ('c', 'sms', 0.9)]
    """
    from omni_ml.policy import PolicyConfig

    frame = read_campaign(campaign)
    if "best_channel" not in frame.columns:
        msg = f"campaign: no best_channel column ({frame.height:,} rows). Hint: pass the file omni-ml score wrote."
        raise SchemaError(msg)
    fraction = float(frame["control_group"].mean()) if control_fraction is None else float(control_fraction)  # type: ignore[arg-type]
    if not 0.0 <= fraction < 1.0:
        msg = f"control_fraction must be in [0, 1) (got {fraction})."
        raise ConfigError(msg)
    price = {c: PolicyConfig().cost(c) for c in CONTACTABLE_CHANNELS} | dict(costs or {})
    as_of = frame["as_of"][0]
    planned = frame.filter(pl.col("best_channel") != NO_CONTACT).select("customer_id", "best_channel")
    if sends is None:
        sent = planned.rename({"best_channel": "channel"}).with_columns(
            pl.lit(as_of).cast(TIMESTAMP).alias("timestamp"), pl.lit(None, dtype=pl.Float64).alias("cost")
        )
    else:
        missing = [c for c in ("customer_id", "channel") if c not in sends.columns]
        if missing:
            msg = f"sends: missing column(s) {missing}; found {sends.columns}. "
            msg += "Hint: customer_id, channel[, timestamp, cost]."
            raise SchemaError(msg)
        sent = sends.select(
            pl.col("customer_id").cast(pl.String),
            pl.col("channel").cast(pl.String),
            (
                pl.col("timestamp").cast(TIMESTAMP) if "timestamp" in sends.columns else pl.lit(as_of).cast(TIMESTAMP)
            ).alias("timestamp"),
            (pl.col("cost").cast(pl.Float64) if "cost" in sends.columns else pl.lit(None, dtype=pl.Float64)).alias(
                "cost"
            ),
        )
        check = sent.join(frame.select("customer_id", "best_channel", "control_group"), on="customer_id", how="left")
        bad = check.filter(pl.col("best_channel").is_null() | (pl.col("best_channel") != pl.col("channel")))
        if bad.height:
            ex = bad.row(0, named=True)
            why = (
                "is not in the campaign file"
                if ex["best_channel"] is None
                else f"was planned as {ex['best_channel']!r}"
                + (" (held out: control group)" if ex["control_group"] else "")
            )
            msg = (
                f"sends: {bad.height:,} of {sent.height:,} sends do not match the campaign file's best_channel "
                f"(e.g. {ex['customer_id']!r} sent {ex['channel']!r} but {why}). Hint: only sends of the planned "
                "channel have a known assignment probability; fix the log or drop those rows."
            )
            raise SchemaError(msg)
    return (
        sent.with_columns(
            ("crm:" + pl.col("customer_id")).alias("identifier"),
            pl.lit(campaign_id).alias("campaign_id"),
            pl.coalesce(pl.col("cost"), pl.col("channel").replace_strict(price, default=0.0, return_dtype=pl.Float64)),
            pl.lit(1.0 - fraction).alias("assignment_probability"),
        )
        .select(pl.col(k).cast(v) for k, v in _CONTACT_SCHEMA.items())
        .sort("customer_id", "timestamp")
    )


def append_contacts(directory: str | Path, contacts: pl.DataFrame) -> Path:
    """Append contact rows to ``DIRECTORY/contacts.parquet`` atomically (temporary file, then rename).

    Parameters
    ----------
    directory
        A histories directory (``contacts.parquet`` is created if absent; a csv contacts table is refused).
    contacts
        Rows in the contacts schema, e.g. from :func:`feedback_contacts`.

    Returns
    -------
    Path
        The contacts file.

    Raises
    ------
    SchemaError
        A ``contacts.csv`` in the directory, missing columns, or a ``campaign_id`` already in the file
        (appending the same campaign twice would double-count its contacts).
    """
    target_dir = Path(directory)
    if not target_dir.is_dir():
        msg = f"append_contacts: {str(target_dir)!r} is not a directory. Hint: pass a histories directory."
        raise SchemaError(msg)
    if (target_dir / "contacts.csv").exists():
        msg = f"append_contacts: {target_dir / 'contacts.csv'} is csv. Hint: convert it to contacts.parquet first."
        raise SchemaError(msg)
    missing = [c for c in ("customer_id", "timestamp", "channel", "campaign_id") if c not in contacts.columns]
    if missing:
        msg = f"contacts: missing column(s) {missing}; found {contacts.columns}. Hint: use feedback_contacts()."
        raise SchemaError(msg)
    target = target_dir / "contacts.parquet"
    new = contacts
    if target.exists():
        old = pl.read_parquet(target)
        repeated = set(old["campaign_id"].drop_nulls().unique().to_list()) & set(
            contacts["campaign_id"].drop_nulls().unique().to_list()
        )
        if repeated:
            msg = (
                f"contacts: campaign_id {sorted(repeated)[0]!r} is already in {target} ({old.height:,} rows); "
                "appending it again would double-count its contacts. Hint: use a new campaign_id per campaign."
            )
            raise SchemaError(msg)
        new = pl.concat([old, contacts], how="diagonal_relaxed")
    return write_atomically(target, new.write_parquet, mkdir=False)
