"""Commands on histories: ``validate`` and ``resolve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omni_ml.cli._app import _check_out, _user_errors, _write_atomically, app


@app.command()
@_user_errors
def validate(
    directory: Annotated[Path, typer.Argument(help="Histories directory (events.parquet|csv, ...).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Report rows at or after this date (ISO 8601).")] = None,
) -> None:
    """Check a histories directory against the input contract and print a summary."""
    import warnings

    from omni_ml.data import load_histories

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hist = load_histories(directory, as_of=as_of)
    assert hist.report is not None  # set by load_histories
    typer.echo(hist.report.to_text())


@app.command()
@_user_errors
def resolve(
    directory: Annotated[Path, typer.Argument(help="Histories directory (events, identity_links, ...).")],
    out: Annotated[
        Path, typer.Option("--out", help="Identity map to write (.parquet or .csv: identifier, customer_id).")
    ],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Use only links before this moment (ISO 8601).")] = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="Earlier identity map: anonymous customers keep their ids.")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="YAML of IdentityRules (max_degree, quarantine, ...).")
    ] = None,
) -> None:
    """Resolve identifiers into customer ids, write the identity map and print a report."""
    import warnings

    import polars as pl

    from omni_ml.config import from_yaml
    from omni_ml.data import load_histories
    from omni_ml.exceptions import ConfigError, SchemaError
    from omni_ml.identity import IdentityRules
    from omni_ml.identity import resolve as resolve_histories

    _check_out(out, "identity_map.parquet")
    if out.suffix not in (".parquet", ".csv"):
        msg = (
            f"--out {str(out)!r} must end in .parquet or .csv (got {out.suffix or 'no extension'!r}). "
            "Hint: e.g. --out identity_map.parquet."
        )
        raise ConfigError(msg)
    identity_rules = from_yaml(IdentityRules, rules) if rules is not None else None
    earlier = None
    if previous is not None:
        try:
            earlier = pl.read_csv(previous) if previous.suffix == ".csv" else pl.read_parquet(previous)
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = (
                f"--previous: cannot read {str(previous)!r} as parquet ({type(exc).__name__}). "
                "Hint: pass a map written by an earlier `omni-ml resolve --out`."
            )
            raise SchemaError(msg) from exc
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hist = load_histories(directory)
    resolved, report = resolve_histories(hist, as_of=as_of, rules=identity_rules, previous=earlier)
    identity_map = resolved.identity_map
    assert identity_map is not None  # set by resolve
    _write_atomically(out, identity_map.write_csv if out.suffix == ".csv" else identity_map.write_parquet)
    typer.echo(report.to_text())
    typer.echo(f"wrote {identity_map.height:,} identifiers -> {report.customers:,} customers to {out}")
