"""Blocking checks of the trained models: a version the model store cannot hand back intact is never scored or served.

Each runs in its own step after the model's, in the same run; being blocking, a failure stops the assets below the
model in that run (`susy_evaluation`, `inference_records`), and automation waits for a version that passes.
"""

import pandas as pd
from dagster import AssetCheckResult, AssetChecksDefinition, MetadataValue, asset_check

from mlassets.assets.iot.classifier import cifar_classifier
from mlassets.assets.susy.model import susy_model
from mlassets.automation import TRANSIENT_RETRY
from mlassets.models.store import ModelStore, ModelStoreError
from mlassets.names import CIFAR_MODEL_COLLECTION, IMAGE_DATABASE, SUSY_DATABASE, SUSY_MODEL_COLLECTION
from mlassets.resources import MongoResource

INTEGRITY_CHECK = "stored_model_intact"
INTEGRITY_DESCRIPTION = ("the model store holds this version complete, and its architecture and weights hash to the "
                         "sha256 the asset recorded")


def stored_model_result(store: ModelStore, record: pd.DataFrame) -> AssetCheckResult:
    """Passed when the store hands back the record's model version verified, with the record's sha256; the verdict
    is also recorded on the version, so the store refuses to serve it later when it failed."""
    row = record.iloc[0]
    model_id, recorded = str(row["model_id"]), str(row["sha256"])
    try:
        # verifies the blob against the store's own sha256 (serving=False: this checks, it does not serve)
        _, blob, stored = store.load_bytes(model_id, serving=False)
    except ModelStoreError as exc:
        result = AssetCheckResult(passed=False, metadata={"model_id": model_id, "error": MetadataValue.text(str(exc))})
    else:
        result = AssetCheckResult(passed=stored.sha256 == recorded, metadata={
            "model_id": model_id, "sha256_recorded": recorded, "sha256_stored": stored.sha256,
            "weights_bytes": len(blob),
        })
    store.record_check(model_id, INTEGRITY_CHECK, result.passed)
    return result


@asset_check(asset=susy_model, name=INTEGRITY_CHECK, blocking=True, description=INTEGRITY_DESCRIPTION,
             retry_policy=TRANSIENT_RETRY)
def susy_model_intact(mongo: MongoResource, susy_model: pd.DataFrame) -> AssetCheckResult:
    return stored_model_result(mongo.model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION), susy_model)


@asset_check(asset=cifar_classifier, name=INTEGRITY_CHECK, blocking=True, description=INTEGRITY_DESCRIPTION,
             retry_policy=TRANSIENT_RETRY)
def cifar_classifier_intact(mongo: MongoResource, cifar_classifier: pd.DataFrame) -> AssetCheckResult:
    return stored_model_result(mongo.model_store(IMAGE_DATABASE, CIFAR_MODEL_COLLECTION), cifar_classifier)


MODEL_CHECKS: list[AssetChecksDefinition] = [susy_model_intact, cifar_classifier_intact]
