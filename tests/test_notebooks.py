"""The experiments/ notebooks stay reviewable: committed without outputs, on a kernel that exists, with checks.

(Executing them is `make notebooks`: pytest --nbmake experiments/.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
EXPECTED = [
    "01_unified_histories",
    "02_features",
    "03_propensity",
    "04_best_channel",
    "05_explanations",
    "06_batch_scoring",
    "07_campaign_loop",
    "08_send_time",
]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXPERIMENTS / f"{name}.ipynb").read_text())
    return data


def test_every_notebook_is_there_and_in_the_readme() -> None:
    found = sorted(p.stem for p in EXPERIMENTS.glob("[0-9][0-9]_*.ipynb"))
    assert found == EXPECTED
    readme = (EXPERIMENTS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_stripped_and_runnable_here(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    nb = _load(name)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    kernel = nb["metadata"]["kernelspec"]["name"]
    assert kernel in KernelSpecManager().find_kernel_specs(), f"kernel {kernel!r} is not installed in this env"
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert "What you learn" in first
    last = "".join(code[-1]["source"])
    assert last.count("assert ") >= 3, "the final cell asserts key facts"
    body = "\n".join("".join(c["source"]) for c in code)
    assert "display(" in body or "plt.show()" in body, "at least one plot"
    assert "OMNI_ML_PRESET" in body, "preset from the environment"
    assert "ensure_world" in body, "one cached world shared by the notebooks"
