"""The promotion gate: move alias ``champion`` to the ``candidate`` version only when it is at least as good.

    candidate = models:/prodemb-encoder@candidate      champion = models:/prodemb-encoder@champion
    promote  ⇔  health(candidate) == "ok"  and  mean_t AUC_val(candidate, t) ≥ mean_t AUC_val(champion, t) − tolerance

Both versions are scored by the same protocol on the same splits and subsamples (seeded), on the
validation part of each configured task — the test part stays untouched for reporting. The decision
and both scores are written as tags on the candidate version, whatever the outcome; a promotion also
points alias ``previous_champion`` at the version it replaced, so a rollback is one alias move.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

log = logging.getLogger(__name__)

TAG_PREFIX = "promotion."


class GateError(ValueError):
    """The gate cannot decide (no candidate, no tasks, unknown model)."""


@dataclass
class GateDecision:
    model_name: str
    candidate_version: str
    champion_version: str | None
    promoted: bool
    reason: str
    candidate_auc: float | None = None
    champion_auc: float | None = None
    tolerance: float = 0.0
    candidate_per_task: dict[str, float] = field(default_factory=dict)
    champion_per_task: dict[str, float] = field(default_factory=dict)
    decided_at: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def decide(candidate_auc: float, champion_auc: float | None, tolerance: float, healthy: bool) -> tuple[bool, str]:
    """The rule itself (pure)."""
    if not healthy:
        return False, "candidate failed (or has no record of) the embedding health check"
    if champion_auc is None:
        return True, "no champion yet"
    if candidate_auc >= champion_auc - tolerance:
        return True, f"candidate {candidate_auc:.4f} >= champion {champion_auc:.4f} - tolerance {tolerance:g}"
    return False, f"candidate {candidate_auc:.4f} < champion {champion_auc:.4f} - tolerance {tolerance:g}"


def _mean(scores: dict[str, float]) -> float:
    if not scores:
        raise GateError("the evaluation returned no task scores")
    return float(sum(scores.values()) / len(scores))


def run_promote(cfg, tasks: dict, *, tolerance: float | None = None, tracking_uri: str | None = None,
                score_fn: Callable[[str], dict[str, float]] | None = None) -> GateDecision:
    """Score candidate and champion of ``cfg.mlflow.model_name`` on ``tasks`` (name → task table), decide,
    record, and move the alias when the candidate wins. Idempotent: once candidate is champion a rerun
    changes nothing (no rescoring, the recorded decision is kept). ``score_fn(model_uri) → {task: mean val AUC}``
    defaults to ``prodemb.evaluate.validation_scores`` with the ``promote`` section's sizes."""
    import mlflow

    from prodemb.registry import setup_tracking

    tolerance = cfg.promote.tolerance if tolerance is None else tolerance
    if not tasks:
        raise GateError("no evaluation tasks: configure evaluate.tasks or pass --task NAME=PATH")
    setup_tracking(tracking_uri or cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
    client = mlflow.MlflowClient()
    name = cfg.mlflow.model_name
    try:
        candidate = client.get_model_version_by_alias(name, "candidate")
    except mlflow.exceptions.MlflowException as exc:
        raise GateError(f"model {name!r} has no 'candidate' version to promote: {exc}") from exc
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        champion = None

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if champion is not None and champion.version == candidate.version:
        # Nothing to decide; the tags of the decision that made it champion (if any) stay as they are.
        return GateDecision(name, str(candidate.version), str(champion.version), False,
                            "candidate is already the champion", tolerance=tolerance, decided_at=now)

    if score_fn is None:
        from prodemb.evaluate import validation_scores

        def score_fn(uri: str) -> dict[str, float]:
            return validation_scores(uri, tasks, cfg, train_size=cfg.promote.train_size,
                                     samples=cfg.promote.samples, tracking_uri=tracking_uri)

    healthy = (candidate.tags or {}).get("health") == "ok"
    cand_scores = score_fn(f"models:/{name}/{candidate.version}") if healthy else {}
    champ_scores = score_fn(f"models:/{name}/{champion.version}") if (healthy and champion is not None) else {}
    cand_auc = _mean(cand_scores) if healthy else None
    champ_auc = _mean(champ_scores) if champ_scores else None
    promoted, reason = decide(cand_auc if cand_auc is not None else float("nan"), champ_auc, tolerance, healthy)
    decision = GateDecision(name, str(candidate.version), str(champion.version) if champion else None, promoted,
                            reason, cand_auc, champ_auc, tolerance, cand_scores, champ_scores, now)
    if promoted:
        if champion is not None:
            client.set_registered_model_alias(name, "previous_champion", champion.version)
        client.set_registered_model_alias(name, "champion", candidate.version)
    _record(client, decision)
    log.info("promotion gate: %s", reason)
    return decision


def _record(client, d: GateDecision) -> None:
    """Decision and both scores as tags on the candidate version (MLflow tags are strings)."""
    tags = {
        "decision": "promoted" if d.promoted else "refused",
        "reason": d.reason,
        "decided_at": d.decided_at,
        "tolerance": f"{d.tolerance:g}",
        "champion_version": d.champion_version or "",
        "candidate_val_auc": "" if d.candidate_auc is None else f"{d.candidate_auc:.6f}",
        "champion_val_auc": "" if d.champion_auc is None else f"{d.champion_auc:.6f}",
        "per_task": json.dumps({"candidate": d.candidate_per_task, "champion": d.champion_per_task}, sort_keys=True),
    }
    for key, value in tags.items():
        client.set_model_version_tag(d.model_name, d.candidate_version, TAG_PREFIX + key, value)
