"""Where a campaign measurement goes: report files beside each other, metrics on an MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omni_ml._io import write_atomically
from omni_ml.exceptions import ConfigError

if TYPE_CHECKING:
    from omni_ml.measure._report import MeasureReport

__all__ = ["write_report"]


def write_report(report: MeasureReport, out: str | Path) -> list[Path]:
    """Write the table to ``out`` (.csv or .parquet), the balance table and the plot (PNG) beside it, atomically.

    Returns
    -------
    list[Path]
        ``[out, <stem>_balance.<ext>, <stem>.png]`` (no plot without matplotlib, the ``omni_ml[lab]`` extra).
    """
    from importlib.util import find_spec

    target = Path(out)
    if target.suffix not in (".csv", ".parquet"):
        msg = f"out {str(target)!r} must end in .csv or .parquet (got {target.suffix or 'no extension'!r})."
        raise ConfigError(msg)
    if not target.parent.is_dir():
        msg = f"the directory of out ({str(target.parent)!r}) does not exist. Hint: create it first."
        raise ConfigError(msg)
    balance = target.with_name(f"{target.stem}_balance{target.suffix}")
    png = target.with_suffix(".png")
    for frame, path in ((report.table, target), (report.balance, balance)):
        write_atomically(path, frame.write_csv if path.suffix == ".csv" else frame.write_parquet, mkdir=False)
    if find_spec("matplotlib") is None:
        return [target, balance]
    import matplotlib.pyplot as plt

    fig = report.plot()
    try:
        write_atomically(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), mkdir=False)
    finally:
        plt.close(fig)
    return [target, balance, png]


def _log(report: MeasureReport, run_id: str | None, tracking_uri: str | None) -> str:
    from importlib.util import find_spec

    import mlflow

    from omni_ml.tracking import DEFAULT_EXPERIMENT, resolve_tracking_uri, use_experiment

    previous = mlflow.get_tracking_uri()
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    try:
        if run_id is None:
            use_experiment(DEFAULT_EXPERIMENT, uri)
        stamp = f"{report.as_of:%Y%m%d}"
        with mlflow.start_run(
            run_id=run_id, run_name=None if run_id else f"measure-{stamp}", tags={"omni_ml.kind": "measure"}
        ) as run:
            mlflow.log_metrics({k.replace(" ", "_"): v for k, v in report.metrics().items()})
            mlflow.log_params(
                {f"measure.{stamp}.window_days": report.window_days, f"measure.{stamp}.alpha": report.alpha}
            )
            mlflow.log_text(report.table.write_csv(), f"measure/{stamp}/table.csv")
            mlflow.log_text(report.balance.write_csv(), f"measure/{stamp}/balance.csv")
            if find_spec("matplotlib") is not None:  # plots need the omni_ml[lab] extra
                import matplotlib.pyplot as plt

                fig = report.plot()
                mlflow.log_figure(fig, f"measure/{stamp}/incremental.png")
                plt.close(fig)
            return str(run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous)
