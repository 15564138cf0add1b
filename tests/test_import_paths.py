"""Modules split into packages keep every import path, and classes keep the module pickles name them by."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest


def test_tracking_names_import_from_the_package() -> None:
    from omni_ml import tracking
    from omni_ml.tracking import (
        DEFAULT_EXPERIMENT,
        ERROR_TAG,
        MODEL_NAME_IN_RUN,
        ensure_store,
        store_lock,
    )

    assert (DEFAULT_EXPERIMENT, ERROR_TAG, MODEL_NAME_IN_RUN) == ("omni_ml", "omni_ml.error", "campaign_model")
    assert callable(ensure_store)
    assert callable(store_lock)
    assert all(callable(getattr(tracking, name)) for name in tracking.__all__)


def test_scoring_names_import_from_the_package() -> None:
    from omni_ml import scoring
    from omni_ml.scoring import CONTROL_RULE, EXPLORE_RULE, VALUE_RULES, _Job

    assert (CONTROL_RULE, EXPLORE_RULE) == ("control_group", "explore")
    assert "best_value" in VALUE_RULES
    assert callable(_Job.run)
    assert isinstance(scoring.CHUNK_CUSTOMERS, int)
    assert all(hasattr(scoring, name) for name in scoring.__all__)


def test_world_still_offers_the_continuation_it_moved_out() -> None:
    from omni_ml.simulate import continuation, world
    from omni_ml.simulate.world import continue_histories, continue_world, load_config

    assert continue_world is continuation.continue_world
    assert continue_histories is continuation.continue_histories
    assert load_config is continuation.load_config
    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        world.not_there  # noqa: B018


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("omni_ml.tracking", "TrackedRun"),
        ("omni_ml.tracking", "LoadedModel"),
        ("omni_ml.scoring", "LoadedCampaignModel"),
        ("omni_ml.scoring", "ScoringSummary"),
        ("omni_ml.scoring", "_Job"),
        ("omni_ml.timing", "SendTimeModel"),
        ("omni_ml.timing", "TimingConfig"),
    ],
)
def test_classes_pickle_by_their_public_module(module: str, name: str) -> None:
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert cls.__module__ == module
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert f"{module}\n{name}".encode() in pickle.dumps(cls, protocol=0)


def test_the_cli_package_keeps_its_commands_and_runs_as_a_module() -> None:
    from omni_ml.cli import app, main, score, train

    assert all(callable(f) for f in (main, score, train))
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    assert names == [
        "validate", "resolve", "train", "simulate", "score", "monitor", "features", "measure", "feedback", "forget"
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "omni_ml.cli", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "forget" in done.stdout
