"""Commands of a campaign run: ``score``, ``monitor`` and ``features``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from omni_ml.cli._app import _check_out, _user_errors, _write_atomically, app


@app.command()
@_user_errors
def score(
    directory: Annotated[Path, typer.Argument(help="Histories directory to score (events.parquet|csv, ...).")],
    model: Annotated[
        str, typer.Option("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/..., or a file.")
    ],
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date (ISO 8601): history strictly before it.")],
    out: Annotated[Path, typer.Option("--out", help="Campaign file to write (.parquet or .csv), atomically.")],
    reasons: Annotated[int, typer.Option("--reasons", help="Reason codes per customer (0: none, faster).")] = 3,
    control_fraction: Annotated[
        float, typer.Option("--control-fraction", help="Share of customers held out from contact.")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Campaign seed of the control group and exploration.")] = 0,
    chunks: Annotated[
        int | None, typer.Option("--chunks", help="Customer chunks processed in turn (default: by size).")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="polars (this machine) or spark.")] = "polars",
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ models.")
    ] = None,
    explore: Annotated[
        float,
        typer.Option(
            "--explore",
            help="Share in [0, 1) of customers outside the control group whose channel is drawn at random "
            "among their allowed options, no_contact included (rule explore).",
        ),
    ] = 0.0,
    fail_on_drift: Annotated[
        bool,
        typer.Option(
            "--fail-on-drift", help="Exit 3 without writing the campaign file when the health verdict is bad."
        ),
    ] = False,
    monitor_config: Annotated[
        Path | None,
        typer.Option("--monitor-config", help="YAML of MonitorConfig thresholds (a `monitor:` section or top level)."),
    ] = None,
    allow_stale: Annotated[
        bool,
        typer.Option("--allow-stale", help="Score even if the histories end more than the model's horizon before."),
    ] = False,
    unprofiled: Annotated[
        str | None,
        typer.Option(
            "--unprofiled",
            help="People without a profiling consent: anonymous (population scores, no personal features) or "
            "exclude (no row). Default: the model's policy setting (anonymous).",
        ),
    ] = None,
) -> None:
    """Score every customer as of a date and write the campaign file (one row per customer)."""
    from omni_ml.scoring import score as run_scoring

    thresholds = None
    if monitor_config is not None:
        from omni_ml.config import from_yaml
        from omni_ml.monitor import MonitorConfig

        thresholds = from_yaml(MonitorConfig, monitor_config, section=_yaml_section(monitor_config, "monitor"))

    _check_out(out, "campaign.parquet")
    summary = run_scoring(
        directory,
        model=model,
        as_of=as_of,
        out=out,
        reasons=reasons,
        control_fraction=control_fraction,
        seed=seed,
        chunks=chunks,
        progress=sys.stderr.isatty(),
        engine=engine,  # type: ignore[arg-type]  # validated by score()
        tracking_uri=tracking_uri,
        explore=explore,
        monitor=thresholds,
        fail_on_drift=fail_on_drift,
        allow_stale=allow_stale,
        unprofiled=unprofiled,  # type: ignore[arg-type]  # validated by score()
    )
    typer.echo(summary.to_text())


def _yaml_section(path: Path, name: str) -> str | None:
    """``name`` when the YAML file has that top-level section, else ``None`` (the whole file)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None  # from_yaml reports it
    return name if isinstance(raw, dict) and name in raw else None


@app.command()
@_user_errors
def monitor(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/...")],
    runs: Annotated[int, typer.Option("--runs", help="How many of the latest scoring runs to show.")] = 10,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also write a plot of the runs (.png) here.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")] = None,
) -> None:
    """The last scoring runs of a model: drift, expected vs realised performance, volumes per channel."""
    from omni_ml.scoring.history import monitor_history, plot_history

    if plot is not None:
        _check_out(plot, "monitor.png")
    table = monitor_history(model_uri, runs=runs, tracking_uri=tracking_uri)
    typer.echo(table.to_text())
    if plot is not None and table.runs.height:
        _write_atomically(plot, lambda tmp: plot_history(table, tmp))
        typer.echo(f"wrote {plot}")


@app.command()
@_user_errors
def features(
    directory: Annotated[Path, typer.Argument(help="Histories directory (events.parquet|csv, ...).")],
    as_of: Annotated[str, typer.Option("--as-of", help="Cutoff (ISO 8601): features use history strictly before it.")],
    out: Annotated[Path, typer.Option("--out", help="Feature table to write (parquet), atomically.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML of FeatureConfig (windows, families, ...).")
    ] = None,
) -> None:
    """Build point-in-time features for every customer as of a date (one row per customer)."""
    import warnings

    from omni_ml._time import as_utc
    from omni_ml.config import from_yaml
    from omni_ml.data import load_histories
    from omni_ml.exceptions import SchemaError
    from omni_ml.features import FeatureConfig, FeatureSet, build_features
    from omni_ml.identity import resolve_identities

    cutoff = as_utc(as_of, name="--as-of", error=SchemaError)
    _check_out(out, "features.parquet")
    feature_config = from_yaml(FeatureConfig, config) if config is not None else FeatureConfig()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hist = load_histories(directory, as_of=cutoff)
    hist = resolve_identities(hist, as_of=cutoff)  # links seen before the cutoff only
    feature_set = FeatureSet.from_histories(hist, feature_config, before=cutoff)
    table = build_features(hist, cutoff, feature_set=feature_set)
    _write_atomically(out, table.write_parquet)
    families = ", ".join(f"{k} {len(v)}" for k, v in feature_set.families().items() if v)
    typer.echo(
        f"wrote {table.height:,} customers x {len(feature_set.names)} features as of {cutoff:%Y-%m-%d %H:%M} to {out}"
    )
    typer.echo(f"families: {families}")
