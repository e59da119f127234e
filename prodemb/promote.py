"""The promotion gate: move alias ``champion`` to the ``candidate`` version only when it is at least as good.

    candidate = models:/prodemb-encoder@candidate      champion = models:/prodemb-encoder@champion
    promote  ⇔  health(candidate) == "ok"  and  mean_t AUC_val(candidate, t) ≥ mean_t AUC_val(champion, t) − tolerance

Both versions are scored by the same protocol on the same splits and subsamples (seeded), on the
validation part of each configured task — the test part stays untouched for reporting. The decision
and both scores are written as tags on the candidate version, whatever the outcome; a promotion also
points alias ``previous_champion`` at the version it replaced, so a rollback is one alias move.

Each decision also writes the candidate's quality card (``prodemb/card.py``: an HTML page against the
champion on the same rows), logs it to the candidate's run and links both in ``promotion.quality_card``
(the file) and ``promotion.quality_card_artifact`` (``runs:/…``). The card's protocol run includes the
gate's rows, so the gate reads both versions' scores from it instead of fitting them again. A card that
cannot be made is logged as an error and never changes the decision (the gate then scores on its own).

The registry has no transactions, so a promotion is written in an order a rerun can finish: first the
whole decision as tags with ``promotion.decision=pending`` (its own tag last), then the aliases, then
``promotion.decision=promoted``. A run killed anywhere leaves either no decision (the next run decides
again) or a pending one, which the next run completes as recorded, without scoring again, as long as
the champion is still the one it was decided against.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

log = logging.getLogger(__name__)

TAG_PREFIX = "promotion."
PENDING, PROMOTED, REFUSED = "pending", "promoted", "refused"


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
    quality_card: str | None = None  # the candidate's card (prodemb/card.py): a local file ...
    quality_card_artifact: str | None = None  # ... and the same page in its MLflow run

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


def run_promote(
    cfg,
    tasks: dict,
    *,
    tolerance: float | None = None,
    tracking_uri: str | None = None,
    score_fn: Callable[[str], dict[str, float]] | None = None,
) -> GateDecision:
    """Score candidate and champion of ``cfg.mlflow.model_name`` on ``tasks`` (name → task table), decide,
    record, and move the alias when the candidate wins. Idempotent: once candidate is champion a rerun
    changes nothing (no rescoring, the recorded decision is kept). ``score_fn(model_uri) → {task: mean val AUC}``
    defaults to ``validation_scores`` with the ``promote`` section's sizes."""
    import mlflow

    from prodemb.registry import setup_tracking

    tolerance = cfg.promote.tolerance if tolerance is None else tolerance
    if not tasks:
        raise GateError("no evaluation tasks: configure evaluate.tasks or pass --task NAME=PATH")
    setup_tracking(tracking_uri or cfg.mlflow.tracking_uri, cfg.mlflow.experiment, registry_uri=cfg.mlflow.registry_uri)
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

    from prodemb.card import CANDIDATE_METHOD, CARD_TAG, CHAMPION_METHOD, artifact_uri, link_card, try_build_card

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    pending = _pending(name, candidate, champion)
    if pending is not None:  # a promotion a killed run decided but did not finish
        _move_aliases(client, pending)
        log.info(
            "promotion gate: finished the promotion of version %s decided at %s",
            pending.candidate_version,
            pending.decided_at,
        )
        return pending
    if champion is not None and champion.version == candidate.version:
        # Nothing to decide; the tags of the decision that made it champion (if any) stay as they are. A first
        # version (champion from training, never gated) still gets its quality card, once.
        d = GateDecision(
            name,
            str(candidate.version),
            str(champion.version),
            False,
            "candidate is already the champion",
            tolerance=tolerance,
            decided_at=now,
        )
        card_tag = (candidate.tags or {}).get(CARD_TAG)
        card = (
            try_build_card(cfg, name, d.candidate_version, tasks, tracking_uri=tracking_uri)
            if cfg.promote.card and not card_tag
            else None
        )
        d.quality_card = str(card.path) if card is not None else card_tag
        if card is not None:
            d.quality_card_artifact = link_card(client, name, d.candidate_version, d.quality_card, candidate.run_id)
        return d

    champion_version = str(champion.version) if champion else None
    healthy = (candidate.tags or {}).get("health") == "ok"
    card = (
        try_build_card(
            cfg, name, str(candidate.version), tasks, champion_version=champion_version, tracking_uri=tracking_uri
        )
        if cfg.promote.card
        else None
    )

    def scores(version: str, card_method: str) -> dict[str, float]:
        if score_fn is not None:
            return score_fn(f"models:/{name}/{version}")
        if card is not None:  # the card's protocol run already scored both versions on the gate's rows
            return _gate_scores(card.results, card_method, cfg.promote.train_size)
        return validation_scores(
            f"models:/{name}/{version}",
            tasks,
            cfg,
            train_size=cfg.promote.train_size,
            samples=cfg.promote.samples,
            tracking_uri=tracking_uri,
        )

    cand_scores = scores(str(candidate.version), CANDIDATE_METHOD) if healthy else {}
    champ_scores = scores(champion_version, CHAMPION_METHOD) if (healthy and champion_version) else {}
    cand_auc = _mean(cand_scores) if healthy else None
    champ_auc = _mean(champ_scores) if champ_scores else None
    promoted, reason = decide(cand_auc if cand_auc is not None else float("nan"), champ_auc, tolerance, healthy)
    decision = GateDecision(
        name,
        str(candidate.version),
        champion_version,
        promoted,
        reason,
        cand_auc,
        champ_auc,
        tolerance,
        cand_scores,
        champ_scores,
        now,
    )
    if card is not None:  # before the decision is recorded: a run killed while writing it decides (and writes) again
        decision.quality_card = str(card.path)
        if candidate.run_id:
            decision.quality_card_artifact = artifact_uri(candidate.run_id)
    _record(client, decision, PENDING if promoted else REFUSED)
    if promoted:
        _move_aliases(client, decision)
    log.info("promotion gate: %s", reason)
    return decision


def _gate_scores(results, method: str, train_size: int) -> dict[str, float]:
    """{task: mean validation AUC} of ``method`` in protocol ``results`` at the gate's size: ``train_size``
    rows, or a task's whole training pool when that is smaller (as ``validation_scores`` draws them)."""
    from prodemb.protocol import per_task_validation_auc

    rows = results[
        (results["method"] == method) & (results["train_size"] == results["n_train_pool"].clip(upper=train_size))
    ]
    return per_task_validation_auc(rows, method)


def _move_aliases(client, d: GateDecision) -> None:
    """The aliases of a recorded (pending) promotion, then the tag that says it is done."""
    from prodemb import faults

    if d.champion_version:
        client.set_registered_model_alias(d.model_name, "previous_champion", d.champion_version)
    client.set_registered_model_alias(d.model_name, "champion", d.candidate_version)
    faults.point("promote.aliases_moved")
    client.set_model_version_tag(d.model_name, d.candidate_version, TAG_PREFIX + "decision", PROMOTED)


def _pending(name: str, candidate, champion) -> GateDecision | None:
    """The candidate's pending promotion, if a killed run left one that still applies: the champion is
    the one it was decided against, or already the candidate."""
    tags = candidate.tags or {}
    if tags.get(TAG_PREFIX + "decision") != PENDING:
        return None
    against = tags.get(TAG_PREFIX + "champion_version") or None
    current = str(champion.version) if champion is not None else None
    if current not in (against, str(candidate.version)):
        return None  # the champion moved meanwhile: decide again
    auc = lambda key: float(tags[key]) if tags.get(key) else None  # noqa: E731
    per_task = json.loads(tags.get(TAG_PREFIX + "per_task") or "{}")
    return GateDecision(
        name,
        str(candidate.version),
        against,
        True,
        tags.get(TAG_PREFIX + "reason", ""),
        auc(TAG_PREFIX + "candidate_val_auc"),
        auc(TAG_PREFIX + "champion_val_auc"),
        float(tags.get(TAG_PREFIX + "tolerance") or 0.0),
        per_task.get("candidate", {}),
        per_task.get("champion", {}),
        tags.get(TAG_PREFIX + "decided_at", ""),
        tags.get(TAG_PREFIX + "quality_card") or None,
        tags.get(TAG_PREFIX + "quality_card_artifact") or None,
    )


def _record(client, d: GateDecision, decision: str) -> None:
    """Decision and both scores as tags on the candidate version (MLflow tags are strings), the
    ``decision`` tag last: it is what a rerun trusts."""
    from prodemb import faults

    tags = {
        "reason": d.reason,
        "decided_at": d.decided_at,
        "tolerance": f"{d.tolerance:g}",
        "champion_version": d.champion_version or "",
        "candidate_val_auc": "" if d.candidate_auc is None else f"{d.candidate_auc:.6f}",
        "champion_val_auc": "" if d.champion_auc is None else f"{d.champion_auc:.6f}",
        "per_task": json.dumps({"candidate": d.candidate_per_task, "champion": d.champion_per_task}, sort_keys=True),
        "quality_card": d.quality_card or "",
        "quality_card_artifact": d.quality_card_artifact or "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(d.model_name, d.candidate_version, TAG_PREFIX + key, value)
        faults.point("promote.recording")
    client.set_model_version_tag(d.model_name, d.candidate_version, TAG_PREFIX + "decision", decision)
    faults.point("promote.recorded")


# --- scoring a version on its own (without a card) -----------------------------------------------


def validation_scores(
    model_uri: str,
    tasks,
    cfg,
    *,
    train_size: int | None = None,
    samples: int | None = None,
    tracking_uri: str | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """{task: mean validation AUC} of the encoder at ``model_uri`` alone (the protocol's ``prodemb``
    method), at ``train_size`` rows per task (default ``promote.train_size``, capped by each task) ×
    ``samples`` samples (default ``promote.samples``). ``tasks``: {name: task table or path to one}, or a
    ``TaskSet``.

    Deterministic: the same tasks and config give the same splits and subsamples for every model, so
    ``validation_scores(champion, ...)`` and ``validation_scores(candidate, ...)`` compare like with like.
    """
    from prodemb.baselines.encoder import PretrainedEncoder
    from prodemb.protocol import EvaluateInputError, build_context, per_task_validation_auc, run_protocol
    from prodemb.tasks import TaskSet, gather_tasks

    train_size = int(train_size if train_size is not None else cfg.promote.train_size)
    samples = int(samples if samples is not None else cfg.promote.samples)
    ecfg = cfg.evaluate.model_copy(update={"train_sizes": [train_size], "samples": samples})
    # paths are read, DataFrames validated, order kept
    tables = dict(tasks.tables) if isinstance(tasks, TaskSet) else gather_tasks(dict(tasks)).tables
    if not tables:
        raise EvaluateInputError("no tasks to evaluate the model on")
    ctx = build_context(cfg, ["prodemb"], model_uri=model_uri, tracking_uri=tracking_uri)
    ctx.eval_cfg = ecfg
    results = run_protocol(tables, [PretrainedEncoder(ctx, model_uri=model_uri)], ecfg, progress=progress)
    return per_task_validation_auc(results, "prodemb")
