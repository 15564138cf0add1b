"""Privacy (issue 22): keyed pseudonyms, masked identifiers, the profiling consent, the right to erasure."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from omni_ml.cli import app
from omni_ml.data import Histories
from omni_ml.exceptions import ConfigError
from omni_ml.identity import IdentityRules, resolve

RUNNER = CliRunner()
KEY = "omni-ml-test-suite-key-not-a-secret"
T0 = dt.datetime(2025, 1, 1)


def flat(text: str) -> str:
    return " ".join(text.split())


def _anonymous_world(root: Path) -> Path:
    """Two identifiers seen together, never linked to a customer id: one anonymous customer."""
    root.mkdir()
    (root / "events.csv").write_text(
        "identifier,timestamp,channel,event_type\n"
        "phone:+4512342770,2025-01-02,store,visit\n"
        "cookie:9f2c77aa11,2025-01-03,web,visit\n"
    )
    (root / "identity_links.csv").write_text(
        "identifier_a,identifier_b,timestamp\nphone:+4512342770,cookie:9f2c77aa11,2025-01-01\n"
    )
    return root


# ----------------------------------------------------------------------------- keyed pseudonyms


def test_anonymous_ids_need_a_key_or_an_explicit_unsalted_22(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = _anonymous_world(tmp_path / "w")
    monkeypatch.delenv("OMNI_ML_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("OMNI_ML_UNSALTED", raising=False)
    out = tmp_path / "map.parquet"
    refused = RUNNER.invoke(app, ["resolve", str(world), "--out", str(out)])
    assert refused.exit_code == 2, refused.output
    assert "OMNI_ML_PSEUDONYM_KEY" in flat(refused.stderr)
    assert "--unsalted" in flat(refused.stderr)
    assert not out.exists()

    plain = RUNNER.invoke(app, ["--unsalted", "resolve", str(world), "--out", str(out)])
    assert plain.exit_code == 0, plain.output
    anchor = "cookie:9f2c77aa11"  # the earliest-seen identifier (both at the link's time: the smaller)
    ids = set(pl.read_parquet(out)["customer_id"])
    assert ids == {"anon-" + hashlib.sha256(anchor.encode()).hexdigest()[:16]}

    monkeypatch.setenv("OMNI_ML_PSEUDONYM_KEY", KEY)
    keyed = RUNNER.invoke(app, ["resolve", str(world), "--out", str(out)])
    assert keyed.exit_code == 0, keyed.output
    expected = "anon-" + hmac.new(KEY.encode(), anchor.encode(), hashlib.sha256).hexdigest()[:16]
    assert set(pl.read_parquet(out)["customer_id"]) == {expected}
    assert "+4512342770" not in keyed.output  # command output masks identifiers


def test_a_key_file_outside_the_repo_and_a_short_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omni_ml._privacy import pseudonym_key

    monkeypatch.delenv("OMNI_ML_PSEUDONYM_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_text("0123456789abcdef0123\n")
    monkeypatch.setenv("OMNI_ML_PSEUDONYM_KEY_FILE", str(key_file))
    assert pseudonym_key() == b"0123456789abcdef0123"
    monkeypatch.setenv("OMNI_ML_PSEUDONYM_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"OMNI_ML_PSEUDONYM_KEY_FILE .*cannot read"):
        pseudonym_key()
    monkeypatch.setenv("OMNI_ML_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match=r"has 5 characters; at least 16"):
        pseudonym_key()


def test_the_unsalted_flag_does_not_leak_past_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("OMNI_ML_UNSALTED", raising=False)
    world = _anonymous_world(tmp_path / "w")
    result = RUNNER.invoke(app, ["--unsalted", "resolve", str(world), "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 0, result.output
    assert "OMNI_ML_UNSALTED" not in os.environ


# ----------------------------------------------------------------------------- the profiling consent


def _hist(link_day: int, consents: list[tuple[int, bool]]) -> Histories:
    events = pl.DataFrame(
        {
            "customer_id": ["C1", None, None],
            "identifier": [None, "cookie:abcdef", "cookie:abcdef"],
            "timestamp": [T0 + dt.timedelta(days=d) for d in (1, 2, 40)],
            "channel": ["store", "web", "web"],
            "event_type": ["purchase", "view", "view"],
            "amount": [10.0, None, None],
        }
    )
    links = pl.DataFrame(
        {"identifier_a": ["cookie:abcdef"], "identifier_b": ["crm:C1"], "timestamp": [T0 + dt.timedelta(days=link_day)]}
    )
    records = pl.DataFrame(
        {
            "customer_id": ["C1"] * len(consents),
            "channel": ["profiling"] * len(consents),
            "granted": [g for _, g in consents],
            "timestamp": [T0 + dt.timedelta(days=d) for d, _ in consents],
        },
        schema={"customer_id": pl.String, "channel": pl.String, "granted": pl.Boolean, "timestamp": pl.Datetime},
    )
    return Histories.from_frames(events, identity_links=links, consents=records)


@settings(max_examples=40, deadline=None)
@given(
    link_day=st.integers(0, 60),
    grant_day=st.integers(0, 60),
    withdraw_day=st.one_of(st.none(), st.integers(0, 60)),
    as_of_day=st.integers(1, 61),
)
def test_a_withdrawn_profiling_consent_undoes_the_link_from_that_moment_22(
    link_day: int, grant_day: int, withdraw_day: int | None, as_of_day: int
) -> None:
    consents = [(grant_day, True)] + ([(withdraw_day, False)] if withdraw_day is not None else [])
    hist = _hist(link_day, consents)
    as_of = T0 + dt.timedelta(days=as_of_day)
    resolved, report = resolve(hist, as_of=as_of)
    assert resolved.identity_map is not None
    merged = dict(resolved.identity_map.iter_rows()).get("cookie:abcdef") == "C1"
    # The rule, stated on days: the link is seen before as_of, and the latest profiling record
    # strictly before the link and the latest strictly before as_of both grant (a withdrawal
    # on the day of a grant wins).
    by_day: dict[int, bool] = {}
    for day, granted in consents:
        by_day[day] = by_day.get(day, True) and granted

    def state(day: int) -> bool | None:
        before = [d for d in by_day if d < day]
        return by_day[max(before)] if before else None

    expected = link_day < as_of_day and state(link_day) is True and state(as_of_day) is True
    assert merged == expected, (link_day, grant_day, withdraw_day, as_of_day)
    events = resolved.events.collect()
    cookie_rows = events.filter(pl.col("identifier") == "cookie:abcdef")["customer_id"].unique().to_list()
    assert (cookie_rows == ["C1"]) == expected  # the person's features see the web views only when linked
    if link_day < as_of_day and not expected:
        assert report.links_without_profiling == 1


def test_without_profiling_records_links_are_used_as_before_and_required_mode_blocks_them() -> None:
    hist = _hist(5, [])
    resolved, _ = resolve(hist, as_of=T0 + dt.timedelta(days=30))
    assert resolved.identity_map is not None
    assert dict(resolved.identity_map.iter_rows())["cookie:abcdef"] == "C1"
    strict, report = resolve(hist, as_of=T0 + dt.timedelta(days=30), rules=IdentityRules(profiling="required"))
    assert strict.identity_map is not None
    assert dict(strict.identity_map.iter_rows())["cookie:abcdef"] != "C1"
    assert "1 not used (no profiling consent)" in report.to_text()
    with pytest.raises(ConfigError, match=r"profiling = 'sometimes'"):
        IdentityRules(profiling="sometimes")


# ----------------------------------------------------------------------------- forget


def test_forget_removes_the_person_everywhere_and_score_no_longer_knows_them_22(
    tmp_path: Path, campaign_model_path: Path
) -> None:
    from tests.cli.test_bad_inputs import AS_OF, _base, _write

    hist = _write(_base(), tmp_path / "hist")
    before = tmp_path / "before.parquet"
    args = ["--model", str(campaign_model_path), "--as-of", AS_OF]
    assert RUNNER.invoke(app, ["score", str(hist), *args, "--out", str(before)]).exit_code == 0
    assert "C1" in pl.read_parquet(before)["customer_id"].to_list()

    clean = tmp_path / "clean"
    result = RUNNER.invoke(app, ["forget", str(hist), "--customer", "C1", "--out", str(clean)])
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "forgot customer 'C1'" in text
    assert "identifiers removed: 2" in text  # crm:C1 and the cookie linked to it
    assert "7f3a9c11" not in text  # masked
    # no trace of the person's identifiers in any table
    for file in clean.iterdir():
        content = file.read_bytes().decode("latin-1")  # csv text, or parquet bytes holding the strings
        assert "cookie:7f3a9c11" not in content, file.name
        assert "C1," not in content, file.name
        assert ",C1\n" not in content, file.name
        assert "C1\x00" not in content, file.name
    # the other people are untouched
    events_before = pl.read_csv(hist / "events.csv", infer_schema=False)
    events_after = pl.read_csv(clean / "events.csv", infer_schema=False)
    assert events_after.equals(
        events_before.filter(
            (pl.col("customer_id") != "C1").fill_null(True)
            & (pl.col("identifier") != "cookie:7f3a9c11").fill_null(True)
        )
    )
    after = tmp_path / "after.parquet"
    scored = RUNNER.invoke(app, ["score", str(clean), *args, "--out", str(after)])
    assert scored.exit_code == 0, scored.output
    campaign = pl.read_parquet(after)
    assert "C1" not in campaign["customer_id"].to_list()
    assert campaign.height == pl.read_parquet(before).height - 1
    assert "7f3a9c11" not in after.read_bytes().decode("latin-1")


def test_forget_an_unknown_customer_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    from tests.cli.test_bad_inputs import _base, _write

    hist = _write(_base(), tmp_path / "hist")
    stamp = {p.name: p.read_bytes() for p in hist.iterdir()}
    result = RUNNER.invoke(app, ["forget", str(hist), "--customer", "C99"])
    assert result.exit_code == 2
    assert "--customer 'C99' is not in the histories" in flat(result.stderr)
    assert {p.name: p.read_bytes() for p in hist.iterdir()} == stamp


def test_forget_in_place_rewrites_only_the_files_that_held_the_person(tmp_path: Path) -> None:
    from tests.cli.test_bad_inputs import _base, _write

    hist = _write(_base(), tmp_path / "hist")
    links_before = (hist / "identity_links.csv").read_bytes()
    result = RUNNER.invoke(app, ["forget", str(hist), "--customer", "C2"])
    assert result.exit_code == 0, result.output
    assert b"email:ann@example.com" not in (hist / "identity_links.csv").read_bytes()
    assert (hist / "identity_links.csv").read_bytes() != links_before
    assert sorted(p.name for p in hist.iterdir()) == sorted(
        ["events.csv", "contacts.csv", "consents.csv", "identity_links.csv", "customers.parquet"]
    )
