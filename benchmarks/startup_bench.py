"""Spark start-up as users meet it: whole spark-submit processes with and without the class-data archive.

    python benchmarks/startup_bench.py [--repeats 3] [--clicks 20000]

Two jobs, each a whole ``spark-submit --master local[2]`` from process start to exit:
  * a trivial job (``spark.range(10).count()``): the start-up alone;
  * ``jobs/sessionize.py`` on ``--clicks`` clicks of the project's generator: a small scheduled run, all
    four tables and the report.
Each runs with the venv's spark-defaults.conf as ``make venv`` wrote it (the driver starts from the
class-data archive, prodemb.class_data) and, as the peer in the same run, with the archive's flags taken
out (``--conf spark.driver.defaultJavaOptions=``): Spark as it loads its classes from the jars. Runs
alternate between the two; the median of ``--repeats`` is reported. The first run of each is also shown
apart (cold page cache for the archive or the jars).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.whole_process import timed, venv_env  # noqa: E402

TRIVIAL = "from pyspark.sql import SparkSession\nprint(SparkSession.builder.getOrCreate().range(10).count())\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20_000)
    args = ap.parse_args()

    from prodemb import class_data
    from prodemb.spark import spark_defaults
    from prodemb.synth import SynthSpec, generate

    archive = class_data.archive_path()
    options = spark_defaults().get("spark.driver.defaultJavaOptions", "")
    if not archive.exists() or str(archive) not in options:
        raise SystemExit(f"no class-data archive in use ({archive}): run make venv first")
    env = venv_env()
    with tempfile.TemporaryDirectory(prefix="prodemb-startup-") as tmp:
        work = Path(tmp)
        (work / "trivial.py").write_text(TRIVIAL)
        generate(SynthSpec(n_clicks=args.clicks, n_products=max(200, args.clicks // 100), seed=11), work / "synth")
        jobs = {
            "trivial job": [str(work / "trivial.py")],
            f"jobs/sessionize.py, {args.clicks:,} clicks": [
                "jobs/sessionize.py",
                "--input",
                str(work / "synth" / "clicks"),
                "--input-format",
                "clicks",
                "--output",
                str(work / "out"),
                "--json",
            ],
        }
        contenders = {
            "with the class-data archive (make venv)": [],
            "without it (peer)": ["--conf", "spark.driver.defaultJavaOptions="],
        }
        print(
            f"archive {archive.name} ({archive.stat().st_size / 2**20:.0f} MiB); spark-submit --master local[2], "
            f"whole processes, median of {args.repeats}\n"
        )
        print("| job | " + " | ".join(f"{c} s" for c in contenders) + " | without / with | first runs s |")
        print("|---|" + "---|" * len(contenders) + "---|---|")
        for name, job in jobs.items():
            times: dict[str, list[float]] = {c: [] for c in contenders}
            for _ in range(args.repeats):
                for label, extra in contenders.items():
                    times[label].append(timed(["spark-submit", "--master", "local[2]", *extra, *job], env)[0])
            med = {c: statistics.median(t) for c, t in times.items()}
            with_s, without_s = med.values()
            print(
                f"| {name} | {with_s:.2f} | {without_s:.2f} | {without_s / with_s:.2f}× | "
                + " / ".join(f"{t[0]:.2f}" for t in times.values())
                + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
