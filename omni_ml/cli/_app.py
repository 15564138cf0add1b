"""The Typer app, its global options and what every command shares: output-path checks, atomic writes, exit codes."""

from __future__ import annotations

import functools
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
