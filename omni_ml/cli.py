"""The ``omni-ml`` command line: thin wrappers that parse arguments, call the public API, print summaries.

Every command exits 0 on success, 2 on bad input (a :class:`~omni_ml.exceptions.OmniMLError`)
with the message on stderr, and 1 on an unexpected failure.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from omni_ml.exceptions import OmniMLError

app = typer.Typer(
    name="omni-ml",
    help="omni_ml: omnichannel personalisation toolkit (histories -> features -> models -> campaign file).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_F = TypeVar("_F", bound=Callable[..., Any])


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show MLflow's own log lines, warnings and download progress bars.")
    ] = False,
    unsalted: Annotated[
        bool,
        typer.Option(
            "--unsalted",
            help="Derive anonymous ids with a plain hash, without OMNI_ML_PSEUDONYM_KEY: only for data that is "
            "not personal (a simulated world).",
        ),
    ] = False,
) -> None:
    """omni_ml: omnichannel personalisation toolkit (histories -> features -> models -> campaign file)."""
    if not verbose:
        ctx.call_on_close(_quiet_mlflow())
    if unsalted:
        import os

        from omni_ml._privacy import UNSALTED_ENV

        before = os.environ.get(UNSALTED_ENV)
        os.environ[UNSALTED_ENV] = "1"

        def restore() -> None:  # the command ran in this process (tests): leave the environment as found
            if before is None:
                os.environ.pop(UNSALTED_ENV, None)
            else:
                os.environ[UNSALTED_ENV] = before

        ctx.call_on_close(restore)


def _quiet_mlflow() -> Callable[[], None]:
    """Silence MLflow's INFO lines, its warnings and artifact progress bars; returns the function that undoes it.

    A job's stderr then holds omni_ml's own summary and errors only (``--verbose`` keeps MLflow's output).
    """
    import logging
    import os
    import warnings

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    previous_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    catcher = warnings.catch_warnings()
    catcher.__enter__()
    warnings.filterwarnings("ignore", module=r"mlflow(\..*)?$")

    def undo() -> None:
        catcher.__exit__(None, None, None)
        logger.setLevel(level)
        if previous_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous_bar

    return undo


def _check_out(out: Path, example: str, *, flag: str = "--out", directory: bool = False) -> None:
    """Refuse an output path that cannot be written before any work is done (exit 2, not a late traceback).

    A file target must not be a directory; a ``directory`` target must not be a file. Missing folders
    are created by the writer later, so the nearest existing folder above the target must be a
    directory that accepts a new file (probed by creating and removing a hidden file: permission bits
    say nothing for root or on read-only mounts).
    """
    import os
    import secrets

    from omni_ml.exceptions import ConfigError

    if directory and out.exists() and not out.is_dir():
        msg = f"{flag} {str(out)!r} is a file; give a directory (it is created if missing)."
        raise ConfigError(msg)
    if not directory and out.is_dir():
        msg = f"{flag} {str(out)!r} is a directory; give a file name such as {str(out / example)!r}."
        raise ConfigError(msg)
    folder = out if directory else out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        msg = f"{flag} {str(out)!r}: {str(folder)!r} is a file, not a folder. Hint: choose another path."
        raise ConfigError(msg)
    probe = folder / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        msg = (
            f"{flag} {str(out)!r}: cannot write in {str(folder)!r} ({exc.strerror or type(exc).__name__})."
            " Hint: choose a folder you can write to."
        )
        raise ConfigError(msg) from None
    probe.unlink(missing_ok=True)


def _write_atomically(out: Path, write: Callable[[Path], object]) -> None:
    """``write`` a hidden temporary file next to ``out``, then rename it: a failed run leaves no partial file."""
    from omni_ml._io import write_atomically

    write_atomically(out, write)


def _user_errors(func: _F) -> _F:
    """Turn an OmniMLError into a clear message on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OmniMLError as exc:
            console.print(f"[bold red]error:[/] {type(exc).__name__}: ", end="")
            console.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


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
    out: Annotated[Path, typer.Option("--out", help="Identity map to write (parquet: identifier, customer_id).")],
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
    from omni_ml.exceptions import SchemaError
    from omni_ml.identity import IdentityRules
    from omni_ml.identity import resolve as resolve_histories

    _check_out(out, "identity_map.parquet")
    identity_rules = from_yaml(IdentityRules, rules) if rules is not None else None
    earlier = None
    if previous is not None:
        try:
            earlier = pl.read_parquet(previous)
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
    _write_atomically(out, identity_map.write_parquet)
    typer.echo(report.to_text())
    typer.echo(f"wrote {identity_map.height:,} identifiers -> {report.customers:,} customers to {out}")


@app.command()
@_user_errors
def train(
    directory: Annotated[Path, typer.Argument(help="Histories directory (events.parquet|csv, ...).")],
    as_of: Annotated[str, typer.Option("--as-of", help="Data ends here; labels must be observed by then (ISO 8601).")],
    horizon: Annotated[int, typer.Option("--horizon", help="Label window in days: purchase in [t, t + horizon).")],
    register_as: Annotated[
        str | None, typer.Option("--register-as", help="Register the campaign model under this name.")
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--alias", help="Point this registry alias (e.g. champion) at the new version.")
    ] = None,
    experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment name.")] = "omni_ml",
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Experiment YAML (experiments/*.yaml): campaign settings.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also save the fitted campaign model here (joblib).")
    ] = None,
    no_tracking: Annotated[
        bool, typer.Option("--no-tracking", help="Do not log to MLflow (then --out is required).")
    ] = False,
) -> None:
    """Train the campaign model (propensity, channel, policy), back-test it out of time, log it to MLflow."""
    import warnings

    from omni_ml.campaign import CampaignConfig, CampaignModel
    from omni_ml.config import from_yaml
    from omni_ml.data import load_histories
    from omni_ml.exceptions import ConfigError

    if out is not None:
        _check_out(out, "campaign_model.joblib")
    if no_tracking and out is None:
        msg = "--no-tracking needs --out PATH (otherwise the fitted model would be lost)."
        raise ConfigError(msg)
    if alias and not register_as:
        msg = "--alias needs --register-as NAME (an alias points at a registered model version)."
        raise ConfigError(msg)
    settings = None
    horizon_days, train_as_of = horizon, as_of
    if config is not None:
        import yaml

        raw = yaml.safe_load(config.read_text()) if config.is_file() else None
        settings = from_yaml(CampaignConfig, config, section="campaign")
        if isinstance(raw, dict):
            experiment = str(raw.get("experiment", experiment)) if experiment == "omni_ml" else experiment
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hist = load_histories(directory, as_of=train_as_of)
    if no_tracking:
        model = CampaignModel(settings).fit(hist, train_as_of, horizon_days=horizon_days)
        run = None
    else:
        from omni_ml.tracking import train_campaign

        model, run = train_campaign(
            hist,
            train_as_of,
            horizon_days,
            config=settings,
            experiment=experiment,
            register_as=register_as,
            alias=alias,
            tracking_uri=tracking_uri,
            source=str(Path(directory).resolve()),
        )
    typer.echo(f"out-of-time back-test ({horizon_days}-day horizon, as of {train_as_of}):")
    typer.echo(model.report_.to_text())
    typer.echo(f"channel model: {type(model.channel_model_).__name__ if model.channel_model_ else model.channel_note_}")
    if model.channel_model_ is not None and model.channel_note_:
        typer.echo(model.channel_note_)
    backtest = getattr(model, "channel_backtest_", None)
    if backtest is not None:
        typer.echo(backtest.to_text())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        typer.echo(f"saved campaign model to {model.save(out)}")
    if run is not None:
        typer.echo(f"run_id: {run.run_id}")
        typer.echo(f"model_uri: {run.registered_uri or run.model_uri}")
        typer.echo(f"tracking_uri: {run.tracking_uri}")


@app.command()
@_user_errors
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the histories and truth/ into.")],
    preset: Annotated[str, typer.Option("--preset", help="small | default | large: the base config.")] = "default",
    customers: Annotated[int | None, typer.Option("--customers", help="Number of persons (overrides preset).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day of the history (ISO date).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="End of the history = as-of date of the truth.")] = None,
    future_days: Annotated[int | None, typer.Option("--future-days", help="Length H of the future window.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same bytes.")] = 0,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Processes simulating chunks; default: one per core, at most 4 (same files)."),
    ] = None,
) -> None:
    """Simulate a seeded omnichannel world: histories tables plus the ground truth in OUT/truth/."""
    import os

    _check_out(out, "", directory=True)
    workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
    import datetime as dt

    from rich.progress import Progress

    from omni_ml.exceptions import ConfigError
    from omni_ml.simulate import preset as simulation_preset
    from omni_ml.simulate import simulate as run_simulation

    overrides: dict[str, Any] = {"seed": seed}
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            try:
                overrides[name] = dt.date.fromisoformat(value)
            except ValueError:
                msg = f"--{name}: cannot parse {value!r} as a date. Hint: use ISO 8601, e.g. 2025-01-01."
                raise ConfigError(msg) from None
    if customers is not None:
        overrides["n_customers"] = customers
    if future_days is not None:
        overrides["future_days"] = future_days
    config = simulation_preset(preset, **overrides)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"simulating {config.n_customers:,} customers", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        path = run_simulation(config, out, progress=advance, workers=workers)
    typer.echo(
        f"wrote a world of {config.n_customers:,} customers ({config.start} .. {config.end}, "
        f"future {config.future_days} days, seed {config.seed}) to {path}; truth in {path / 'truth'}"
    )


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
    seed: Annotated[int, typer.Option("--seed", help="Campaign seed of the control group.")] = 0,
    chunks: Annotated[
        int | None, typer.Option("--chunks", help="Customer chunks processed in turn (default: by size).")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="polars (this machine) or spark.")] = "polars",
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ models.")
    ] = None,
    allow_stale: Annotated[
        bool,
        typer.Option("--allow-stale", help="Score even if the histories end more than the model's horizon before."),
    ] = False,
) -> None:
    """Score every customer as of a date and write the campaign file (one row per customer)."""
    from omni_ml.scoring import score as run_scoring

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
        allow_stale=allow_stale,
    )
    typer.echo(summary.to_text())


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


@app.command()
@_user_errors
def measure(
    campaign_file: Annotated[Path, typer.Argument(help="Campaign file from `omni-ml score` (with control_group).")],
    directory: Annotated[Path, typer.Argument(help="Histories directory holding the events after the campaign date.")],
    window: Annotated[int, typer.Option("--window", help="Outcome window in days after the campaign's as_of.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Report table (.csv|.parquet); plot and balance table are written beside it."),
    ] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples per segment (0: Welch only).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    alpha: Annotated[float, typer.Option("--alpha", help="1 - confidence level.")] = 0.05,
    mlflow_log: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log metrics to the model's run (lineage run_id) or a new run.")
    ] = True,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")] = None,
) -> None:
    """Measure a campaign: treated vs held-out control, incremental conversion and revenue with intervals."""
    from omni_ml.measure import measure_campaign, write_report

    if out is not None:
        _check_out(out, "measure.csv")
    report = measure_campaign(
        campaign_file,
        directory,
        window_days=window,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        log_mlflow=mlflow_log,
        tracking_uri=tracking_uri,
    )
    typer.echo(report.to_text())
    if out is not None:
        for path in write_report(report, out):
            typer.echo(f"wrote {path}")


@app.command()
@_user_errors
def forget(
    directory: Annotated[Path, typer.Argument(help="Histories directory holding the person.")],
    customer: Annotated[str, typer.Option("--customer", help="The person's customer_id (as in a campaign file).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the cleaned histories here (default: replace the files in DIRECTORY)."),
    ] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="YAML of IdentityRules used to find the person's identifiers.")
    ] = None,
) -> None:
    """Right to erasure: remove a person and all their identifiers from every table, and say what was removed."""
    from omni_ml.config import from_yaml
    from omni_ml.identity import IdentityRules
    from omni_ml.identity import forget as forget_person

    if out is not None:
        _check_out(out, "", directory=True)
    else:
        _check_out(directory, "", directory=True, flag="DIRECTORY")
    identity_rules = from_yaml(IdentityRules, rules) if rules is not None else None
    report = forget_person(directory, customer, out=out, rules=identity_rules)
    typer.echo(report.to_text())


def main() -> None:  # pragma: no cover - console entry point
    """Entry point used by ``python -m omni_ml``."""
    app()
    sys.exit(0)
