"""Feast definitions: entity `product`, feature view `product_embeddings`, a feature service.

The offline source is the `embeddings` table written by jobs/score.py (default: ../data/demo/embeddings;
set PRODEMB_EMBEDDINGS to point elsewhere, a path or URI): a FileSource over Parquet for the file offline
store (feature_store.yaml), or a SparkSource over the Delta table when PRODEMB_FEAST_OFFLINE=spark
(feature_store.cluster-local.yaml; prodemb.features sets it from the store's offline_store type). It
keeps several model versions, each row stamped with its scoring time, so point-in-time retrieval returns
the vector that was current at an entity timestamp.
"""
import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Float32, String

EMBEDDINGS = os.environ.get("PRODEMB_EMBEDDINGS",
                            str((Path(__file__).resolve().parent.parent / "data" / "demo" / "embeddings")))

product = Entity(name="product", join_keys=["product_id"], value_type=ValueType.STRING,
                 description="A catalog product (site-local id)")

if os.environ.get("PRODEMB_FEAST_OFFLINE", "file") == "spark":
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.table_format import DeltaFormat

    embeddings_source = SparkSource(name="product_embeddings_source", path=EMBEDDINGS, table_format=DeltaFormat(),
                                    timestamp_field="event_timestamp")
else:
    embeddings_source = FileSource(name="product_embeddings_source", path=EMBEDDINGS,
                                   file_format=ParquetFormat(), timestamp_field="event_timestamp")

product_embeddings = FeatureView(
    name="product_embeddings",
    entities=[product],
    ttl=timedelta(days=3650),   # a vector stays valid until a newer scoring replaces it
    schema=[Field(name="embedding", dtype=Array(Float32)), Field(name="model_version", dtype=String)],
    source=embeddings_source,
    online=True,
    description="Product title embeddings y = f(t(title)) from the registered prodemb-encoder",
)

product_embeddings_service = FeatureService(name="product_embeddings_service", features=[product_embeddings])
