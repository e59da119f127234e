"""The promotion gate killed between its registry writes: the rerun finishes the recorded decision."""

from __future__ import annotations

import json

import pytest

from prodemb import faults
from prodemb.promote import run_promote
from tests.faults.conftest import assert_killed, run_job
from tests.test_promote import NAME, _aliases, registry  # noqa: F401  (the registry fixture)


def _tags(client, version: str) -> dict:
    return {k: v for k, v in client.get_model_version(NAME, version).tags.items() if k.startswith("promotion.")}


def test_killed_after_moving_the_aliases_the_rerun_marks_it_done_without_scoring_again(registry):
    client, uri, work = registry["client"], registry["uri"], registry["work"]
    for version in ("2", "3"):  # no decision left on them by other tests
        for key in _tags(client, version):
            client.delete_model_version_tag(NAME, version, key)
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "candidate", "2")
    path = work / "usado-faults.csv"
    registry["tasks"]["usado"].to_csv(path, index=False)
    args = (
        "--mlflow-uri",
        uri,
        "--task",
        f"usado={path}",
        "--set",
        "promote.train_size=120",
        "--set",
        "promote.samples=1",
    )
    assert_killed(run_job("promote", *args, faults="promote.aliases_moved", cwd=work))
    # Killed between the alias moves and the final tag: champion moved, the decision still pending.
    assert _aliases(client) == {"champion": "2", "candidate": "2", "previous_champion": "1"}
    pending = _tags(client, "2")
    assert pending["promotion.decision"] == "pending" and pending["promotion.champion_version"] == "1"
    done = run_job("promote", *args, "--json", cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    decision = json.loads(done.stdout[done.stdout.index("{") :])
    assert decision["promoted"] and decision["decided_at"] == pending["promotion.decided_at"]  # not rescored
    assert _tags(client, "2") == {**pending, "promotion.decision": "promoted"}
    assert _aliases(client) == {"champion": "2", "candidate": "2", "previous_champion": "1"}


@pytest.mark.parametrize("point", ["promote.recording", "promote.recorded"])
def test_a_failure_while_recording_leaves_a_decision_the_rerun_takes_or_makes_again(registry, point, monkeypatch):
    """In process, the write failing at the point (a kill leaves the registry in the same state: the gate
    has no cleanup to skip). Mid-record there is no decision yet and the rerun decides again; once the
    pending decision is recorded, the rerun moves the aliases as decided."""
    cfg, client, tasks, uri = registry["cfg"], registry["client"], registry["tasks"], registry["uri"]
    for key in _tags(client, "2"):
        client.delete_model_version_tag(NAME, "2", key)
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "candidate", "2")
    monkeypatch.setenv(faults.ENV, f"{point}:error")
    monkeypatch.setattr(faults, "_hits", {})
    with pytest.raises(OSError, match=point):
        run_promote(cfg, tasks, tracking_uri=uri)
    assert _aliases(client)["champion"] == "1"  # nothing moved yet
    recorded = _tags(client, "2").get("promotion.decision")
    assert recorded == (None if point == "promote.recording" else "pending")
    monkeypatch.delenv(faults.ENV)
    calls = []
    d = run_promote(cfg, tasks, tracking_uri=uri, score_fn=lambda u: calls.append(u) or {"usado": 0.9})
    assert d.promoted and _aliases(client)["champion"] == "2"
    assert _tags(client, "2")["promotion.decision"] == "promoted"
    assert (calls == []) == (point == "promote.recorded")  # a pending decision is not scored again
