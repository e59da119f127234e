"""A real cluster on this machine, on 127.0.0.1 only: Spark standalone, Redis, an MLflow tracking server and
an S3-compatible object store.

    python -m prodemb.cluster up        # make cluster-up: starts what is not running, prints where it listens
    python -m prodemb.cluster status
    python -m prodemb.cluster down      # make cluster-down
    eval "$(python -m prodemb.cluster env)"   # the standard AWS variables of the local object store

| service | listens on | how |
|---|---|---|
| Spark master | spark://127.0.0.1:7077 (UI 8080, REST 6066) | ``spark-class ...deploy.master.Master`` (pip pyspark) |
| 2 Spark workers | 127.0.0.1, 1 core each (UIs 8081, 8082) | ``spark-class org.apache.spark.deploy.worker.Worker`` |
| Redis | 127.0.0.1:6379 | Debian's ``redis-server`` (installed with apt-get when missing), no persistence |
| MLflow | http://127.0.0.1:5000 | ``mlflow server``, SQLite backend, artifacts proxied (``--serve-artifacts``) |
| S3 | http://127.0.0.1:9000, bucket ``prodemb-lake`` | moto's server mode (``python -m moto.server``), in memory |

Each service is a detached process with its pid in ``<state>/pids/`` and its log in ``<state>/logs/``
(state: ``.cluster/`` in the repository). ``up`` is idempotent: a service whose process is alive and whose
port answers is left alone; a port answered by a process that is not ours is an error, never killed. The
Spark daemons and their web UIs bind to 127.0.0.1 through ``SPARK_LOCAL_IP``; executors run this
interpreter (``PYSPARK_PYTHON``), so their Python workers have the same packages as the driver.
``up`` also installs Delta Lake and Hadoop's S3 connector into this Spark install: resolved once from Maven
Central into a cache folder (``resolve_jars``), put on every driver's and executor's classpath by
``spark-defaults.conf`` (``install_spark_defaults``), so ``spark-submit --master spark://127.0.0.1:7077
jobs/...`` reads and writes Delta tables on ``s3a://`` with no ``--packages`` flag, as on a cluster whose
admins installed them. The object
store keeps its objects in memory: ``down`` (or a crash) empties the lake, as ``up`` expects nothing of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prodemb import fs
from prodemb.spark import spark_home

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".cluster"
HOST = "127.0.0.1"
SPARK_MASTER_URL = f"spark://{HOST}:7077"
REDIS_URL = f"redis://{HOST}:6379"
MLFLOW_URL = f"http://{HOST}:5000"
S3_URL = f"http://{HOST}:9000"
LAKE_BUCKET = "prodemb-lake"
# The standard variables that every S3 client of the pipeline reads (pyarrow, delta-rs, the profile's
# spark.hadoop.fs.s3a.* keys): the local store accepts any key pair.
S3_ENV = {
    "AWS_ENDPOINT_URL": S3_URL,
    "AWS_ACCESS_KEY_ID": "prodemb",
    "AWS_SECRET_ACCESS_KEY": "prodemb-local",
    "AWS_REGION": "us-east-1",
}
WORKER_CORES = 1
WORKER_MEMORY = "3g"


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    url: str
    ui_port: int | None = None
    needs: tuple[str, ...] = field(default_factory=tuple)  # started after these
    marker: str = ""  # in the process's command line: a recycled pid in a stale pid file is never "ours"


SERVICES = (
    Service("spark-master", 7077, SPARK_MASTER_URL, ui_port=8080, marker="org.apache.spark.deploy.master.Master"),
    Service(
        "spark-worker-1",
        7078,
        f"{HOST}:7078",
        ui_port=8081,
        needs=("spark-master",),
        marker="org.apache.spark.deploy.worker.Worker",
    ),
    Service(
        "spark-worker-2",
        7079,
        f"{HOST}:7079",
        ui_port=8082,
        needs=("spark-master",),
        marker="org.apache.spark.deploy.worker.Worker",
    ),
    Service("redis", 6379, REDIS_URL, marker="redis-server"),
    Service("mlflow", 5000, MLFLOW_URL, marker="mlflow"),
    Service("s3", 9000, S3_URL, marker="moto.server"),
)
BY_NAME = {s.name: s for s in SERVICES}


class ClusterError(RuntimeError):
    """A service could not be started, or its port belongs to someone else."""


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def _pid_file(state: Path, name: str) -> Path:
    return state / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _our_pid(state: Path, name: str) -> int | None:
    """The pid in the service's pid file if that process is alive and still runs the service: pids are
    recycled (after a reboot a stale ``.cluster/pids`` may name anyone), and ``down`` must never signal a
    process group it did not start."""
    f = _pid_file(state, name)
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return pid  # no /proc: trust the pid file
    return pid if BY_NAME[name].marker in cmdline else None


def _spark_env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": HOST,  # RPC and web UIs bind here, not on 0.0.0.0
            "SPARK_MASTER_HOST": HOST,
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOG_DIR": str(state / "logs"),
        }
    )
    # The master and workers are light, long-lived daemons: C1 only and the serial collector (their JIT
    # warm-up, with C2, competed with the first jobs for this machine's cores). Yours win when set.
    env.setdefault("SPARK_DAEMON_JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return env


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    print("redis-server not found: installing Debian's redis-server (apt-get)", file=sys.stderr)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        )
        if proc.returncode != 0:
            raise ClusterError(
                f"could not install redis-server ({' '.join(cmd)} exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]})"
            )
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise ClusterError("apt-get installed redis-server but it is not on PATH")
    # Debian's package starts its own daemon on 6379 where systemd runs; here nothing does, but be sure.
    subprocess.run(["service", "redis-server", "stop"], capture_output=True)
    return found


def _command(service: Service, state: Path) -> tuple[list[str], dict[str, str]]:
    spark_class = str(spark_home() / "bin" / "spark-class")
    if service.name == "spark-master":
        return (
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                str(service.port),
                "--webui-port",
                str(service.ui_port),
            ],
            _spark_env(state),
        )
    if service.name.startswith("spark-worker"):
        work = state / "spark-work" / service.name
        work.mkdir(parents=True, exist_ok=True)
        return (
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                SPARK_MASTER_URL,
                "--host",
                HOST,
                "--port",
                str(service.port),
                "--webui-port",
                str(service.ui_port),
                "--cores",
                str(WORKER_CORES),
                "--memory",
                WORKER_MEMORY,
                "--work-dir",
                str(work),
            ],
            _spark_env(state),
        )
    if service.name == "redis":
        return (
            [
                _redis_binary(),
                "--bind",
                HOST,
                "--port",
                str(service.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
                str(state),
            ],
            dict(os.environ),
        )
    if service.name == "mlflow":
        root = state / "mlflow"
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        return (
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                HOST,
                "--port",
                str(service.port),
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--serve-artifacts",
                "--workers",
                "1",
            ],
            {
                **os.environ,
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                # The job runner (on by default in MLflow 3) forks 7 huey consumers, ~1.8 GB and a minute of
                # CPU on 2 cores, for GenAI jobs this pipeline never submits.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
            },
        )
    if service.name == "s3":
        return ([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(service.port)], dict(os.environ))
    raise ValueError(service.name)


def ensure_bucket(bucket: str = LAKE_BUCKET) -> None:
    """Create the lake's bucket in the local store if it is not there (S3 has no implicit buckets)."""
    from pyarrow import fs as pafs

    store = pafs.S3FileSystem(
        endpoint_override=S3_URL.split("://", 1)[1],
        scheme="http",
        access_key=S3_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region=S3_ENV["AWS_REGION"],
        allow_bucket_creation=True,
    )
    if store.get_file_info(bucket).type == pafs.FileType.NotFound:
        store.create_dir(bucket)


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _ready(service: Service) -> bool:
    if not port_open(service.port):
        return False
    if service.name == "mlflow":  # the port opens before the app answers
        return _http_ok(f"{MLFLOW_URL}/health")
    if service.name == "s3":
        return _http_ok(f"{S3_URL}/moto-api/")
    if service.name.startswith("spark-worker"):  # registered with the master, not just listening
        return service.port in _workers_alive()
    return True


def _workers_alive() -> set[int]:
    """RPC ports of the workers the master's UI lists as ALIVE (empty when the master does not answer)."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{HOST}:{BY_NAME['spark-master'].ui_port}/json/", timeout=2) as r:
            return {w.get("port") for w in json.load(r).get("workers", []) if w.get("state") == "ALIVE"}
    except (OSError, ValueError):
        return set()


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _launch(service: Service, state: Path) -> subprocess.Popen:
    """Start the service detached (its own session, so it outlives this process and ``down`` can signal
    its whole group) and record its pid."""
    cmd, env = _command(service, state)
    log = state / "logs" / f"{service.name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=state,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(state, service.name).write_text(str(proc.pid))
    return proc


def _await(service: Service, state: Path, proc: subprocess.Popen, timeout: float) -> int:
    """Wait until the launched service answers; on failure stop it and raise with its log's last lines."""
    log = state / "logs" / f"{service.name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _pid_file(state, service.name).unlink(missing_ok=True)
            raise ClusterError(f"{service.name} exited with {proc.returncode} on start; log {log}: {_log_tail(log)}")
        if _ready(service):
            return proc.pid
        time.sleep(0.3)
    _stop_pids({proc.pid: service})  # half started: leave nothing behind that a later `up` would trust
    _pid_file(state, service.name).unlink(missing_ok=True)
    raise ClusterError(
        f"{service.name} did not answer on {HOST}:{service.port} within {timeout:.0f} s; log {log}: {_log_tail(log)}"
    )


DEFAULTS_MARKER = "# prodemb cluster-up:"
# Settings an earlier cluster-up may have written in its block (older ones resolved packages per application).
_BLOCK_KEYS = (
    "spark.jars.packages",
    "spark.jars.excludes",
    "spark.driver.extraClassPath",
    "spark.executor.extraClassPath",
    "spark.executor.defaultJavaOptions",
)
RESOLVED = "_RESOLVED"  # written last into a jars folder: the resolution finished


def jars_cache() -> Path:
    """Where resolved jar sets are kept: ``$PRODEMB_SPARK_JARS``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``)
    ``/prodemb/spark-jars``. Shared by every cluster-up of this user, so the download happens once."""
    if os.environ.get("PRODEMB_SPARK_JARS"):
        return Path(os.environ["PRODEMB_SPARK_JARS"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prodemb" / "spark-jars"


def jars_folder(cache: Path | None = None) -> Path:
    """The folder of this package list's jars under ``cache`` (a hash of the list: another pyspark,
    Delta or SDK version gets a folder of its own)."""
    import hashlib
    import json

    from prodemb.spark import delta_package_conf

    key = json.dumps(delta_package_conf(s3a=True), sort_keys=True).encode()
    return Path(cache or jars_cache()) / hashlib.sha256(key).hexdigest()[:16]


def resolve_jars(cache: Path | None = None, timeout: float = 600.0) -> Path:
    """Delta Lake and Hadoop's S3 connector (``prodemb.spark.delta_package_conf(s3a=True)``) as a folder of
    jars, resolved once by Spark's own Ivy (``spark-submit --packages`` of an empty application, into an
    Ivy home of its own, so the folder holds exactly that resolution) and kept under ``cache`` by a hash
    of the package list. A folder is used only once complete (``_RESOLVED``)."""
    import tempfile

    from prodemb.spark import delta_package_conf

    conf = delta_package_conf(s3a=True)
    cache = Path(cache or jars_cache())
    target = jars_folder(cache)
    if (target / RESOLVED).exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".resolving-") as tmp:
        app = Path(tmp) / "resolve.py"
        app.write_text("")  # nothing to run: spark-submit resolves --packages before it starts the app
        cmd = [
            str(spark_home() / "bin" / "spark-submit"),
            "--master",
            "local[1]",
            "--packages",
            conf["spark.jars.packages"],
            "--exclude-packages",
            conf["spark.jars.excludes"],
            "--conf",
            f"spark.jars.ivy={tmp}/ivy",
            str(app),
        ]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": sys.executable},
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(f"resolving {conf['spark.jars.packages']} took over {timeout:.0f} s") from None
        jars = sorted((Path(tmp) / "ivy" / "jars").glob("*.jar"))
        if proc.returncode != 0 or not jars:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ClusterError(
                f"could not resolve {conf['spark.jars.packages']} from Maven Central "
                f"(spark-submit exited {proc.returncode}): {' | '.join(tail)}"
            )
        staging = Path(tmp) / "jars"
        staging.mkdir()
        for jar in jars:
            jar.rename(staging / jar.name)
        (staging / RESOLVED).write_text("\n".join(j.name for j in jars) + "\n")
        if not (target / RESOLVED).exists():  # else another cluster-up finished the same resolution first
            fs.replace_dir(staging, target)  # over an unfinished folder an earlier attempt left, if any
    return target


def install_spark_defaults(jars: Path) -> Path | None:
    """Install Delta Lake and s3a into this Spark install as a cluster's admins do: the jars folder on the
    classpath of every driver and executor (``spark.driver.extraClassPath``/``spark.executor.extraClassPath``
    in ``$SPARK_CONF_DIR``, or ``$SPARK_HOME/conf``, ``/spark-defaults.conf``). An application then resolves
    nothing and ships no jars to its executors (``--packages`` costs every application an Ivy resolution,
    and every executor a download of the jars). Replaces the block an earlier cluster-up wrote; a file whose
    own settings already set these keys is left alone (returns None)."""
    from prodemb import class_data
    from prodemb.spark import write_defaults_block

    classpath = f"{Path(jars).absolute()}/*"
    # Spark's own jars first, as make venv's driver has them (prodemb.class_data: the conf folder must come
    # after them for the class-data archive); the driver's line replaces make venv's. The executors start
    # from the same archive where it exists at the same path (the workers of this machine).
    ours = class_data.spark_jars_classpath()
    wanted = {f"spark.{side}.extraClassPath": f"{ours}:{classpath}" for side in ("driver", "executor")}
    archive = class_data.archive_path()
    if archive.exists():
        wanted["spark.executor.defaultJavaOptions"] = class_data.java_options(archive)
    return write_defaults_block(
        DEFAULTS_MARKER,
        "Delta Lake and s3a on the classpath of every Spark application of this install",
        wanted,
        old_keys=_BLOCK_KEYS,
        advice=f"add {classpath} to them for Delta and s3a",
        optional=("spark.executor.defaultJavaOptions",),
        supersedes={"spark.driver.extraClassPath": ours},
    )


def _selected(services) -> list[Service]:
    names = list(services) if services else [s.name for s in SERVICES]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown services {unknown} (have {list(BY_NAME)})")
    chosen = {n for n in names}
    for n in list(chosen):  # workers need their master
        chosen.update(BY_NAME[n].needs)
    return [s for s in SERVICES if s.name in chosen]


def up(state_dir: str | Path = DEFAULT_STATE_DIR, services=None, timeout: float = 90.0) -> dict[str, dict]:
    """Start every service (or ``services``) that is not running; returns {name: {url, pid, started}}."""
    state = Path(state_dir).absolute()
    for sub in ("pids", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    chosen = _selected(services)
    if any(s.name == "spark-master" for s in chosen):
        install_spark_defaults(resolve_jars())
    todo: list[Service] = []
    for service in chosen:  # every check before any start: a foreign port fails the call up front
        pid = _our_pid(state, service.name)
        if pid is not None and _ready(service):
            out[service.name] = {"url": service.url, "pid": pid, "started": False}
            continue
        if pid is not None:  # ours but not answering: restart it
            _stop_pids({pid: service})
        if port_open(service.port) or (service.ui_port and port_open(service.ui_port)):
            raise ClusterError(
                f"port {service.port if port_open(service.port) else service.ui_port} "
                f"({service.name}) is in use by a process not started from {state}; "
                "stop it or run `python -m prodemb.cluster down` with its state dir"
            )
        todo.append(service)
    # Independent services start together (a cold start is mostly JVM and import time, ~2x faster so);
    # a worker is launched once its master answers, since a worker that misses it retries only every ~10 s.
    procs: dict[str, subprocess.Popen] = {}
    try:
        for service in sorted(todo, key=lambda s: bool(s.needs)):
            for need in service.needs:
                if need in procs and need not in out:
                    out[need] = {
                        "url": BY_NAME[need].url,
                        "started": True,
                        "pid": _await(BY_NAME[need], state, procs[need], timeout),
                    }
            procs[service.name] = _launch(service, state)
        for service in todo:
            if service.name not in out:
                out[service.name] = {
                    "url": service.url,
                    "started": True,
                    "pid": _await(service, state, procs[service.name], timeout),
                }
    except BaseException:  # all or nothing: what this call launched is stopped again
        _stop_pids({proc.pid: BY_NAME[name] for name, proc in procs.items() if proc.poll() is None})
        for name in procs:
            _pid_file(state, name).unlink(missing_ok=True)
        raise
    if any(s.name == "s3" for s in chosen):
        ensure_bucket()
    return {s.name: out[s.name] for s in chosen}


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # each service leads its own session: its children (uvicorn, executors) go too
    except ProcessLookupError:
        pass


def _stop_pids(pids: dict[int, Service], timeout: float = 20.0) -> None:
    """SIGTERM every group at once, wait until each leader is gone and its ports are closed (a child such as
    uvicorn may outlive its leader by a moment), SIGKILL what is left after ``timeout``."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)

    def running(pid: int, service: Service) -> bool:
        return _alive(pid) or any(port_open(p) for p in (service.port, service.ui_port) if p)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(running(p, s) for p, s in pids.items()):
        time.sleep(0.2)
    for pid, service in pids.items():
        if running(pid, service):
            _signal_group(pid, signal.SIGKILL)


def down(state_dir: str | Path = DEFAULT_STATE_DIR, services=None) -> dict[str, dict]:
    """Stop our services (workers before the master); returns {name: {stopped: bool}}."""
    state = Path(state_dir).absolute()
    chosen = list(reversed(_selected(services)))
    pids = {s.name: _our_pid(state, s.name) for s in chosen}
    workers = {p: s for s in chosen if (p := pids[s.name]) and s.name.startswith("spark-worker")}
    _stop_pids(workers)  # first, so that they do not try to reconnect to a master going away
    _stop_pids({p: s for s in chosen if (p := pids[s.name]) and p not in workers})
    for service in chosen:
        _pid_file(state, service.name).unlink(missing_ok=True)
    return {s.name: {"url": s.url, "stopped": pids[s.name] is not None} for s in chosen}


def status(state_dir: str | Path = DEFAULT_STATE_DIR) -> dict[str, dict]:
    state = Path(state_dir).absolute()
    return {s.name: {"url": s.url, "pid": _our_pid(state, s.name), "answering": _ready(s)} for s in SERVICES}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other failure of this CLI
        print(f"cluster: error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(
        prog="python -m prodemb.cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("action", choices=["up", "down", "status", "env"])
    ap.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="pids, logs, data (default .cluster/)")
    ap.add_argument(
        "--service", action="append", default=None, choices=list(BY_NAME), help="only this service (repeatable)"
    )
    args = ap.parse_args(argv)
    try:
        if args.action == "env":
            print("\n".join(f"export {k}={v}" for k, v in S3_ENV.items()))
        elif args.action == "up":
            for name, info in up(args.state_dir, args.service).items():
                how = f"started, pid {info['pid']}" if info["started"] else f"already running, pid {info['pid']}"
                ui = f"  UI http://{HOST}:{BY_NAME[name].ui_port}" if BY_NAME[name].ui_port else ""
                print(f"{name:15s} {info['url']:28s} ({how}){ui}")
            print(f"logs: {Path(args.state_dir).absolute() / 'logs'}   stop: make cluster-down")
        elif args.action == "down":
            for name, info in down(args.state_dir, args.service).items():
                print(f"{name:15s} {'stopped' if info['stopped'] else 'not running'}")
        else:
            for name, info in status(args.state_dir).items():
                busy = info["answering"] or port_open(BY_NAME[name].port)
                state = "up" if info["answering"] and info["pid"] else ("port in use, not ours" if busy else "down")
                print(f"{name:15s} {info['url']:28s} {state}" + (f" (pid {info['pid']})" if info["pid"] else ""))
    except (ClusterError, ValueError, OSError) as exc:
        print(f"cluster: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
