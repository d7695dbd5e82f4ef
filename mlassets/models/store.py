"""Versioned Keras models in a MongoDB collection: metadata documents plus GridFS weight blobs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gridfs
import numpy as np
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from mlassets.models.serialization import model_from_bytes, model_sha256, model_to_bytes

if TYPE_CHECKING:
    import keras


class ModelStoreError(RuntimeError):
    """A model that cannot be loaded as stored: missing, incomplete, tampered or saved without a full sha256."""


@dataclass(frozen=True)
class ModelRecord:
    """What the store knows about one saved model version; sha256 covers its architecture JSON and weights blob."""

    model_id: str
    name: str
    version: int
    created_at: dt.datetime
    sha256: str
    weights_bytes: int
    metrics: dict[str, Any]
    code_version: str | None
    metadata: dict[str, Any]
    checks: dict[str, bool]

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "ModelRecord":
        return cls(
            model_id=doc["_id"], name=doc["name"], version=doc["version"], created_at=doc["created_at"],
            sha256=doc["sha256"], weights_bytes=doc["weights_bytes"],
            metrics=doc.get("metrics", {}), code_version=doc.get("code_version"),
            metadata=doc.get("metadata", {}), checks=doc.get("checks", {}),
        )


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from the store, its extra arrays and its record."""

    model: "keras.Model"
    extras: dict[str, np.ndarray]
    record: ModelRecord


class ModelStore:
    """Saves every model as a new version `<name>:v<N>`; loads by id after verifying its sha256.

    Each version also carries the verdicts of its blocking checks (`checks`: name -> passed); `load` refuses a
    version that failed one, so a model that a check stopped in its own run is not served by a later run either
    (a sensor's, automation's or `mlassets stream infer`).

    Everything that decides a prediction is in the architecture JSON (layers, activations, built-in preprocessing
    such as the CIFAR normalisation) or in the blob (weights, and extras such as the SUSY scaler), and the recorded
    sha256 covers both: changing either fails the load.
    """

    def __init__(self, database: Database, collection: str) -> None:
        self.collection = database[collection]
        self.blobs = gridfs.GridFS(database, collection=f"{collection}_weights")
        self.collection.create_index([("name", ASCENDING), ("version", ASCENDING)], unique=True)

    def save(self, name: str, model: "keras.Model", *, extras: dict[str, np.ndarray] | None = None,
             metrics: dict[str, Any] | None = None, code_version: str | None = None,
             metadata: dict[str, Any] | None = None, checks: dict[str, bool] | None = None) -> ModelRecord:
        """Store the model as the next version of `name` with the verdicts of the checks run so far."""
        architecture, blob = model_to_bytes(model, extras)
        digest = model_sha256(architecture, blob)
        for _ in range(20):
            last = self.collection.find_one({"name": name}, sort=[("version", DESCENDING)], projection=["version"])
            version = (last["version"] + 1) if last else 1
            model_id = f"{name}:v{version}"
            doc = {
                "_id": model_id, "name": name, "version": version,
                "created_at": dt.datetime.now(dt.timezone.utc),
                "architecture": architecture, "sha256": digest, "weights_bytes": len(blob),
                "metrics": metrics or {}, "code_version": code_version, "metadata": metadata or {},
                "checks": {name: bool(passed) for name, passed in (checks or {}).items()}, "complete": False,
            }
            try:
                self.collection.insert_one(doc)
            except DuplicateKeyError:
                continue  # another writer took this version number
            self.blobs.put(blob, filename=model_id)
            self.collection.update_one({"_id": model_id}, {"$set": {"complete": True}})
            return ModelRecord.from_document(doc)
        raise ModelStoreError(f"could not allocate a version for {name!r}: too many concurrent writers")

    def record(self, model_id: str) -> ModelRecord:
        """The record of one saved model; ModelStoreError when there is none."""
        return ModelRecord.from_document(self._document(model_id))

    def record_check(self, model_id: str, check: str, passed: bool) -> None:
        """Record the verdict of one of the version's blocking checks (a later verdict replaces an earlier one)."""
        self.collection.update_one({"_id": model_id}, {"$set": {f"checks.{check}": bool(passed)}})

    def latest(self, name: str) -> ModelRecord | None:
        """The highest complete version of `name` (for sensors and tools; assets use lineage)."""
        doc = self.collection.find_one({"name": name, "complete": True, "sha256": {"$exists": True}},
                                       sort=[("version", DESCENDING)])
        return ModelRecord.from_document(doc) if doc else None

    def load_bytes(self, model_id: str, *, serving: bool = True) -> tuple[str, bytes, ModelRecord]:
        """The verified architecture JSON and weights blob for workers; ModelStoreError if missing or changed, or
        (when serving) if the version failed a blocking check."""
        doc = self._document(model_id)
        if serving:
            _refuse_failed_checks(doc)
        return doc["architecture"], self._verified_blob(doc), ModelRecord.from_document(doc)

    def _verified_blob(self, doc: dict[str, Any]) -> bytes:
        """The weights blob of a document, once the sha256 of its architecture and blob matches the recorded one."""
        model_id = doc["_id"]
        blob_file = self.blobs.find_one({"filename": model_id})
        if blob_file is None:
            raise ModelStoreError(f"model {model_id}: weights are missing from the store")
        blob = blob_file.read()
        actual = model_sha256(doc["architecture"], blob)
        if actual != doc["sha256"]:
            raise ModelStoreError(
                f"model {model_id}: the sha256 {actual} of its architecture and weights does not match the recorded "
                f"{doc['sha256']} (tampered or corrupted: the architecture, weights or scaler changed after the save)"
            )
        return blob

    def load(self, model_id: str) -> LoadedModel:
        """Rebuild the model, refusing a missing, changed, incomplete or check-failed one with a ModelStoreError."""
        doc = self._document(model_id)
        _refuse_failed_checks(doc)
        blob = self._verified_blob(doc)
        try:
            model, extras = model_from_bytes(doc["architecture"], blob)
        except ValueError as exc:
            raise ModelStoreError(f"model {model_id}: {exc}") from exc
        return LoadedModel(model, extras, ModelRecord.from_document(doc))

    def _document(self, model_id: str) -> dict[str, Any]:
        doc = self.collection.find_one({"_id": model_id})
        if doc is None:
            raise ModelStoreError(f"model {model_id} is not in {self.collection.full_name}")
        if not doc.get("complete"):
            raise ModelStoreError(f"model {model_id} was never completely written (its save was interrupted)")
        if not isinstance(doc.get("sha256"), str) or not isinstance(doc.get("architecture"), str):
            raise ModelStoreError(f"model {model_id} has no sha256 over its architecture and weights (saved by an "
                                  "older mlassets, which hashed the weights only): retrain it")
        return doc


def _refuse_failed_checks(doc: dict[str, Any]) -> None:
    """ModelStoreError naming the blocking checks this version failed, if any."""
    failed = sorted(name for name, passed in doc.get("checks", {}).items() if not passed)
    if failed:
        raise ModelStoreError(
            f"model {doc['_id']} failed its blocking check(s) {', '.join(failed)}, so it is not served or scored: "
            f"materialise {doc['name']} again, or name a version that passed (e.g. --model-id for the stream)"
        )
