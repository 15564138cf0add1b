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
def _root() -> None:
    """omni_ml: omnichannel personalisation toolkit (histories -> features -> models -> campaign file)."""


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


def main() -> None:  # pragma: no cover - console entry point
    """Entry point used by ``python -m omni_ml``."""
    app()
    sys.exit(0)
