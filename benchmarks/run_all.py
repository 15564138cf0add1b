"""Run every benchmark script in turn at its default (full) size: ``make bench``.

Each claim has its own script (``python -m benchmarks.bench_<topic> --help`` for quicker sizes);
this runner only sequences them, each in its own process so peak memory is measured cleanly.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))


def main() -> int:
    wanted = sys.argv[1:] or BENCHMARKS
    failed = []
    for name in wanted:
        print(f"=== {name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        print(f"=== {name}: exit {code} in {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
