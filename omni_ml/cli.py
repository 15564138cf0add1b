"""The ``omni-ml`` command line: thin wrappers that parse arguments, call the public API, print summaries.

Every command exits 0 on success, 2 on bad input (a :class:`~omni_ml.exceptions.OmniMLError`)
with the message on stderr, 3 when ``score --fail-on-drift`` stops on a bad health verdict, and 1 on an
unexpected failure.
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
        from omni_ml.exceptions import DriftError

        try:
            return func(*args, **kwargs)
        except DriftError as exc:
            report = getattr(exc, "report", None)
            if report is not None:
                typer.echo(report.to_text())
            console.print("[bold red]error:[/] DriftError: ", end="")
            console.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(code=3) from None
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

    from omni_ml.campaign import CampaignModel, load_experiment
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
        loaded = load_experiment(config)  # read once; a misspelt key at any level is an error (exit 2)
        settings = loaded.campaign
        if loaded.experiment is not None and experiment == "omni_ml":
            experiment = str(loaded.experiment)
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
    choice = getattr(model, "history_choice_", None)
    if choice is not None:
        typer.echo(f"training history: {choice.reason}")
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
        if run.version is not None:
            typer.echo(f"model_version: {run.registered_name} version {run.version}")
        if run.alias is not None:  # what the registry said right after the alias was set
            typer.echo(f"alias: {run.registered_name}@{run.alias} -> version {run.alias_version}")
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
    continue_from: Annotated[
        Path | None,
        typer.Option("--continue-from", help="A simulated world to continue (with --campaign and --days)."),
    ] = None,
    campaign: Annotated[
        Path | None, typer.Option("--campaign", help="Campaign file sent at the world's end (best_channel).")
    ] = None,
    days: Annotated[int | None, typer.Option("--days", help="Days to continue the world by.")] = None,
) -> None:
    """Simulate a seeded omnichannel world: histories tables plus the ground truth in OUT/truth/.

    With --continue-from WORLD --campaign FILE --days D: the world continued by D days with the campaign
    sent at its end, as a complete histories directory with truth/ for the new end.
    """
    import os

    _check_out(out, "", directory=True)
    if continue_from is not None or campaign is not None or days is not None:
        _continue(continue_from, campaign, days, out)
        return

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


def _continue(world: Path | None, campaign: Path | None, days: int | None, out: Path) -> None:
    import polars as pl

    from omni_ml.exceptions import ConfigError, SchemaError
    from omni_ml.simulate import continue_histories

    missing = [
        flag for flag, v in (("--continue-from", world), ("--campaign", campaign), ("--days", days)) if v is None
    ]
    if missing:
        msg = (
            f"simulate: continuing a world needs --continue-from, --campaign and --days (missing {', '.join(missing)})."
        )
        raise ConfigError(msg)
    assert world is not None
    assert campaign is not None
    assert days is not None
    if not campaign.is_file():
        msg = f"--campaign {str(campaign)!r}: no such file. Hint: pass the campaign file omni-ml score wrote."
        raise SchemaError(msg)
    try:
        frame = pl.read_csv(campaign, try_parse_dates=True) if campaign.suffix == ".csv" else pl.read_parquet(campaign)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"--campaign {str(campaign)!r}: cannot be read ({first}). Hint: pass the file omni-ml score wrote."
        raise SchemaError(msg) from exc
    path = continue_histories(world, frame, days, out)
    typer.echo(f"continued {world} by {days} days with {campaign} to {path}; truth for the new end in {path / 'truth'}")


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
def feedback(
    campaign_file: Annotated[Path, typer.Argument(help="Campaign file from `omni-ml score` (assignment_probability).")],
    directory: Annotated[Path, typer.Argument(help="Histories directory the campaign was scored on.")],
    out: Annotated[Path, typer.Option("--out", help="New histories directory to write (or DIRECTORY itself).")],
    sent: Annotated[
        Path | None,
        typer.Option("--sent", help="Sends log (customer_id, channel, timestamp): only these sends are added."),
    ] = None,
    campaign_id: Annotated[
        str | None, typer.Option("--campaign-id", help="campaign_id of the rows (default cmp-YYYYMMDD of as_of).")
    ] = None,
) -> None:
    """Append a campaign's sends and randomised pauses to the contacts table of a copy of the histories."""
    from omni_ml.feedback import feedback as run_feedback

    summary = run_feedback(campaign_file, directory, out, sent=sent, campaign_id=campaign_id)
    typer.echo(summary.to_text())


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
