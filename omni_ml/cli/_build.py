"""Commands that build: ``train`` a campaign model, ``simulate`` a world, ``continue`` one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from omni_ml.cli._app import _check_out, _user_errors, app, console


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
    from omni_ml.exceptions import ConfigError
    from omni_ml.measure._inputs import read_table
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
    frame, _ = read_table(campaign, "--campaign")
    path = continue_histories(world, frame, days, out)
    typer.echo(f"continued {world} by {days} days with {campaign} to {path}; truth for the new end in {path / 'truth'}")
