"""``make demo``: the main job end to end on embedded defaults.

Run with ``python -m omni_ml.demo [OUT_DIR]``. Each step prints what it did and where its output is.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from omni_ml.data import load_histories

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def run(out_dir: Path) -> None:
    """Run every capability that the toolkit has, in the order of the data flow."""
    out_dir.mkdir(parents=True, exist_ok=True)
    print("== 1. validate the hand-written sample histories (data/sample)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = load_histories(SAMPLE)
    assert hist.report is not None
    print(hist.report.to_text())


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m omni_ml.demo``."""
    args = sys.argv[1:] if argv is None else argv
    run(Path(args[0]) if args else Path("demo_out"))


if __name__ == "__main__":
    main()
