"""Turn user feature tables (polars, pandas, numpy) into the float64 matrix the kernels read."""

from __future__ import annotations

import difflib
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from omni_ml.exceptions import SchemaError

_DEFAULT_NAME = re.compile(r"^Column_\d+$")
_LGB_SPECIAL = re.compile(r'[",:\[\]{}]')


def _fmt_names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def feature_matrix(X: Any, feature_names: list[str]) -> npt.NDArray[np.float64]:
    """Return ``X``'s model features as a C-contiguous float64 array of shape (n, len(feature_names)).

    A DataFrame is matched by column name (extra columns such as ``customer_id`` are ignored); a
    model trained on an unnamed array (LightGBM names ``Column_0``, ...) is matched by position.
    Booleans become 0/1; string or categorical columns are refused (LightGBM would abort the process).
    """
    if isinstance(X, pl.LazyFrame):
        msg = "X is a polars LazyFrame. Hint: call .collect() first; explanations need the rows in memory."
        raise SchemaError(msg)
    if not isinstance(X, pl.DataFrame) and hasattr(X, "columns") and hasattr(X, "dtypes"):
        X = pl.from_pandas(X)
    if isinstance(X, pl.DataFrame):
        return _from_polars(X, feature_names)
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != len(feature_names):
        msg = (
            f"X has shape {arr.shape} but the model has {len(feature_names)} features "
            f"({_fmt_names(feature_names)}). Hint: pass a DataFrame with the model's feature columns."
        )
        raise SchemaError(msg)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        msg = f"X has dtype {arr.dtype}; features must be numeric. Hint: encode categories as integer codes."
        raise SchemaError(msg)
    return np.ascontiguousarray(arr, dtype=np.float64)


def _from_polars(X: pl.DataFrame, feature_names: list[str]) -> npt.NDArray[np.float64]:
    columns = X.columns
    missing = [n for n in feature_names if n not in columns]
    if missing:
        # LightGBM stores names with the characters ",:[]{}" replaced by "_"; match those too.
        sanitized = {_LGB_SPECIAL.sub("_", c): c for c in columns}
        if all(n in columns or n in sanitized for n in feature_names):
            X = X.select([pl.col(n if n in columns else sanitized[n]).alias(n) for n in feature_names])
            columns = X.columns
            missing = []
    if missing and all(_DEFAULT_NAME.match(n) for n in feature_names) and X.width == len(feature_names):
        selected = X  # model trained without names: positional
    elif missing:
        hints = []
        for name in missing[:3]:
            close = difflib.get_close_matches(name, columns, n=1)
            if close:
                hints.append(f"{name!r} -> {close[0]!r}?")
        hint = f" Close matches: {', '.join(hints)}." if hints else ""
        msg = (
            f"X lacks {len(missing)} of the model's {len(feature_names)} feature columns: {_fmt_names(missing)}.{hint} "
            "Hint: build X with the same FeatureSet the model was trained with."
        )
        raise SchemaError(msg)
    else:
        selected = X.select(feature_names)
    bad = [(c, str(t)) for c, t in selected.schema.items() if not (t.is_numeric() or t == pl.Boolean)]
    if bad:
        col, dtype = bad[0]
        msg = (
            f"X has {len(bad)} non-numeric feature column(s), e.g. {col!r} of type {dtype} "
            f"({selected.height} rows). Hint: encode categories as integer codes; LightGBM aborts on "
            "String/Categorical columns."
        )
        raise SchemaError(msg)
    casts = [pl.col(c).cast(pl.Float64) for c in selected.columns]
    arr = selected.select(casts).to_numpy()
    return np.ascontiguousarray(arr, dtype=np.float64)
