"""Embeddings over HTTP (jobs/serve.py): MLflow's scoring server, started here on 127.0.0.1, answers with
the vectors batch scoring writes; bad requests get a 4xx; the registered model is a model from code."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def server(tiny):
    """jobs/serve.py on the tiny encoder's champion, on a free local port; stopped after the module."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "jobs" / "serve.py"), "--mlflow-uri", tiny["uri"], "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tiny["work"],
    )
    first = proc.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not come up: {first}{proc.stdout.read()}")
        time.sleep(0.5)
    yield {"url": url, "first_line": first, "port": port}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_http_vectors_equal_what_scoring_writes(spark, tiny, server, tmp_path):
    import pyarrow.dataset as ds

    from prodemb.score import run_score
    from prodemb.tables import read_table_arrow

    shutil.copytree(tiny["work"] / "data" / "catalog", tmp_path / "data" / "catalog")
    report = run_score(
        spark,
        str(tmp_path / "data"),
        "models:/prodemb-encoder@champion",
        None,
        tracking_uri=tiny["uri"],
        scored_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
    )
    scored = read_table_arrow(str(tmp_path / "data" / "embeddings"), ["product_id", "embedding"]).to_pandas()
    titles = dict(
        ds.dataset(tmp_path / "data" / "catalog").to_table(columns=["product_id", "title"]).to_pandas().values
    )
    sample = scored.sample(40, random_state=0)
    assert "prodemb-encoder version 1" in server["first_line"]
    status, body = post(
        f"{server['url']}/invocations", json.dumps({"inputs": [titles[p] for p in sample.product_id]}).encode()
    )
    assert status == 200, body
    served = np.asarray(json.loads(body)["predictions"], dtype=np.float32)
    expected = np.stack(sample.embedding.to_numpy()).astype(np.float32)
    assert served.shape == expected.shape == (40, report["dim"])
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    # the pandas split format that MLflow clients send gives the same vectors
    status, body = post(
        f"{server['url']}/invocations",
        json.dumps(
            {"dataframe_split": {"columns": ["title"], "data": [[titles[p]] for p in sample.product_id[:3]]}}
        ).encode(),
    )
    assert status == 200 and np.allclose(json.loads(body)["predictions"], expected[:3], atol=1e-5)


@pytest.mark.parametrize(
    "body,content_type,status,says",
    [
        (b"not json", "application/json", 400, "valid JSON"),
        (
            json.dumps({"dataframe_split": {"columns": ["name"], "data": [["a"]]}}).encode(),
            "application/json",
            400,
            "missing inputs ['title']",
        ),
        (json.dumps({"titles": ["a"]}).encode(), "application/json", 400, "inputs"),
        (b"a title", "text/plain", 415, "content type"),
    ],
)
def test_bad_requests_get_a_clear_4xx(server, body, content_type, status, says):
    got, text = post(f"{server['url']}/invocations", body, content_type)
    assert got == status and says.lower() in text.lower(), text


def test_serve_refuses_a_missing_model_or_a_busy_port_in_one_line(tiny, server):
    job = [sys.executable, str(REPO_ROOT / "jobs" / "serve.py"), "--mlflow-uri", tiny["uri"]]
    for extra, says in (
        (["--model-uri", "models:/prodemb-encoder@nope", "--port", str(free_port())], "nope"),
        (["--port", str(server["port"])], "cannot listen"),
    ):
        proc = subprocess.run(job + extra, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_registered_model_is_a_pickle_free_model_from_code(tiny):
    import mlflow
    import yaml

    mlflow.set_tracking_uri(tiny["uri"])
    local = Path(mlflow.artifacts.download_artifacts("models:/prodemb-encoder/1"))
    assert not list(local.rglob("*.pkl"))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert (local / Path(flavor["model_code_path"]).name).is_file()
    # the type-hinted predict: importing the class raises none of MLflow's type-hint warnings
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import prodemb.encoder_pyfunc"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0 and "type hint" not in proc.stderr.lower(), proc.stderr
