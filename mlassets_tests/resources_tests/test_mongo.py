"""The mongo resource against the real FerretDB: upserts on a unique index and the Keras model store."""

import numpy as np
import pytest
from pymongo.errors import DuplicateKeyError

from mlassets.resources import MongoResource
from mlassets.models.store import ModelStoreError
from mlassets.stack import StackSettings


@pytest.fixture
def mongo(stack: StackSettings) -> MongoResource:
    return MongoResource(uri=stack.mongo_uri)


def test_upsert_with_unique_index(mongo: MongoResource, unique: str) -> None:
    coll = mongo.client()[f"db_{unique}"]["docs"]
    coll.create_index("key", unique=True)
    for value in (1, 2):
        coll.update_one({"key": "a"}, {"$set": {"value": value}}, upsert=True)
    assert coll.count_documents({}) == 1
    assert coll.find_one({"key": "a"})["value"] == 2
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"key": "a", "value": 3})


def _small_model():
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    return keras.Model(inputs, outputs)


def test_model_store_round_trip_and_versions(mongo: MongoResource, unique: str) -> None:
    store = mongo.model_store(f"models_{unique}")
    model = _small_model()
    scaler = {"mean": np.arange(4, dtype=np.float64), "scale": np.ones(4)}
    first = store.save("tiny", model, extras=scaler, metrics={"accuracy": 0.5}, code_version="1")
    second = store.save("tiny", model, code_version="1")
    assert (first.model_id, second.model_id) == ("tiny:v1", "tiny:v2")
    assert store.latest("tiny").model_id == "tiny:v2"

    loaded = store.load("tiny:v1")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_array_equal(loaded.extras["mean"], scaler["mean"])
    assert loaded.record.metrics == {"accuracy": 0.5}
    assert loaded.record.sha256 == first.sha256


def test_a_version_that_failed_a_blocking_check_is_not_served(mongo: MongoResource, unique: str) -> None:
    """The verdicts given at save time and recorded later both count; the last verdict of a check wins."""
    store = mongo.model_store(f"models_{unique}")
    weak = store.save("tiny", _small_model(), checks={"held_out_accuracy": False})
    good = store.save("tiny", _small_model(), checks={"held_out_accuracy": True})
    with pytest.raises(ModelStoreError, match=r"tiny:v1 failed its blocking check\(s\) held_out_accuracy, so it is "
                                              r"not served or scored"):
        store.load(weak.model_id)
    with pytest.raises(ModelStoreError, match="held_out_accuracy"):
        store.load_bytes(weak.model_id)
    assert store.load_bytes(weak.model_id, serving=False)[2].checks == {"held_out_accuracy": False}  # for the checks

    assert store.load(good.model_id).record.checks == {"held_out_accuracy": True}
    store.record_check(good.model_id, "stored_model_intact", False)
    with pytest.raises(ModelStoreError, match=r"tiny:v2 failed its blocking check\(s\) stored_model_intact"):
        store.load(good.model_id)
    store.record_check(good.model_id, "stored_model_intact", True)
    assert store.record(good.model_id).checks == {"held_out_accuracy": True, "stored_model_intact": True}
    assert store.load(good.model_id).record.model_id == "tiny:v2"


def test_tampered_weights_are_refused(mongo: MongoResource, unique: str) -> None:
    db = mongo.client()[f"models_{unique}"]
    store = mongo.model_store(db.name)
    store.save("tiny", _small_model())
    chunk = db["MLModels_weights.chunks"].find_one({})
    data = bytearray(chunk["data"])
    data[-10] ^= 0xFF
    db["MLModels_weights.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    with pytest.raises(ModelStoreError, match=r"tiny:v1: the sha256 .* of its architecture and weights does not match"):
        store.load("tiny:v1")


@pytest.mark.parametrize("change", ["architecture", "scaler"])
def test_a_changed_architecture_or_scaler_is_refused(mongo: MongoResource, unique: str, change: str) -> None:
    from mlassets.models.serialization import model_to_bytes

    db = mongo.client()[f"models_{unique}"]
    store = mongo.model_store(db.name)
    model = _small_model()
    store.save("tiny", model, extras={"scaler_mean": np.zeros(4)})
    if change == "architecture":  # every score changes, the weights still fit
        doc = db["MLModels"].find_one({"_id": "tiny:v1"})
        assert '"sigmoid"' in doc["architecture"]
        db["MLModels"].update_one({"_id": "tiny:v1"},
                                  {"$set": {"architecture": doc["architecture"].replace('"sigmoid"', '"linear"')}})
    else:
        _, blob = model_to_bytes(model, {"scaler_mean": np.ones(4)})
        store.blobs.delete(store.blobs.find_one({"filename": "tiny:v1"})._id)
        store.blobs.put(blob, filename="tiny:v1")
    for load in (store.load, store.load_bytes):
        with pytest.raises(ModelStoreError, match="tiny:v1: the sha256 .* does not match .*tampered"):
            load("tiny:v1")


def test_a_model_saved_without_the_full_sha256_is_refused(mongo: MongoResource, unique: str) -> None:
    db = mongo.client()[f"models_{unique}"]
    store = mongo.model_store(db.name)
    store.save("tiny", _small_model())
    db["MLModels"].update_one({"_id": "tiny:v1"}, {"$rename": {"sha256": "weights_sha256"}})
    with pytest.raises(ModelStoreError, match="tiny:v1 has no sha256 over its architecture and weights"):
        store.load("tiny:v1")
    assert store.latest("tiny") is None


def test_missing_weights_and_unknown_model_are_refused(mongo: MongoResource, unique: str) -> None:
    db = mongo.client()[f"models_{unique}"]
    store = mongo.model_store(db.name)
    store.save("tiny", _small_model())
    db["MLModels_weights.files"].delete_many({})
    with pytest.raises(ModelStoreError, match="weights are missing"):
        store.load("tiny:v1")
    with pytest.raises(ModelStoreError, match="tiny:v9 is not in"):
        store.load("tiny:v9")


def test_weights_that_do_not_fit_the_architecture_are_refused(mongo: MongoResource, unique: str) -> None:
    import keras

    from mlassets.models.serialization import model_sha256, model_to_bytes

    db = mongo.client()[f"models_{unique}"]
    store = mongo.model_store(db.name)
    store.save("tiny", _small_model())
    other = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3)])
    _, blob = model_to_bytes(other)
    db["MLModels_weights.files"].delete_many({})
    db["MLModels_weights.chunks"].delete_many({})
    store.blobs.put(blob, filename="tiny:v1")
    architecture = db["MLModels"].find_one({"_id": "tiny:v1"})["architecture"]
    db["MLModels"].update_one({"_id": "tiny:v1"}, {"$set": {"sha256": model_sha256(architecture, blob)}})
    with pytest.raises(ModelStoreError, match="do not fit the architecture"):
        store.load("tiny:v1")
