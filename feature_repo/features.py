"""Feast definitions: entity `product` (and `site` when each site has its model), feature view
`product_embeddings`, a feature service, and one pinned feature view per kept model version
(`product_embeddings_v3`, ...).

The offline source is the `embeddings` table written by jobs/score.py (default: ../data/demo/embeddings;
set PRODEMB_EMBEDDINGS to point elsewhere, a path or URI): a FileSource over Parquet for the file offline
store (feature_store.yaml), or a SparkSource over the Delta table when PRODEMB_FEAST_OFFLINE=spark
(feature_store.cluster-local.yaml; prodemb.features sets it from the store's offline_store type). It
keeps several model versions, each row stamped with its scoring time, so point-in-time retrieval returns
the vector that was current at an entity timestamp.

Pinned views: jobs/publish.py lists the model versions of the table in PRODEMB_PINNED_VIEWS (JSON: view,
model_name, model_version, partition) and applies one view per version, whose source is that model's
partition of the table (`model=<partition>`). A `feast apply` from the shell without that variable
defines no pinned view, and so removes the ones publishing made: publish again afterwards.
"""

import json
import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, String

EMBEDDINGS = os.environ.get(
    "PRODEMB_EMBEDDINGS", str((Path(__file__).resolve().parent.parent / "data" / "demo" / "embeddings"))
)

product = Entity(
    name="product",
    join_keys=["product_id"],
    value_type=ValueType.STRING,
    description="A catalog product (site-local id)",
)
# One model per site (`sites:` in the config): the vectors are keyed by (site, product_id), since two sites
# may use the same product id. A single-site deployment keys them by product_id alone.
BY_SITE = os.environ.get("PRODEMB_FEAST_BY_SITE", "0") == "1"
site = Entity(name="site", join_keys=["site"], value_type=ValueType.STRING, description="A marketplace site")
entities = [product, site] if BY_SITE else [product]

SPARK_OFFLINE = os.environ.get("PRODEMB_FEAST_OFFLINE", "file") == "spark"
SCHEMA = [Field(name="embedding", dtype=Array(Float32)), Field(name="model_version", dtype=String)]


def embeddings_source(name: str, partition: str | None = None):
    """The embeddings table (every model), or one model's partition of it."""
    if SPARK_OFFLINE:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
        from feast.table_format import DeltaFormat

        if partition is None:
            return SparkSource(
                name=name, path=EMBEDDINGS, table_format=DeltaFormat(), timestamp_field="event_timestamp"
            )
        return SparkSource(
            name=name,
            query=f"SELECT * FROM delta.`{EMBEDDINGS}` WHERE model = '{partition}'",
            timestamp_field="event_timestamp",
        )
    path = EMBEDDINGS if partition is None else f"{EMBEDDINGS.rstrip('/')}/model={partition}"
    return FileSource(name=name, path=path, file_format=ParquetFormat(), timestamp_field="event_timestamp")


embeddings_source_all = embeddings_source("product_embeddings_source")

product_embeddings = FeatureView(
    name="product_embeddings",
    entities=entities,
    ttl=timedelta(days=3650),  # a vector stays valid until a newer scoring replaces it
    schema=SCHEMA,
    source=embeddings_source_all,
    online=True,
    description="Product title embeddings y = f(t(title)) from the registered prodemb-encoder",
)

product_embeddings_service = FeatureService(name="product_embeddings_service", features=[product_embeddings])


def pinned_view(view: str, model_name: str, model_version: str, partition: str) -> FeatureView:
    """The vectors of one registered model version only: stays that version's after a newer one is promoted."""
    return FeatureView(
        name=view,
        entities=entities,
        ttl=timedelta(days=3650),
        schema=SCHEMA,
        source=embeddings_source(f"{view}_source", partition),
        online=True,
        description=f"Product title embeddings of {model_name} version {model_version} (pinned)",
        tags={"model_name": model_name, "model_version": model_version},
    )


pinned_embeddings = [pinned_view(**spec) for spec in json.loads(os.environ.get("PRODEMB_PINNED_VIEWS", "[]"))]
