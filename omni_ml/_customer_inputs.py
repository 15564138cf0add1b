"""What a fitted model reads from the customers table, and the check that the table to score still has it.

A campaign model built attribute features (``attr_signup_date_days``, ``attr_region`` ...) from the
customers table it was trained on. Scoring histories whose customers table lacks one of those columns,
has no customers table, or holds values the model cannot read as it did (``'not a date'`` for a date)
would score every such customer as if the attribute were unknown: a different campaign without a word.
``omni_ml.scoring.score`` (and :meth:`omni_ml.campaign.CampaignModel.score`) refuse it instead, naming
the column, the features built from it, an example and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import polars as pl

from omni_ml.exceptions import SchemaError

__all__ = ["check_customer_columns", "check_customers", "customer_attributes"]


def _trained(model: Any) -> str:
    """``trained as of 2024-12-01`` (or ``this model`` for one without a training date)."""
    trained = getattr(model, "as_of_", None)
    return f"trained as of {trained:%Y-%m-%d}" if trained is not None else "this model"


def _listed(names: Sequence[str], limit: int = 5) -> str:
    """``['a', 'b', ...]``: at most ``limit`` names, then how many more."""
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... {len(names) - limit:,} more" if len(names) > limit else ""
    return f"[{shown}{more}]"


def customer_attributes(model: Any) -> dict[str, tuple[str, ...]]:
    """Columns of the customers table the fitted model reads, each with the features built from it.

    Collected over every part that builds features (propensity, channel model, value model).
    """
    from omni_ml.features import Attribute

    needed: dict[str, list[str]] = {}
    parts = (model, getattr(model, "channel_model_", None), getattr(model, "value_model_", None))
    for part in parts:
        feature_set = getattr(part, "feature_set_", None)
        for feature in getattr(feature_set, "features", ()):
            if isinstance(feature.spec, Attribute):
                needed.setdefault(feature.spec.column, [])
                if feature.name not in needed[feature.spec.column]:
                    needed[feature.spec.column].append(feature.name)
    return {column: tuple(names) for column, names in sorted(needed.items())}


def check_customer_columns(model: Any, columns: Sequence[str] | None) -> None:
    """Raise when the customers table to score (``columns``; ``None``: no table) lacks a column the model reads.

    A missing attribute would be null for everyone: scores unlike any the model was trained and checked
    on, so the job is refused before any work.

    Raises
    ------
    SchemaError
        Naming the table, the columns, the features built from them and the fix.
    """
    needed = customer_attributes(model)
    if not needed:
        return
    when = _trained(model)
    if columns is None:
        msg = (
            f"customers: the histories have no customers table, but the model ({when}) uses its column(s) "
            f"{_listed(list(needed))} (features {_listed([n for names in needed.values() for n in names])}); "
            "every customer would score as if those were unknown. Hint: add the customers table "
            "(customers.parquet or customers.csv with customer_id and those columns), or train a model on "
            "histories without it."
        )
        raise SchemaError(msg)
    missing = [c for c in needed if c not in set(columns)]
    if missing:
        features = [n for c in missing for n in needed[c]]
        near = {c: difflib.get_close_matches(c, list(columns), n=1) for c in missing}
        said = "; ".join(f"did you mean {m[0]!r} for {c!r}?" for c, m in near.items() if m)
        msg = (
            f"customers.{missing[0]}: the customers table has no column{'s' if len(missing) > 1 else ''} "
            f"{_listed(missing)} (it has {_listed([c for c in columns if c != 'customer_id'])}), but the model "
            f"({when}) uses {'them' if len(missing) > 1 else 'it'} (features {_listed(features)}); every "
            f"customer would score as if it were unknown. {said + ' ' if said else ''}Hint: add the column to "
            "customers (null where a value is unknown), or train a model on the histories you score."
        )
        raise SchemaError(msg)


def check_customers(model: Any, customers: pl.LazyFrame | None) -> None:
    """Raise when the customers table (``None``: none) lacks a column the model reads or holds unreadable values.

    Checks the columns (:func:`check_customer_columns`), then that every non-empty value of a numeric,
    boolean or date attribute reads as one (:func:`omni_ml.features.unreadable_attributes`).

    Raises
    ------
    SchemaError
        Naming the column, how many rows, an example and the fix.
    """
    from omni_ml.features import unreadable_attributes

    check_customer_columns(model, customers.collect_schema().names() if customers is not None else None)
    needed = customer_attributes(model)
    if customers is None or not needed:
        return
    table = customers.select(list(needed)).collect()
    features = [
        f
        for part in (model, getattr(model, "channel_model_", None), getattr(model, "value_model_", None))
        for f in getattr(getattr(part, "feature_set_", None), "features", ())
    ]
    problems = unreadable_attributes(table, features)
    if problems:
        when = _trained(model)
        column, kind, rows, example = problems[0]
        others = f" (also {_listed([p[0] for p in problems[1:]])})" if len(problems) > 1 else ""
        msg = (
            f"customers.{column}: {rows:,} of {table.height:,} rows cannot be read as a {kind} (e.g. {example!r})"
            f"{others}, which is how the model ({when}) reads this column: they "
            "would score as if the value were unknown. Hint: write the values as the training data did (dates as "
            "YYYY-MM-DD, numbers with a decimal point, booleans as true/false), or leave unknown values empty."
        )
        raise SchemaError(msg)
