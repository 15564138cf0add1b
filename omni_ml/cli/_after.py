"""Commands after a campaign: ``measure``, ``feedback`` and ``forget``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omni_ml.cli._app import _check_out, _user_errors, app


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
