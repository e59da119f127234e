"""Seeded synthetic click logs for a Spanish-language marketplace (the project's default data).

The demo, the tests and the benchmarks need click logs that the project can make by itself, without
real data. This module generates logs shaped like the MercadoLibre ones the paper learns from, with the
properties that the pipeline (sessionize -> pairs -> title encoder) and the downstream tasks rely on:

* a catalog whose titles are built from category-specific vocabulary (brands, models, measures, accented
  words such as "Cámara", "Teléfono", "Niño", "Batería", "Cartón"), with stopwords and punctuation
  ("de", "para", "con", "+", "/", "-") and some casing noise, so title normalization matters;
* users whose sessions stay mostly inside one category (and often inside one product type), Zipf-like
  product popularity, repeated views of a product inside a session;
* inter-event gaps that make the 30-minute inactivity cut meaningful: seconds to minutes inside a
  session, a few pauses around 30 minutes, hours to days between a user's sessions;
* downstream labels (`condition`, `free_shipping`, `price`) that depend on title words, brand tier,
  category and price, but through noise, so they are learnable from the title and never a function of it.

Scale and determinism: the click log is generated in fixed blocks of users, each block with its own RNG
stream derived from the seed, fully vectorized with numpy (no per-click Python), and streamed out as Arrow
record batches of at most `chunk_clicks` rows. Memory is bounded by the chunk size (plus one user block
and O(n_users) click counts); output is byte-identical for a given spec and does not depend on
`chunk_clicks` except for where the batches are cut. Per-product title generation is plain Python, which
is fine for catalogs of up to a few hundred thousand products.

Modules: ``vocabulary`` (the words, from ``vocabulary.yaml``), ``spec``, ``catalog``, ``clicks``, ``generate``
(the files) and ``cli`` (``python -m prodemb.synth --out DIR [--clicks N] [--products N] [--seed S]``).
Public API: `SynthSpec`, `make_catalog`, `iter_click_batches`, `generate`, `write_task_tables`, `main`.
"""

from prodemb.synth.catalog import make_catalog
from prodemb.synth.cli import main
from prodemb.synth.clicks import CLICK_SCHEMA, iter_click_batches
from prodemb.synth.generate import generate, write_task_tables
from prodemb.synth.spec import SynthSpec
from prodemb.synth.vocabulary import CATEGORY_NAMES

__all__ = [
    "SynthSpec",
    "CLICK_SCHEMA",
    "CATEGORY_NAMES",
    "make_catalog",
    "iter_click_batches",
    "generate",
    "write_task_tables",
    "main",
]
