"""Contract vocabulary and time rules live in one place each (issue 21)."""

from __future__ import annotations

import re
from pathlib import Path

import omni_ml
from omni_ml.data import NO_CONTACT

PACKAGE = Path(omni_ml.__file__).resolve().parent


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_contact_is_defined_once_in_the_data_contract() -> None:
    definitions = [
        name
        for name, text in _sources().items()
        if re.search(r"^\s*_?[A-Z_]+\s*(:\s*\w+\s*)?=\s*[\"']no_contact[\"']", text, flags=re.MULTILINE)
    ]
    assert definitions == ["data/_contract.py"]
    assert NO_CONTACT == "no_contact"


def test_every_module_that_names_the_action_imports_the_contracts_constant() -> None:
    from omni_ml import measure, policy
    from omni_ml.models import _channel_learner
    from omni_ml.scoring import _chunks, _summary
    from omni_ml.simulate import continuation

    assert {
        m.NO_CONTACT is NO_CONTACT for m in (measure, policy, _chunks, _summary, _channel_learner, continuation)
    } == {True}


_TIME_COMPARISON = re.compile(r"""(pl\.col\("[a-z_]*(timestamp|ts|cutoff|seen)[a-z_]*"\)|\bts)\s*(<|>=|<=|>)\s""")


def test_time_comparisons_live_only_in_the_time_module_and_the_feature_engine() -> None:
    """`before(t)` / `window(t, days)` of omni_ml._time state "strictly before the cutoff" for every other module."""
    offenders = [
        f"{name}:{i}: {line.strip()}"
        for name, text in _sources().items()
        if not name.startswith(("features/", "simulate/")) and name != "_time.py"
        for i, line in enumerate(text.splitlines(), start=1)
        if _TIME_COMPARISON.search(line)
    ]
    assert offenders == []


def test_the_pattern_would_see_a_stray_comparison() -> None:
    assert _TIME_COMPARISON.search('    lf.filter(pl.col("timestamp") < moment)')
    assert _TIME_COMPARISON.search("    past = events.filter(ts >= start)")
    assert not _TIME_COMPARISON.search("    lf.filter(before(moment))")


def test_the_package_ships_its_type_hints() -> None:
    """PEP 561: ``py.typed`` is in the package and declared as package data."""
    import tomllib

    assert (PACKAGE / "py.typed").is_file()
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["omni_ml"]


_UTC_CONVERSION = re.compile(
    r"""\.replace\(tzinfo=dt\.UTC\)|\.(replace|convert)_time_zone\("UTC"\)|combine\(.*tzinfo=dt\.UTC"""
)


def test_utc_conversions_live_only_in_the_time_module() -> None:
    """`as_utc(value)` / `utc_column(column, dtype)` of omni_ml._time turn instants and columns into UTC elsewhere.

    The simulator (which writes the data, never reads a user's) and the send-time schedule (local wall
    times of a customer's zone, a different conversion) are outside the rule.
    """
    offenders = [
        f"{name}:{i}: {line.strip()}"
        for name, text in _sources().items()
        if not name.startswith("simulate/") and name not in ("_time.py", "timing/_schedule.py")
        for i, line in enumerate(text.splitlines(), start=1)
        if _UTC_CONVERSION.search(line) and not line.lstrip().startswith((">>>", "..."))
    ]
    assert offenders == []


def test_the_utc_pattern_would_see_a_stray_conversion() -> None:
    assert _UTC_CONVERSION.search("    t = as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)")
    assert _UTC_CONVERSION.search('    expr = pl.col("cutoff").dt.replace_time_zone("UTC")')
    assert _UTC_CONVERSION.search("    end = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)")
    assert not _UTC_CONVERSION.search("    t = as_utc(as_of)")
