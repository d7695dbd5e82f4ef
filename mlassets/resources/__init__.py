"""Resource types bound per environment by resources/<env>.yaml."""

from mlassets.resources.datasets import DatasetsResource
from mlassets.resources.io_manager import LakeParquetIOManager
from mlassets.resources.kafka import KafkaResource
from mlassets.resources.lake import LakeResource
from mlassets.resources.mongo import MongoResource
from mlassets.resources.spark import SparkResource

__all__ = ["DatasetsResource", "KafkaResource", "LakeParquetIOManager", "LakeResource", "MongoResource",
           "SparkResource"]
