"""The ``prodemb`` DAG: one run per data interval (daily), every task a transaction for that interval.

    sessionize ─▶ consolidate ─▶ retrain_due ─▶ train_tokenizer ─▶ train ─▶ promote ─▶ score ─▶ publish
                      │                                              └──▶ evaluate       ▲
                      └──────────────────────────────────────────────────────────────────┘

The stages, their order and their jobs' arguments come from ``prodemb.pipeline`` (which ``make demo``
runs too); this file makes Airflow tasks of them.

Settings come from the ``schedule:`` block (and ``paths``, ``mlflow``, ``spark``, ...) of the same
``conf/`` profiles the jobs use: ``PRODEMB_PROFILE`` picks the profile when the file is parsed, and
``PRODEMB_OVERRIDES`` (one ``section.key=value`` per line) adds overrides. Every job gets the same
``--config-profile`` and ``--set`` flags, so the jobs see the configuration this file saw. Relative
local paths are relative to the repository root.

Interval semantics (``CronDataIntervalTimetable(schedule.cron)``, UTC; a run's data interval is
[data_interval_start, data_interval_end)):

* ``sessionize`` (Spark) processes exactly the run's interval into ``schedule.intervals_dir``
  (``interval=YYYYMMDDTHHMMSS`` partitions); a rerun atomically replaces that partition only.
* ``consolidate`` (Spark) rebuilds the full ``catalog``/``pairs``/``sessions`` tables of ``paths.data_dir``
  from all intervals sessionized so far, one atomic table swap after the other, catalog first (a failure
  between tables leaves a catalog that covers the previous pairs; a rerun finishes the job). Everything
  downstream reads those.
* ``retrain_due`` lets the training branch run when the interval ends on ``schedule.retrain_cron``
  (every day by default; the cluster profile retrains weekly), or when the run's conf says
  ``{"retrain": true}`` (a JSON boolean, or true/false/1/0/yes/no as a string; anything else fails the
  task); otherwise ``train_tokenizer``, ``train``, ``evaluate`` and ``promote`` are skipped and
  ``score``/``publish`` still run with the current champion (daily scoring, weekly retraining, one DAG).
* ``train_tokenizer`` writes ``<work_dir>/tokenizers/<interval>/tokenizer.model`` atomically (seeded:
  a rerun writes the same bytes).
* ``train`` passes ``--run-key prodemb/<start>-<end>``: a rerun of the interval finds the version
  already registered under that key and reuses it (no second version, aliases untouched).
* ``evaluate`` (a reporting leaf after ``train``) scores ``@candidate`` on ``evaluate.tasks`` and
  ``evaluate.builtin_tasks`` into ``<work_dir>/eval/<interval>``, a folder the job publishes in one step
  (``prodemb.fs.atomic_dir``). With ``--keep-going`` a failing method is reported and the others'
  results are still published (the task fails, exit 1); a failure before the report is complete leaves
  the previous report in place. Its failure fails the DAG run but blocks neither ``promote`` nor ``score``:
  the gate scores the candidate itself.
* ``promote`` moves ``champion`` to ``candidate`` only if the candidate is healthy and as good (idempotent:
  a second call finds candidate already champion and leaves the recorded decision alone, or refuses again).
* ``score`` (Spark, trigger rule ``all_done_min_one_success``) runs once ``consolidate`` succeeded and the
  training branch is over, however it ended: promoted, skipped (retrain_due said no), or failed (a failed
  ``train`` or a gate that refused): then the current champion scores the day's products, so a broken
  weekly training never leaves new products unscored. It rewrites the champion version's rows of
  ``embeddings`` (a rerun replaces them). A failed ``consolidate`` fails the whole branch, ``score`` too.
* ``publish`` upserts the latest vector of every product into the Feast online store.

Spark stages go through ``SparkSubmitOperator`` with connection ``schedule.spark_conn_id``
(``spark_default``; e.g. ``AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[*]"}'``);
the tasks stop with a clear message when it is not defined (the provider would fall back to ``yarn``).
``spark-submit`` must be on the worker's PATH, and PySpark runs ``schedule.python``. ``train`` runs on
Celery queue ``schedule.train_queue`` (a GPU worker) in pool ``schedule.train_pool``. See
airflow_dags/README.md for running it, the cluster profile and a KubernetesPodOperator variant.
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pendulum  # noqa: E402
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator  # noqa: E402
from airflow.providers.standard.operators.bash import BashOperator  # noqa: E402
from airflow.providers.standard.operators.python import ShortCircuitOperator  # noqa: E402
from airflow.sdk import DAG, CronDataIntervalTimetable  # noqa: E402

from prodemb import fs  # noqa: E402
from prodemb.config import load_config  # noqa: E402
from prodemb.pipeline import STAGES, Context, downstream, stage_args  # noqa: E402
from prodemb.registry import site_model_name  # noqa: E402
from prodemb.spark import delta_package_conf, resolve_conf, uses_s3a  # noqa: E402

DAG_ID = "prodemb"
TASK_IDS = tuple(stage.name for stage in STAGES)


def env_overrides(raw: str | None = None) -> list[str]:
    """``PRODEMB_OVERRIDES``: one ``section.key=value`` per line (blank lines and ``#`` comments ignored)."""
    raw = os.environ.get("PRODEMB_OVERRIDES", "") if raw is None else raw
    return [s for s in (line.strip() for line in raw.splitlines()) if s and not s.startswith("#")]


def local_path(path: str) -> str:
    """Absolute path for a local path (relative ones are relative to the repository root); URIs as given."""
    return os.path.normpath(os.path.join(REPO_ROOT, path)) if fs.scheme(path) == "" else path


def tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` is relative to the working directory: anchor it at the repository root."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + local_path(uri.removeprefix("sqlite:///"))
    return uri


OVERRIDES = env_overrides()
CFG = load_config(os.environ.get("PRODEMB_PROFILE") or None, OVERRIDES)
S = CFG.schedule
DATA = local_path(CFG.paths.data_dir)
INTERVALS = local_path(S.intervals_dir or f"{CFG.paths.data_dir.rstrip('/')}/intervals")
WORK = local_path(S.work_dir or CFG.paths.runs_dir)
SOURCE = local_path(S.source_path or f"{CFG.paths.synth_dir.rstrip('/')}/clicks")
MLFLOW_URI = tracking_uri(CFG.mlflow.tracking_uri)
PYTHON = S.python or sys.executable
# --json: each job's whole report goes to the task log (a person at a terminal gets one summary line).
CONFIG_ARGS = ["--config-profile", CFG.profile, *[x for o in OVERRIDES for x in ("--set", o)], "--json"]
if set(S.task_retries) - set(TASK_IDS):
    raise ValueError(
        f"schedule.task_retries names unknown tasks {sorted(set(S.task_retries) - set(TASK_IDS))} "
        f"(tasks: {list(TASK_IDS)})"
    )

# Jinja: the run's interval. The label is sessionize's partition name (prodemb.sessions.interval_label).
INTERVAL = "{{ data_interval_start.strftime('%Y%m%dT%H%M%S') }}"
RUN_KEY = DAG_ID + "/" + INTERVAL + "-{{ data_interval_end.strftime('%Y%m%dT%H%M%S') }}"
TEMPLATED_ENV = {"PRODEMB_INTERVAL": INTERVAL, "PRODEMB_RUN_KEY": RUN_KEY}


class Raw(str):
    """A shell fragment inserted as is (e.g. ``"$PRODEMB_INTERVAL"``); everything else is quoted."""


def sh(*parts: str) -> str:
    return " ".join(p if isinstance(p, Raw) else shlex.quote(str(p)) for p in parts)


def word(*parts: str) -> Raw:
    """One shell word from literal parts (quoted) and ``$NAME`` variables (expanded, in double quotes)."""
    return Raw("".join(f'"{p}"' if p.startswith("$") else shlex.quote(p) for p in parts))


def spark_env() -> dict[str, str]:
    env = {"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON}
    # The venv's own spark-submit (pip's pyspark) comes first on PATH when it sits next to Python: it finds
    # SPARK_HOME through the `python3` on PATH, whatever the master.
    if (Path(PYTHON).parent / "spark-submit").exists():
        env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def spark_packages() -> dict[str, str]:
    """``--packages`` / ``--exclude-packages`` for Delta (and s3a when the profile configures it): jars must
    be resolved by spark-submit itself, before the driver's JVM starts. None where the profile says the
    cluster's Spark has them (``spark.packages_installed``)."""
    if CFG.sessions.format != "delta" or CFG.spark.packages_installed:
        return {}
    conf = delta_package_conf(s3a=uses_s3a(CFG.spark.conf))
    return {"packages": conf["spark.jars.packages"], "exclude_packages": conf["spark.jars.excludes"]}


def require_spark_connection(context=None) -> None:
    """Fail clearly when the Spark connection is not defined (the provider would silently use ``yarn``)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(S.spark_conn_id)
    except AirflowNotFoundException:
        raise RuntimeError(
            f"Airflow connection {S.spark_conn_id!r} is not defined; locally: export AIRFLOW_CONN_"
            f'{S.spark_conn_id.upper()}=\'{{"conn_type": "spark", "host": "local[*]"}}\' '
            "(see airflow_dags/README.md)"
        ) from None


def spark_job(task_id: str, application: str, *args: str, **kwargs) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=S.spark_conn_id,
        application=str(REPO_ROOT / application),
        application_args=[*args, *CONFIG_ARGS],
        name=f"prodemb-{task_id}",
        conf=resolve_conf(CFG.spark.conf),
        **spark_packages(),
        env_vars=spark_env(),
        retries=S.task_retries.get(task_id, S.retries),
        pre_execute=require_spark_connection,
        **kwargs,
    )


def python_job(task_id: str, script: str, *args: str, **kwargs) -> BashOperator:
    command = sh(PYTHON, str(REPO_ROOT / script), *args, *CONFIG_ARGS)
    return BashOperator(
        task_id=task_id,
        bash_command=command,
        cwd=str(REPO_ROOT),
        env=TEMPLATED_ENV,
        append_env=True,
        retries=S.task_retries.get(task_id, S.retries),
        **kwargs,
    )


def per_site_job(task_id: str, script: str, args_of_site, **kwargs):
    """One task, or with ``sites:`` configured one mapped task instance per site (dynamic task mapping):
    ``args_of_site(site)`` gives the job's arguments for a site (None: no sites, one model)."""
    if not CFG.sites:
        return python_job(task_id, script, *args_of_site(None), **kwargs)
    commands = [sh(PYTHON, str(REPO_ROOT / script), *args_of_site(site), *CONFIG_ARGS) for site in CFG.sites]
    return BashOperator.partial(
        task_id=task_id,
        cwd=str(REPO_ROOT),
        env=TEMPLATED_ENV,
        append_env=True,
        retries=S.task_retries.get(task_id, S.retries),
        **kwargs,
    ).expand(bash_command=commands)


def model_of(site: str | None) -> str:
    return site_model_name(CFG.mlflow.model_name, site)


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_bool(value, name: str = "value") -> bool:
    """A JSON boolean, 0/1, or one of true/false/1/0/yes/no (any case); anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (true/false, 1/0, yes/no), got {value!r}")


def retrain_due(cron: str, data_interval_end=None, dag_run=None, **_) -> bool:
    """True when the interval ends on ``cron`` (or the run's conf says ``{"retrain": true|false}``)."""
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    if "retrain" in conf:
        return parse_bool(conf["retrain"], 'run conf "retrain"')
    from croniter import croniter

    return bool(croniter.match(cron, data_interval_end))


with DAG(
    dag_id=DAG_ID,
    description="Sessionize click logs, train and promote the product encoder, score and publish vectors",
    schedule=CronDataIntervalTimetable(S.cron, timezone="UTC"),
    start_date=pendulum.parse(S.start_date, tz="UTC"),
    catchup=S.catchup,
    max_active_runs=S.max_active_runs,
    default_args={
        "owner": "prodemb",
        "retries": S.retries,
        "retry_delay": timedelta(minutes=S.retry_delay_minutes),
        "execution_timeout": timedelta(hours=S.timeout_hours),
    },
    tags=["prodemb"],
    doc_md=__doc__,
) as dag:
    tokenizer = word(f"{WORK}/tokenizers/", "$PRODEMB_INTERVAL", "/tokenizer.model")
    ctx = Context(
        source=SOURCE,
        source_format=S.source_format,
        tables=DATA,
        table_format=CFG.sessions.format,
        tokenizer=tokenizer,
        mlflow_uri=MLFLOW_URI,
        intervals=INTERVALS,
        start="{{ data_interval_start.isoformat() }}",
        end="{{ data_interval_end.isoformat() }}",
        run_key=word("$PRODEMB_RUN_KEY"),
        model_name=model_of,
        eval_output=lambda site: word(f"{WORK}/eval/", "$PRODEMB_INTERVAL", *([f"/{site}"] if site else [])),
    )
    # What Airflow needs beyond the stage's definition. score (all_done_min_one_success) runs after
    # consolidate succeeded and promote ended in any state: success, skipped (no retraining today) or failed /
    # upstream_failed (training or the gate failed: the champion in place scores). Its only other upstream is
    # consolidate, which is upstream of promote too: when consolidate fails nothing succeeds. train goes to the
    # GPU workers' queue and pool.
    operator_options = {
        "score": {"trigger_rule": "all_done_min_one_success"},
        "train": {"queue": S.train_queue, **({"pool": S.train_pool} if S.train_pool else {})},
    }
    tasks = {}
    for stage in STAGES:
        options = operator_options.get(stage.name, {})
        if stage.job is None:  # retrain_due: the scheduler's own decision
            tasks[stage.name] = ShortCircuitOperator(
                task_id=stage.name,
                python_callable=retrain_due,
                op_kwargs={"cron": S.retrain_cron},
                ignore_downstream_trigger_rules=False,
                retries=S.task_retries.get(stage.name, S.retries),
            )
        elif stage.spark:
            tasks[stage.name] = spark_job(stage.name, stage.job, *stage_args(stage.name, ctx), **options)
        elif stage.per_site:
            # One model per site (`sites:`): train, evaluate and promote map over the sites; score scores
            # every site with its own champion and publish keys the vectors by (site, product_id).
            tasks[stage.name] = per_site_job(
                stage.name, stage.job, lambda site, name=stage.name: stage_args(name, ctx, site), **options
            )
        else:
            tasks[stage.name] = python_job(stage.name, stage.job, *stage_args(stage.name, ctx), **options)
    # evaluate is a reporting leaf (blocking=False): nothing waits for it, so its failure fails the run
    # but blocks neither promotion nor scoring (the gate scores the candidate itself).
    for name, after in downstream().items():
        for next_name in after:
            tasks[name] >> tasks[next_name]
