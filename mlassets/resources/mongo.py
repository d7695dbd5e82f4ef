"""MongoDB client settings and access to the model store kept in a collection."""

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr
from pymongo import MongoClient

from mlassets.models.store import ModelStore
from mlassets.names import SUSY_MODEL_COLLECTION


class MongoResource(ConfigurableResource):
    """A MongoDB (or MongoDB-wire) server reached by URI; one client per process."""

    uri: str = Field(description="mongodb:// or mongodb+srv:// URI; bind credentials to an EnvVar.")
    server_selection_timeout_ms: int = Field(default=10_000, description="How long to wait for the server.")
    _client: MongoClient | None = PrivateAttr(default=None)

    def client(self) -> MongoClient:
        """The process-wide client, created on first use."""
        if self._client is None:
            self._client = MongoClient(self.uri, serverSelectionTimeoutMS=self.server_selection_timeout_ms,
                                       tz_aware=True)
        return self._client

    def model_store(self, database: str, collection: str = SUSY_MODEL_COLLECTION) -> ModelStore:
        """The Keras model store kept in database.collection."""
        return ModelStore(self.client()[database], collection)

    def teardown_after_execution(self, context: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
