"""FeatureConfig (what to build) and FeatureSet (the fitted, serialisable definition).

A :class:`FeatureSet` is plain data: the config, the vocabularies learned from the data it
was fitted on (channels, top categories, customer attribute kinds and codes) and the resolved
list of families. The features themselves are regenerated from that data by the family
builders, so a model that carries ``feature_set.to_dict()`` rebuilds identical columns at
scoring time with :meth:`FeatureSet.from_dict`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
from typing import Any

import polars as pl

from omni_ml._time import as_utc
from omni_ml.config import from_mapping
from omni_ml.data import TIMESTAMP, Histories
from omni_ml.exceptions import ConfigError
from omni_ml.features._engine import _as_bool, _as_number, _as_timestamp
from omni_ml.features._registry import FAMILIES, build_family
from omni_ml.features._spec import Aggregate, Attribute, Consent, FamilyContext, Feature

__all__ = ["FeatureConfig", "FeatureSet", "Vocabulary"]

_FORMAT = "omni_ml.FeatureSet/1"
DEFAULT_FAMILIES: tuple[str, ...] = (
    "rfm",
    "rfm_channel",
    "rfm_category",
    "browsing",
    "cart",
    "engagement",
    "contact_pressure",
    "interpurchase",
    "returns_service",
    "tenure",
    "consent",
    "customer",
)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return [_lists(v) for v in value] if isinstance(value, list | tuple) else value


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """What features to build.

    Parameters
    ----------
    windows
        Look-back windows in days for counts and sums: a window ``w`` covers
        ``cutoff - w days <= timestamp < cutoff``.
    families
        Families to build, in order; ``None`` = the default families
        (``DEFAULT_FAMILIES``) followed by any family registered by the user.
    exclude
        Families to leave out of ``families``.
    category_windows
        Windows of the per-category counts.
    top_categories
        How many of the most purchased categories get their own features.
    engagement_window
        Window of contacts / opens / clicks and their rates per channel.
    pressure_windows
        Windows of the contact-pressure counts.
    trend_pairs
        ``(short, long)`` windows compared by the browsing trend.
    max_levels
        Most frequent string values of a customer attribute that get their own code.
    partitions
        Split customers into this many hash partitions processed one after the other (one scan
        each): bounds memory for histories larger than memory. ``None`` (default) picks one
        partition per ``events_per_partition`` events. The result does not depend on it.
    events_per_partition
        Target events per partition when ``partitions`` is ``None``. Memory grows with the
        customers and cutoffs of a partition, not with its events (they are streamed); every
        partition reads the whole source once more.
    streaming
        Use polars' streaming engine for the scans.

    Examples
    --------
    >>> FeatureConfig(windows=(30, 7)).windows
    (7, 30)
    """

    windows: tuple[int, ...] = (7, 30, 90, 365)
    families: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    category_windows: tuple[int, ...] = (30, 365)
    top_categories: int = 10
    engagement_window: int = 90
    pressure_windows: tuple[int, ...] = (7, 30)
    trend_pairs: tuple[tuple[int, int], ...] = ((7, 30), (30, 365))
    max_levels: int = 50
    partitions: int | None = None
    events_per_partition: int = 50_000_000
    streaming: bool = True

    def __post_init__(self) -> None:
        for name in ("windows", "category_windows", "pressure_windows"):
            value = _tuples(getattr(self, name))
            if not value or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in value):
                msg = f"FeatureConfig.{name}: expected positive whole days, e.g. (7, 30, 90), got {value!r}."
                raise ConfigError(msg)
            object.__setattr__(self, name, tuple(sorted(set(value))))
        pairs = _tuples(self.trend_pairs)
        if any(len(p) != 2 or not 0 < p[0] < p[1] for p in pairs):
            msg = f"FeatureConfig.trend_pairs: expected (short, long) day pairs with short < long, got {pairs!r}."
            raise ConfigError(msg)
        object.__setattr__(self, "trend_pairs", pairs)
        if self.families is not None:
            object.__setattr__(self, "families", _tuples(self.families))
        object.__setattr__(self, "exclude", _tuples(self.exclude))
        for name in ("top_categories", "engagement_window", "max_levels", "partitions", "events_per_partition"):
            value = getattr(self, name)
            if value is None and name == "partitions":
                continue
            if not isinstance(value, int) or value < (0 if name == "top_categories" else 1):
                msg = f"FeatureConfig.{name}: expected a positive whole number, got {value!r}."
                raise ConfigError(msg)

    def resolved_families(self) -> tuple[str, ...]:
        """The families this config builds, checked against the registry."""
        chosen = self.families
        if chosen is None:
            chosen = DEFAULT_FAMILIES + tuple(f for f in FAMILIES if f not in DEFAULT_FAMILIES)
        unknown = [f for f in (*chosen, *self.exclude) if f not in FAMILIES]
        if unknown:
            hints = []
            for f in unknown[:5]:
                close = difflib.get_close_matches(f, FAMILIES, n=1)
                hints.append(f"{f!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            msg = (
                f"FeatureConfig.families: unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(hints)}. "
                f"Registered: {', '.join(FAMILIES)}. Hint: register your own with "
                "@omni_ml.features.register_family(name) before building the feature set."
            )
            raise ConfigError(msg)
        return tuple(f for f in chosen if f not in self.exclude)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """What a feature set learned from the data it was fitted on (plain data)."""

    channels: tuple[str, ...] = ()
    purchase_channels: tuple[str, ...] = ()
    browse_channels: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    contact_channels: tuple[str, ...] = ()
    consent_channels: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    skipped_attributes: tuple[str, ...] = ()
    has_contacts: bool = False
    fitted_before: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready representation."""
        out = dataclasses.asdict(self)
        out["attributes"] = [{"column": a.column, "kind": a.kind, "levels": list(a.levels)} for a in self.attributes]
        return _lists(out)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["attributes"] = tuple(
            Attribute(a["column"], a["kind"], tuple(a["levels"])) for a in values.get("attributes", [])
        )
        return cls(**{k: (_tuples(v) if isinstance(v, list) else v) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """The resolved feature definition: config + vocabularies -> named, described features.

    Build it with :meth:`from_histories`; save it with :meth:`to_dict` and restore it with
    :meth:`from_dict` to rebuild identical columns later.

    Examples
    --------
    >>> import polars as pl, datetime as dt
    >>> from omni_ml.data import Histories
    >>> ev = pl.DataFrame({"customer_id": ["a", "a"], "timestamp": [dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 5)],
    ...                    "channel": ["web", "store"], "event_type": ["visit", "purchase"], "amount": [None, 20.0]})
    >>> fs = FeatureSet.from_histories(Histories.from_frames(ev), FeatureConfig(windows=(7, 30)))
    >>> fs.describe("purchases_store_7d")
    'Purchases on store in the last 7 days'
    >>> fs.render("visits_web_7d", 3)
    '3 web visits in the last 7 days'
    >>> FeatureSet.from_dict(fs.to_dict()).names == fs.names
    True
    """

    config: FeatureConfig
    vocabulary: Vocabulary
    families_built: tuple[str, ...]
    features: tuple[Feature, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v = self.vocabulary
        ctx = FamilyContext(
            windows=self.config.windows,
            category_windows=self.config.category_windows,
            engagement_window=self.config.engagement_window,
            pressure_windows=self.config.pressure_windows,
            trend_pairs=self.config.trend_pairs,
            channels=v.channels,
            purchase_channels=v.purchase_channels,
            browse_channels=v.browse_channels,
            categories=v.categories,
            contact_channels=v.contact_channels,
            consent_channels=v.consent_channels,
            attributes=v.attributes,
            has_contacts=v.has_contacts,
        )
        unknown = [f for f in self.families_built if f not in FAMILIES]
        if unknown:
            msg = (
                f"feature set uses unregistered famil{'y' if len(unknown) == 1 else 'ies'} {unknown}. "
                "Hint: import the module that registers them before loading the feature set."
            )
            raise ConfigError(msg)
        features: dict[str, Feature] = {}
        for family in self.families_built:
            for feat in build_family(family, ctx):
                prior = features.get(feat.name)
                if prior is None:
                    if isinstance(feat.spec, pl.Expr):
                        # a derived feature may also read its row's `cutoff` (e.g. the time of year)
                        roots = feat.spec.meta.root_names()
                        missing = [r for r in roots if r not in features and r != "cutoff"]
                        if missing:
                            msg = (
                                f"feature {feat.name!r} (family {family!r}) is derived from {missing}, which "
                                "are not defined before it. Hint: list the features it uses first, or enable "
                                "their family."
                            )
                            raise ConfigError(msg)
                    features[feat.name] = feat
                elif not _same_spec(prior.spec, feat.spec):
                    msg = (
                        f"feature name {feat.name!r} is defined twice, differently, by families "
                        f"{prior.family!r} and {family!r}. Hint: give one of them another name."
                    )
                    raise ConfigError(msg)
        object.__setattr__(self, "features", tuple(features.values()))
        object.__setattr__(self, "_by_name", features)  # name -> Feature, for feature() in O(1)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_histories(
        cls,
        hist: Histories,
        config: FeatureConfig | None = None,
        *,
        before: dt.datetime | None = None,
    ) -> FeatureSet:
        """Fit the vocabularies on ``hist`` (only rows with ``timestamp < before`` when given).

        Parameters
        ----------
        hist
            Histories (customer ids resolved).
        config
            What to build; default :class:`FeatureConfig`.
        before
            Learn channels and top categories only from rows before this moment.
        """
        config = config or FeatureConfig()
        families = config.resolved_families()
        return cls(config, _fit_vocabulary(hist, config, before), families)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready representation (config, vocabularies, families, names)."""
        config = _lists(dataclasses.asdict(self.config))
        return {
            "format": _FORMAT,
            "config": config,
            "vocabulary": self.vocabulary.to_dict(),
            "families": list(self.families_built),
            "names": self.names,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSet:
        """Rebuild a feature set saved with :meth:`to_dict`; checks the feature names still match."""
        if data.get("format") != _FORMAT:
            msg = f"not a saved FeatureSet (format {data.get('format')!r}, expected {_FORMAT!r})."
            raise ConfigError(msg)
        config = from_mapping(FeatureConfig, data["config"], where="FeatureSet.config")
        fs = cls(config, Vocabulary.from_dict(data["vocabulary"]), tuple(data["families"]))
        if fs.names != list(data["names"]):
            lost = [n for n in data["names"] if n not in fs.names][:5]
            new = [n for n in fs.names if n not in data["names"]][:5]
            msg = (
                f"the saved feature set no longer rebuilds the same features (missing {lost}, new {new}). "
                "Hint: a family's definition changed since the model was trained; retrain, or restore the old code."
            )
            raise ConfigError(msg)
        return fs

    # ------------------------------------------------------------------ questions

    @property
    def names(self) -> list[str]:
        """Output feature columns, in order (internal helpers starting with ``__`` excluded)."""
        return [f.name for f in self.features if not f.name.startswith("__")]

    def feature(self, name: str) -> Feature:
        """The :class:`Feature` called ``name``."""
        index = self.__dict__.get("_by_name")
        if index is None:  # a feature set unpickled from before the index existed
            index = {f.name: f for f in self.features}
            object.__setattr__(self, "_by_name", index)
        found = index.get(name)
        if found is not None:
            return found  # type: ignore[no-any-return]
        close = difflib.get_close_matches(name, self.names, n=3)
        msg = f"no feature named {name!r} in this feature set" + (f"; did you mean {close}?" if close else ".")
        raise KeyError(msg)

    def describe(self, name: str) -> str:
        """One-line human description of a feature."""
        return self.feature(name).description

    def family_of(self, name: str) -> str:
        """The family a feature belongs to."""
        return self.feature(name).family

    def families(self) -> dict[str, list[str]]:
        """Feature names grouped by family, in order."""
        out: dict[str, list[str]] = {}
        for f in self.features:
            if not f.name.startswith("__"):
                out.setdefault(f.family, []).append(f.name)
        return out

    def render(self, name: str, value: Any) -> str:
        """The feature's value in words, e.g. ``"3 web visits in the last 7 days"``."""
        f = self.feature(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f.missing or f"{f.description}: none"
        levels = _levels(f)
        if levels:
            index = int(value)
            text = levels[index] if 0 <= index < len(levels) else "other"
            return (f.template or "{value}").format(value=text, s="s")
        shown = format(value, f.fmt) if isinstance(value, int | float) else str(value)
        return (f.template or f"{f.description}: {{value}}").format(value=shown, s="" if value == 1 else "s")


def _levels(f: Feature) -> tuple[str, ...]:
    if isinstance(f.spec, Attribute) and f.spec.kind == "code":
        return f.spec.levels
    if isinstance(f.spec, Attribute) and f.spec.kind == "boolean":
        return ("false", "true")
    if isinstance(f.spec, Consent):
        return ("not granted", "granted")
    if f.output_dtype == pl.Int8():
        return ("no", "yes")
    return ()


def _same_spec(a: object, b: object) -> bool:
    if isinstance(a, Aggregate) and isinstance(b, Aggregate):
        return a.measure_key == b.measure_key and a.window == b.window
    if isinstance(a, pl.Expr) and isinstance(b, pl.Expr):
        return a.meta.eq(b)
    return a == b


# ----------------------------------------------------------------------------- fitting


def _fit_vocabulary(hist: Histories, config: FeatureConfig, before: dt.datetime | None) -> Vocabulary:
    events = hist.events
    contacts = hist.sent_contacts
    if before is not None:
        moment = pl.lit(as_utc(before)).cast(TIMESTAMP)
        events = events.filter(pl.col("timestamp") < moment)
        contacts = None if contacts is None else contacts.filter(pl.col("timestamp") < moment)
    queries = [
        events.group_by("channel", "event_type").len().sort("channel", "event_type"),
        events.filter((pl.col("event_type") == "purchase") & pl.col("category").is_not_null())
        .group_by("category")
        .len()
        .sort(["len", "category"], descending=[True, False])
        .head(config.top_categories),
    ]
    if contacts is not None:
        queries.append(contacts.select(pl.col("channel").unique().sort()))
    if hist.consents is not None:
        queries.append(hist.consents.select(pl.col("channel").unique().sort()))
    results = iter(pl.collect_all(queries))
    by_type = next(results)
    categories = next(results)
    contact_channels = tuple(next(results)["channel"].drop_nulls().to_list()) if contacts is not None else ()
    consent_channels = tuple(next(results)["channel"].drop_nulls().to_list()) if hist.consents is not None else ()

    def channels_with(types: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(by_type.filter(pl.col("event_type").is_in(list(types)))["channel"].to_list())))

    attributes: list[Attribute] = []
    skipped: list[str] = []
    if hist.customers is not None:
        table = hist.customers.collect()
        for col, dtype in table.schema.items():
            if col == "customer_id":
                continue
            s = table[col]
            if dtype.is_numeric():
                attributes.append(Attribute(col, "numeric"))
            elif dtype == pl.Boolean:
                attributes.append(Attribute(col, "boolean"))
            elif dtype in (pl.Date, pl.Datetime) or isinstance(dtype, pl.Datetime):
                attributes.append(Attribute(col, "date"))
            elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
                text = s.cast(pl.String).drop_nulls()
                frame = text.to_frame(col)
                if text.len() == 0:
                    skipped.append(f"{col}: all values null")
                elif frame.select(_as_timestamp(pl.col(col)).is_not_null().all()).item():
                    attributes.append(Attribute(col, "date"))
                elif frame.select(_as_number(pl.col(col)).is_not_null().all()).item():
                    attributes.append(Attribute(col, "numeric"))
                elif frame.select(_as_bool(pl.col(col)).is_not_null().all()).item():
                    attributes.append(Attribute(col, "boolean"))
                else:
                    top = frame.group_by(col).len().sort(["len", col], descending=[True, False]).head(config.max_levels)
                    attributes.append(Attribute(col, "code", tuple(top[col].to_list())))
            else:
                skipped.append(f"{col}: unsupported type {dtype}")
    return Vocabulary(
        channels=tuple(sorted(by_type["channel"].unique().to_list())),
        purchase_channels=channels_with(("purchase",)),
        browse_channels=channels_with(("visit", "view")),
        categories=tuple(categories["category"].to_list()),
        contact_channels=contact_channels,
        consent_channels=consent_channels,
        attributes=tuple(attributes),
        skipped_attributes=tuple(skipped),
        has_contacts=contacts is not None,
        fitted_before=None if before is None else before.isoformat(),
    )
