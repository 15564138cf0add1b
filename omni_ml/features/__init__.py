"""Point-in-time customer features: one row per (customer_id, cutoff), nothing from the cutoff on.

Time semantics (DESIGN.md section 4), applied in exactly one place (``_engine.py``): a
feature at cutoff ``c`` sees rows with ``timestamp < c`` -- a row at exactly ``c`` is not
seen, a row one microsecond earlier is. A window of ``w`` days covers
``c - w days <= timestamp < c``.

Values for a customer with no history before the cutoff (documented, never an error):
counts and sums are ``0``; every ``days_since_*`` / tenure feature is null (LightGBM treats
null as missing); ratios and trends are null; ``cart_without_purchase_*`` is 0; consent
flags follow :func:`omni_ml.identity.consent_state` (0 = not granted); customer attributes
come from the customers table.

Three entry points, one engine:

* ``build_features(hist, at=<datetime or list of datetimes>)`` -- every customer (the
  customers table plus anyone with an event before the cutoff) at each cutoff: scoring, or
  stacked training snapshots;
* ``build_features(hist, at=<DataFrame(customer_id, cutoff)>)`` -- one row per given pair,
  in the given order; cutoffs may differ per row (contact-level rows);
* ``build_feature_frames(hist, at, features)`` -- an explicit feature list, hidden ones included: the
  union of several consumers' features (:func:`union_features`; e.g. two models' feature sets and the
  policy's history facts, :mod:`omni_ml.features.facts`) built in one plan, each consumer then selecting
  its columns.

Families (``FeatureSet.families()``): ``rfm``, ``rfm_channel``, ``rfm_category``, ``browsing``,
``cart``, ``engagement``, ``contact_pressure``, ``interpurchase``, ``returns_service``,
``tenure``, ``consent``, ``customer``, ``time_of_year``. Add your own with :func:`register_family`.
``omni_ml.features.lifecycle.register()`` adds the opt-in family ``lifecycle`` (silence against the
customer's own rate, purchase span share, purchase trend; not yet measured to help, so not a default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

# Family modules register themselves on import.
import omni_ml.features.calendar
import omni_ml.features.customers
import omni_ml.features.engagement
import omni_ml.features.outcomes
import omni_ml.features.products
import omni_ml.features.rfm
import omni_ml.features.service  # noqa: F401
from omni_ml._time import as_utc, utc_column
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError, SchemaError
from omni_ml.features._engine import MONEY_SCALE, compute_at, compute_for_keys, unreadable_attributes
from omni_ml.features._featureset import DEFAULT_FAMILIES, FeatureConfig, FeatureSet, Vocabulary
from omni_ml.features._registry import FAMILIES, register_family
from omni_ml.features._running import money_units
from omni_ml.features._spec import (
    Aggregate,
    Attribute,
    Consent,
    FamilyContext,
    Feature,
    count,
    days_since_first,
    days_since_last,
    event,
    total,
)

__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "MONEY_SCALE",
    "Aggregate",
    "Attribute",
    "Consent",
    "FamilyContext",
    "Feature",
    "FeatureConfig",
    "FeatureSet",
    "Vocabulary",
    "build_feature_frames",
    "build_features",
    "count",
    "days_since_first",
    "days_since_last",
    "event",
    "money_units",
    "register_family",
    "total",
    "union_features",
    "unreadable_attributes",
]


def build_features(
    hist: Histories,
    at: dt.datetime | Sequence[dt.datetime] | pl.DataFrame,
    *,
    feature_set: FeatureSet | None = None,
    config: FeatureConfig | None = None,
) -> pl.DataFrame:
    """Features as of one or more cutoffs, from history strictly before each cutoff.

    Parameters
    ----------
    hist
        Histories with resolved customer ids (see :func:`omni_ml.identity.resolve_identities`).
    at
        A cutoff, a list of cutoffs (every customer at each), or a frame of
        ``(customer_id, cutoff)`` pairs (one output row per input row, same order). Naive
        datetimes are UTC; a date means midnight.
    feature_set
        The fitted definition to reuse (e.g. the one a model was trained with). Default: fitted
        now on rows before the latest cutoff.
    config
        Used to fit a feature set when ``feature_set`` is not given.

    Returns
    -------
    polars.DataFrame
        ``customer_id``, ``cutoff`` and the numeric feature columns (Int8/Int32/Float64 only),
        in ``feature_set.names`` order. Sorted by cutoff then customer_id, or in input order.

    Raises
    ------
    SchemaError
        ``at`` lacks columns, has nulls, or the histories carry unresolved identifiers.
    ConfigError
        Both ``feature_set`` and a different ``config`` were given, or a feature reads a column
        the histories do not have.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> ev = pl.DataFrame({
    ...     "customer_id": ["a", "a", "a"],
    ...     "timestamp": [dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 9), dt.datetime(2025, 1, 10)],
    ...     "channel": ["web", "web", "store"], "event_type": ["visit", "visit", "purchase"],
    ...     "amount": [None, None, 25.0]})
    >>> hist = Histories.from_frames(ev)
    >>> X = build_features(hist, dt.datetime(2025, 1, 10), config=FeatureConfig(windows=(7, 30)))
    >>> X.select("visits_7d", "visits_30d", "purchases_30d").row(0)  # the purchase AT the cutoff is not seen
    (1, 2, 0)
    """
    from omni_ml.identity import require_resolved

    require_resolved(hist, "events", "contacts")
    keys: pl.DataFrame | None = None
    cutoffs: list[dt.datetime] = []
    if isinstance(at, pl.DataFrame):
        keys = _validate_keys(at)
        latest = keys["cutoff"].max() if keys.height else None
    else:
        cutoffs = _validate_cutoffs(at)
        latest = max(cutoffs)
    if feature_set is None:
        feature_set = FeatureSet.from_histories(hist, config, before=latest)  # type: ignore[arg-type]
    elif config is not None and config != feature_set.config:
        msg = (
            "build_features got both feature_set and a different config. Hint: pass only feature_set to rebuild "
            "the features a model was trained with, or only config to fit a new feature set."
        )
        raise ConfigError(msg)
    _check_columns(hist, feature_set.features)
    return _compute(hist, keys, cutoffs, feature_set.features, feature_set.names, feature_set.config)


def build_feature_frames(
    hist: Histories,
    at: dt.datetime | Sequence[dt.datetime] | pl.DataFrame,
    features: Sequence[Feature],
    *,
    config: FeatureConfig | None = None,
) -> pl.DataFrame:
    """Every feature of an explicit list (hidden ``__`` ones included) in one engine plan.

    The list is usually the union of several consumers' features (:func:`union_features`): a model's
    feature set, another model's, the policy's facts (:mod:`omni_ml.features.facts`). Each consumer then
    selects its columns; a shared aggregate is computed once.

    Parameters
    ----------
    hist, at
        As for :func:`build_features`.
    features
        Features with unique names; a derived feature may use earlier ones.
    config
        Engine settings (``partitions``, ``events_per_partition``, ``streaming``); default ``FeatureConfig()``.

    Returns
    -------
    polars.DataFrame
        ``customer_id``, ``cutoff`` and one column per feature, rows as in :func:`build_features`.
    """
    from omni_ml.identity import require_resolved

    require_resolved(hist, "events", "contacts")
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        msg = f"build_feature_frames: feature names {twice[:5]} appear more than once. Hint: union_features()."
        raise ConfigError(msg)
    keys: pl.DataFrame | None = None
    cutoffs: list[dt.datetime] = []
    if isinstance(at, pl.DataFrame):
        keys = _validate_keys(at)
    else:
        cutoffs = _validate_cutoffs(at)
    _check_columns(hist, features)
    return _compute(hist, keys, cutoffs, features, names, config or FeatureConfig())


def union_features(*lists: Sequence[Feature]) -> list[Feature] | None:
    """The features of all ``lists`` in one list, each name once; ``None`` when one name means two things.

    Two features with the same name are the same feature when their specs are equal (same aggregate and
    window, attribute, consent, or the same derived expression) and so are their dtypes.
    """
    out: dict[str, Feature] = {}
    for features in lists:
        for f in features:
            seen = out.get(f.name)
            if seen is None:
                out[f.name] = f
            elif _spec_key(seen) != _spec_key(f):
                return None
    return list(out.values())


def _spec_key(f: Feature) -> tuple[object, ...]:
    spec = f.spec
    if isinstance(spec, Aggregate):
        return ("aggregate", spec.measure_key, spec.window)
    if isinstance(spec, pl.Expr):
        try:
            text = spec.meta.serialize(format="json")
        except Exception:  # e.g. a Python function inside: its text names the function
            text = str(spec)
        return ("derived", text, str(f.output_dtype))
    return ("static", repr(spec))


def _compute(
    hist: Histories,
    keys: pl.DataFrame | None,
    cutoffs: list[dt.datetime],
    features: Sequence[Feature],
    names: Sequence[str],
    config: FeatureConfig,
) -> pl.DataFrame:
    streaming = config.streaming
    n_parts = _n_partitions(hist, config)
    visible = ["customer_id", "cutoff", *names]  # hidden helper columns are dropped as soon as possible
    parts = []
    for index, part in enumerate(_partitions(hist, n_parts)):
        if keys is not None:
            unique = _part_keys(keys, n_parts, index).unique(maintain_order=True)
            if unique.height == 0:
                continue
            parts.append(compute_for_keys(part, unique, features, streaming=streaming).select(visible))
        else:
            parts.append(compute_at(part, cutoffs, features, streaming=streaming).select(visible))
    schema: dict[str, pl.DataType] = {"customer_id": pl.String(), "cutoff": TIMESTAMP}
    schema.update({f.name: f.output_dtype for f in features})
    # no rechunk and no second reference: the partitions' tables are the only copy until the sort
    result = pl.concat(parts, how="vertical", rechunk=False) if parts else pl.DataFrame(schema=schema)
    parts.clear()
    result = result.select("customer_id", "cutoff", *names)
    if keys is not None:
        return keys.join(result, on=["customer_id", "cutoff"], how="left", maintain_order="left")
    return result.sort("cutoff", "customer_id") if n_parts > 1 else result


def _n_partitions(hist: Histories, config: FeatureConfig) -> int:
    if config.partitions is not None:
        return config.partitions
    rows = hist.events.select(pl.len()).collect().item()  # parquet: read from the metadata
    return max(1, -(-int(rows) // config.events_per_partition))


def _partitions(hist: Histories, n: int) -> list[Histories]:
    if n == 1:
        return [hist]
    out = []
    for p in range(n):
        mine = _in_partition(n, p)
        out.append(
            hist.replace(
                **{t: lf.filter(mine) for t, lf in hist.tables().items() if t != "identity_links"},
            )
        )
    return out


def _in_partition(n: int, p: int) -> pl.Expr:
    return (pl.col("customer_id").hash(seed=0) % n) == p


def _part_keys(keys: pl.DataFrame, n: int, p: int) -> pl.DataFrame:
    return keys if n == 1 else keys.filter(_in_partition(n, p))


def _validate_cutoffs(at: dt.datetime | Sequence[dt.datetime]) -> list[dt.datetime]:
    values = [at] if isinstance(at, dt.date) else list(at)
    if not values:
        msg = "build_features: `at` is an empty list of cutoffs. Hint: pass a datetime, a list, or keys."
        raise SchemaError(msg)
    out = []
    for v in values:
        if not isinstance(v, dt.date):
            msg = f"build_features: cutoff {v!r} is not a datetime. Hint: use datetime.datetime(2025, 6, 1)."
            raise SchemaError(msg)
        out.append(as_utc(v, name="cutoff", error=SchemaError))
    return sorted(set(out))


def _validate_keys(at: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("customer_id", "cutoff") if c not in at.columns]
    if missing:
        msg = (
            f"keys: missing column(s) {missing}; found {at.columns[:10]}. "
            "Hint: pass a DataFrame with columns customer_id and cutoff (one row per wanted feature row)."
        )
        raise SchemaError(msg)
    cutoff = at.schema["cutoff"]
    if isinstance(cutoff, pl.Datetime) or cutoff == pl.Date:
        expr = utc_column("cutoff", cutoff)
    else:
        msg = f"keys.cutoff: expected a Datetime or Date column, got {cutoff}. Hint: parse it with str.to_datetime()."
        raise SchemaError(msg)
    keys = at.select(pl.col("customer_id").cast(pl.String), expr.cast(TIMESTAMP).alias("cutoff"))
    for col in ("customer_id", "cutoff"):
        n = keys[col].null_count()
        if n:
            msg = f"keys.{col}: {n:,} of {keys.height:,} rows are null. Hint: drop them or fill them before building."
            raise SchemaError(msg)
    return keys


def _check_columns(hist: Histories, features: Sequence[Feature]) -> None:
    schemas = {t: set(lf.collect_schema().names()) for t, lf in hist.tables().items()}
    for f in features:
        if not isinstance(f.spec, Aggregate) or not isinstance(f.spec.source, str) or f.spec.source not in schemas:
            continue
        needed = set() if f.spec.where is None else set(f.spec.where.meta.root_names())
        needed |= {f.spec.column} if f.spec.column else set()
        absent = sorted(needed - schemas[f.spec.source])
        if absent:
            msg = (
                f"feature {f.name!r} (family {f.family!r}) reads {f.spec.source}.{absent[0]}, which the histories "
                f"do not have (columns: {sorted(schemas[f.spec.source])[:12]}). Hint: add the column or leave the "
                "family out with FeatureConfig(exclude=...)."
            )
            raise ConfigError(msg)
