"""Embeddings over HTTP for titles scoring has not seen yet: MLflow's scoring server on one pinned version.

    serve_command(...) → ["python", "-m", "mlflow", "models", "serve", "-m", "models:/NAME/N", ...]

The alias (``champion``) is resolved to a version once, when the server starts, so every answer of one
server comes from one model; moving the alias takes effect at the next start. The server answers
``POST /invocations`` with ``{"inputs": [titles]}`` or ``{"dataframe_split": {"columns": ["title"], ...}}``
as ``{"predictions": [[float, ...], ...]}``: the vectors batch scoring writes for the same titles.
"""

from __future__ import annotations

import os
import socket
import sys


def check_port_free(host: str, port: int) -> None:
    """Raise ValueError (a one-line job error) when ``host:port`` cannot be bound, before the server starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_command(name: str, version: str, *, host: str, port: int, workers: int, timeout_s: int) -> list[str]:
    """The MLflow CLI call that serves ``models:/name/version`` from this environment (no new virtualenv:
    the venv already holds the model's requirements)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{name}/{version}",
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--timeout",
        str(timeout_s),
    ]


def server_env(environ: dict[str, str], tracking_uri: str, registry_uri: str, torch_threads: int) -> dict[str, str]:
    """The server's environment: the stores the version was resolved in, and torch's threads per worker
    (workers × threads should not exceed the cores)."""
    env = dict(environ)
    # MLflow starts the server as `uvicorn` from PATH: this environment's, whether or not it is activated.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"], env["MLFLOW_REGISTRY_URI"] = tracking_uri, registry_uri
    env["OMP_NUM_THREADS"] = str(torch_threads)
    return env
