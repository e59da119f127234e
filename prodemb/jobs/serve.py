"""Serve the registered encoder over HTTP: vectors for titles that scoring has not seen yet (cold start).

    python jobs/serve.py [--model-uri models:/prodemb-encoder@champion] [--host 127.0.0.1] [--port 5001]
                         [--workers 1] [--mlflow-uri URI]

    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"inputs": ["Zapatillas running hombre talle 42"]}'     →  {"predictions": [[...512 floats]]}

The alias is resolved once, at start: the server answers with that version until it is restarted. It is
MLflow's scoring server (``mlflow models serve --env-manager local``), run in this environment.
"""

from __future__ import annotations

import argparse
import os
import sys

from prodemb.config import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-uri", default=None, help="default: score.model_uri (models:/<model_name>@champion)")
    ap.add_argument("--host", default=None, help="default: serve.host (127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="default: serve.port (5001)")
    ap.add_argument("--workers", type=int, default=None, help="server processes (default: serve.workers)")
    ap.add_argument(
        "--mlflow-uri",
        default=None,
        help="tracking/registry URI (default: $MLFLOW_TRACKING_URI, then mlflow.tracking_uri)",
    )
    add_config_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(
        args,
        **{
            "mlflow.tracking_uri": args.mlflow_uri,
            "score.model_uri": args.model_uri,
            "serve.host": args.host,
            "serve.port": args.port,
            "serve.workers": args.workers,
        },
    )
    import mlflow

    from prodemb.registry import resolve_version, use_tracking
    from prodemb.serving import check_port_free, serve_command, server_env

    s = cfg.serve
    registry_uri = use_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
    try:
        name, version = resolve_version(cfg.score.model_uri)
        if name == "unregistered":
            raise ValueError(
                f"{cfg.score.model_uri!r}: serve a registered model (models:/NAME@ALIAS or models:/NAME/N)"
            )
        check_port_free(s.host, s.port)
    except (ValueError, mlflow.exceptions.MlflowException) as exc:
        print(f"serve: error: {' '.join(str(exc).split())[:400]}", file=sys.stderr)
        return 2
    threads = s.torch_threads or max(1, (os.cpu_count() or 1) // s.workers)
    command = serve_command(name, version, host=s.host, port=s.port, workers=s.workers, timeout_s=s.timeout_s)
    print(
        f"serve: {name} version {version} ({cfg.score.model_uri}) at http://{s.host}:{s.port}/invocations, "
        f"{s.workers} worker(s) x {threads} torch thread(s)",
        flush=True,
    )
    os.execve(command[0], command, server_env(dict(os.environ), cfg.mlflow.tracking_uri, registry_uri, threads))


if __name__ == "__main__":
    sys.exit(main())
