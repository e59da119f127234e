"""``python -m prodemb.synth --out DIR [--clicks N] [--products N] [--seed S]``: generate; one summary line
(the whole summary as JSON with ``--json``)."""

from __future__ import annotations

import argparse
import json

from prodemb.synth.generate import generate
from prodemb.synth.spec import SynthSpec

DESCRIPTION = "Seeded synthetic click logs for a Spanish-language marketplace (the project's default data)."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prodemb.synth", description=DESCRIPTION)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--clicks", type=int, default=SynthSpec.n_clicks)
    p.add_argument("--products", type=int, default=SynthSpec.n_products)
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--seed", type=int, default=SynthSpec.seed)
    p.add_argument("--days", type=int, default=SynthSpec.days)
    p.add_argument("--start", default=SynthSpec.start)
    p.add_argument("--chunk-clicks", type=int, default=SynthSpec.chunk_clicks)
    p.add_argument("--site", default=SynthSpec.site, help="the site of every click (and the product id prefix)")
    p.add_argument("--json", action="store_true", help="print the whole summary as JSON instead of one line")
    a = p.parse_args(argv)
    spec = SynthSpec(
        n_clicks=a.clicks,
        n_products=a.products,
        n_users=a.users,
        seed=a.seed,
        days=a.days,
        start=a.start,
        chunk_clicks=a.chunk_clicks,
        site=a.site,
    )
    summary = generate(spec, a.out)
    summary["files"] = f"{len(summary['files'])} files in {summary['clicks_dir']}"
    if a.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(
            f"synth: {summary['n_clicks']:,} clicks of {summary['n_users']:,} users over {summary['n_products']:,} "
            f"products, site {summary['site']}, in {summary['seconds']:.1f} s → {summary['clicks_dir']} "
            f"(products, tasks: {a.out})"
        )
    return 0
