"""Kafka client factories (producer, consumer, admin) built from one connection config."""

from typing import Any

from dagster import ConfigurableResource
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from pydantic import Field


class KafkaResource(ConfigurableResource):
    """Connection settings shared by every Kafka client the assets and services create."""

    bootstrap_servers: str = Field(description="Comma-separated host:port list of brokers.")
    security_protocol: str = Field(default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256/512 or AWS_MSK_IAM.")
    sasl_username: str | None = Field(default=None, description="SASL user; bind to an EnvVar.")
    sasl_password: str | None = Field(default=None, description="SASL password; bind to an EnvVar.")
    ssl_cafile: str | None = Field(default=None, description="CA bundle for SSL/SASL_SSL.")
    client_id: str = Field(default="mlassets", description="Client id prefix seen by the brokers.")
    request_timeout_ms: int = Field(default=30_000, description="Request timeout of every client.")

    def connection_config(self) -> dict[str, Any]:
        """The kafka-python keyword arguments common to every client."""
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        return config

    def producer(self, **overrides: Any) -> KafkaProducer:
        """An idempotent producer (acks=all) that batches sends; overrides win."""
        return KafkaProducer(**self.producer_config(**overrides))

    def producer_config(self, **overrides: Any) -> dict[str, Any]:
        """The KafkaProducer keyword arguments of producer(): plain values, for a producer in another process."""
        config = {
            **self.connection_config(),
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "compression_type": None,
            "max_in_flight_requests_per_connection": 5,
            "retries": 2**31 - 1,
        }
        return {**config, **overrides}

    def consumer(self, group_id: str | None, *topics: str, **overrides: Any) -> KafkaConsumer:
        """A consumer in group_id with manual commits, reading from the earliest offset when none is committed."""
        config = {
            **self.connection_config(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": 1000,
        }
        return KafkaConsumer(*topics, **{**config, **overrides})

    def admin(self, **overrides: Any) -> KafkaAdminClient:
        """An admin client for topics, offsets and consumer groups."""
        return KafkaAdminClient(**{**self.connection_config(), **overrides})
