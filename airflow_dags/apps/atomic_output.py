"""Run a command that writes a folder, and publish that folder atomically only if the command succeeds.

    python airflow_dags/apps/atomic_output.py [--keep N] [--partial-marker NAME] TARGET -- COMMAND ... {output} ...

``{output}`` in the command is replaced by a fresh staging folder ``<parent>/_versions/<name>/<id>``.
When the command exits 0, ``TARGET`` (a symlink) is swapped to it with one ``rename``: readers see the
previous folder or the new one, never a half-written one. When it fails, the staging folder is removed,
``TARGET`` keeps pointing at the previous good output, and the command's exit code is returned. With
``--partial-marker NAME``, a failed command whose staging folder holds ``NAME`` (a file the command
writes only once its output is complete, e.g. ``summary.json`` of ``evaluate --keep-going``, which
reports a failing method and still writes the others' results) is published all the same; its exit
code is still returned. The newest ``--keep`` (2) versions are kept. Used by the DAG for per-interval
evaluation reports.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from prodemb import fs  # noqa: E402

PLACEHOLDER = "{output}"
DONE = ".complete"


def publish(target: Path, command: list[str], keep: int = 2, partial_marker: str | None = None) -> int:
    target = Path(os.path.abspath(target))
    versions = target.parent / "_versions" / target.name
    stage = fs.new_version_dir(versions)
    stage.mkdir()
    rc = subprocess.call([arg.replace(PLACEHOLDER, str(stage)) for arg in command])
    partial = rc != 0 and partial_marker is not None and (stage / partial_marker).is_file()
    if rc != 0 and not partial:
        shutil.rmtree(stage, ignore_errors=True)
        print(f"atomic_output: command exited {rc}; {target} left as it was", file=sys.stderr)
        return rc
    (stage / DONE).touch()
    fs.swap_link(target, stage, aside=versions)   # a plain folder from a manual run is kept aside
    fs.prune_versions(versions, keep=keep, current=stage, done_marker=DONE)
    if partial:
        print(f"atomic_output: command exited {rc} but wrote {partial_marker}: published", file=sys.stderr)
    print(f"atomic_output: {target} -> {stage}", file=sys.stderr)
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="folder (symlink) to publish")
    ap.add_argument("--keep", type=int, default=2, help="versions kept, the published one included")
    ap.add_argument("--partial-marker", default=None, metavar="NAME",
                    help="publish a failed command's output too when it wrote NAME (exit code kept)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ... {output} ...")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not any(PLACEHOLDER in a for a in command):
        ap.error(f"give the command after --, with {PLACEHOLDER} where it takes its output folder")
    return publish(Path(args.target), command, keep=max(1, args.keep), partial_marker=args.partial_marker)


if __name__ == "__main__":
    sys.exit(main())
