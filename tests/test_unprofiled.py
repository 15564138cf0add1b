"""People without a profiling consent are scored without personal features, or left out (issue 22)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from omni_ml._unprofiled import NOT_PERSONALISED, NOT_PERSONALISED_CHANNEL, NOT_PERSONALISED_CODE
from omni_ml.campaign import CampaignModel
from omni_ml.cli import app
from omni_ml.data import NO_CONTACT, PROFILING, Histories
from omni_ml.exceptions import ConfigError
from omni_ml.identity import consent_state
from omni_ml.scoring import score

RUNNER = CliRunner()
AS_OF = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
GRANTED = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
N_PEOPLE = 240
_CACHE: dict[str, object] = {}


def _records(consents: pl.DataFrame, ids: pl.Series, granted: bool, when: dt.datetime) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "customer_id": ids,
            "channel": pl.Series([PROFILING] * ids.len(), dtype=pl.String),
            "granted": pl.Series([granted] * ids.len(), dtype=pl.Boolean),
            "timestamp": pl.Series([when] * ids.len()),
        }
    )
    return frame.select(
        pl.col(c).cast(dtype) if c in frame.columns else pl.lit(None, dtype=dtype).alias(c)
        for c, dtype in consents.schema.items()
    )


def _everyone_granted(small_histories: Histories) -> tuple[Histories, pl.Series]:
    """The first N_PEOPLE customers of the small world, each with a profiling grant long before AS_OF."""
    if "hist" not in _CACHE:
        assert small_histories.customers is not None
        assert small_histories.consents is not None
        ids = small_histories.customers.select("customer_id").collect()["customer_id"].sort().head(N_PEOPLE)
        keep = pl.col("customer_id").is_in(ids.implode())
        tables = {
            t: lf.filter(keep)
            for t in ("events", "contacts", "consents", "customers")
            if (lf := getattr(small_histories, t)) is not None
        }
        hist = small_histories.replace(identity_links=None, **tables)
        consents = hist.consents.collect()  # type: ignore[union-attr]
        hist = hist.replace(consents=pl.concat([consents, _records(consents, ids, True, GRANTED)]).lazy()).collect()
        _CACHE["hist"] = (hist, ids)
    return _CACHE["hist"]  # type: ignore[return-value]


def _withdraw(hist: Histories, who: pl.Series, when: dt.datetime) -> Histories:
    consents = hist.consents.collect()  # type: ignore[union-attr]
    return hist.replace(consents=pl.concat([consents, _records(consents, who, False, when)]).lazy())


def _baseline(model: CampaignModel, hist: Histories) -> pl.DataFrame:
    if "baseline" not in _CACHE:
        _CACHE["baseline"] = model.score(hist, AS_OF)
    return _CACHE["baseline"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def model(campaign_model_path: Path) -> CampaignModel:
    return CampaignModel.load(campaign_model_path)


def test_everyone_with_a_grant_is_personalised(model: CampaignModel, small_histories: Histories) -> None:
    hist, ids = _everyone_granted(small_histories)
    base = _baseline(model, hist)
    assert base.height > 0
    assert base["personalised"].all()
    assert not base["reason_1"].is_in([NOT_PERSONALISED]).any()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(person=st.integers(0, N_PEOPLE - 1), days_before=st.integers(1, 700))
def test_withdrawing_profiling_depersonalises_that_person_only_22(
    model: CampaignModel, small_histories: Histories, person: int, days_before: int
) -> None:
    hist, ids = _everyone_granted(small_histories)
    base = _baseline(model, hist)
    who = ids.gather([person])
    withdrawn = _withdraw(hist, who, AS_OF - dt.timedelta(days=days_before))
    after = model.score(withdrawn, AS_OF)

    others = pl.col("customer_id") != who[0]
    assert after.filter(others).equals(base.filter(others))  # nothing changes for anyone else
    row = after.filter(~others)
    assert row.height == base.filter(~others).height == 1
    got = row.row(0, named=True)
    # no personal feature value or reason on their row
    assert got["personalised"] is False
    assert got["propensity"] == pytest.approx(model.population_propensity_)
    assert got["clv_12m"] is None
    assert got["reason_1"] == NOT_PERSONALISED
    assert got["reason_code_1"] == NOT_PERSONALISED_CODE
    assert all(got[f"reason_{i}"] is None for i in (2, 3))
    assert all(got[f"reason_pp_{i}"] is None for i in (1, 2, 3))
    assert got["reason_baseline"] is None
    assert got["reason_other_pp"] is None
    assert got["send_time_zone"] == "UTC"
    assert got["offer_category"] == model.policy_.offer_category  # nothing inferred from their purchases
    if got["best_channel"] == NO_CONTACT:
        assert got["channel_reason_1"] is None
    else:
        assert got["channel_reason_1"] == NOT_PERSONALISED_CHANNEL
    # never a contact on a channel without consent
    channels = list(model.policy_.channels)
    keys = pl.DataFrame({"customer_id": who, "cutoff": [AS_OF]})
    consent = consent_state(withdrawn, keys, channels=channels, default=model.policy_.default_consent).row(
        0, named=True
    )
    if got["best_channel"] != NO_CONTACT:
        assert consent[f"consent_{got['best_channel']}"] is True
    for channel in channels:
        if not consent[f"consent_{channel}"]:
            assert got[f"score_{channel}"] is None
    # their own events are never read: without them, the row is the same
    no_events = withdrawn.replace(events=withdrawn.events.filter(pl.col("customer_id") != who[0]))
    again = model.score(no_events, AS_OF).filter(~others)
    assert again.equals(row)


def test_exclude_leaves_them_out_and_a_bad_mode_is_a_config_error(
    model: CampaignModel, small_histories: Histories
) -> None:
    hist, ids = _everyone_granted(small_histories)
    withdrawn = _withdraw(hist, ids.head(3), AS_OF - dt.timedelta(days=10))
    out = model.score(withdrawn, AS_OF, unprofiled="exclude")
    base = _baseline(model, hist)
    assert out.equals(base.filter(~pl.col("customer_id").is_in(ids.head(3).implode())))
    with pytest.raises(ConfigError, match=r"unprofiled = 'sometimes' must be 'anonymous'"):
        model.score(withdrawn, AS_OF, unprofiled="sometimes")  # type: ignore[arg-type]


def test_one_profiling_record_anywhere_requires_it_for_every_chunk(
    model: CampaignModel, small_histories: Histories, tmp_path: Path
) -> None:
    # Only the first person ever granted profiling: everyone else has no profiling consent, in every chunk
    # (also in the chunks that hold no profiling record at all).
    hist, ids = _everyone_granted(small_histories)
    consents = hist.consents.collect()  # type: ignore[union-attr]
    only_one = consents.filter((pl.col("channel") != PROFILING) | (pl.col("customer_id") == ids[0]))
    root = tmp_path / "hist"
    root.mkdir()
    for table, lf in {**hist.tables(), "consents": only_one.lazy()}.items():
        if table != "identity_links":
            lf.collect().write_parquet(root / f"{table}.parquet")
    one = score(root, model=model, as_of=AS_OF, out=tmp_path / "one.parquet", chunks=1, progress=False, monitor=False)
    many = score(root, model=model, as_of=AS_OF, out=tmp_path / "many.parquet", chunks=7, progress=False, monitor=False)
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "many.parquet").read_bytes()
    frame = pl.read_parquet(tmp_path / "one.parquet")
    assert frame.filter(pl.col("personalised"))["customer_id"].to_list() == [ids[0]]
    assert one.unprofiled == many.unprofiled == frame.height - 1
    assert f"not personalised: {frame.height - 1:,} customers" in one.to_text()


def test_cli_unprofiled_flag(tmp_path: Path, campaign_model_path: Path) -> None:
    from tests.test_bad_inputs import AS_OF as CLI_AS_OF
    from tests.test_bad_inputs import _base, _write

    tables = _base()
    tables["consents"].append(  # C1 withdrew profiling; C2..C6 granted it
        {"customer_id": "C1", "identifier": None, "channel": "profiling", "granted": "false", "timestamp": "2024-11-01"}
    )
    for k in range(2, 7):
        tables["consents"].append(
            {
                "customer_id": f"C{k}",
                "identifier": None,
                "channel": "profiling",
                "granted": "true",
                "timestamp": "2024-09-01",
            }
        )
    hist = _write(tables, tmp_path / "hist")
    args = ["score", str(hist), "--model", str(campaign_model_path), "--as-of", CLI_AS_OF]
    out = tmp_path / "campaign.parquet"
    result = RUNNER.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    unprofiled = frame.filter(~pl.col("personalised"))["customer_id"].to_list()
    # C1, and the cookie whose link to C1 the withdrawal undid (an anonymous person without a grant)
    assert "C1" in unprofiled
    assert all(c == "C1" or c.startswith("anon-") for c in unprofiled)
    assert frame.filter(pl.col("personalised"))["customer_id"].sort().to_list() == [f"C{k}" for k in range(2, 7)]
    assert frame.filter(pl.col("customer_id") == "C1")["reason_1"].item() == NOT_PERSONALISED
    excluded = tmp_path / "excluded.parquet"
    result = RUNNER.invoke(app, [*args, "--out", str(excluded), "--unprofiled", "exclude"])
    assert result.exit_code == 0, result.output
    assert "C1" not in pl.read_parquet(excluded)["customer_id"].to_list()
    bad = tmp_path / "bad.parquet"
    result = RUNNER.invoke(app, [*args, "--out", str(bad), "--unprofiled", "nobody"])
    assert result.exit_code == 2
    assert "unprofiled (--unprofiled) = 'nobody'" in " ".join(result.stderr.split())
    assert not bad.exists()
