"""The kafka resource against the real broker: a consumer group commits offsets and resumes from them."""

from kafka import TopicPartition
from kafka.admin import NewTopic

from mlassets.resources import KafkaResource
from mlassets.stack import StackSettings


def _drain(consumer, limit: int, timeout_ms: int = 15_000) -> list:
    records: list = []
    while len(records) < limit:
        batch = consumer.poll(timeout_ms=timeout_ms, max_records=limit - len(records))
        if not batch:
            break
        for part in batch.values():
            records.extend(part)
    return records


def test_group_commits_and_resumes(stack: StackSettings, unique: str) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic, group = f"t-{unique}", f"g-{unique}"
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = kafka.producer()
    for i in range(100):
        producer.send(topic, key=str(i % 5).encode(), value=f"m{i}".encode())
    producer.flush()
    producer.close()

    first = kafka.consumer(group, topic)
    seen = _drain(first, 60)
    assert len(seen) == 60
    first.commit()
    committed = {tp.partition: first.committed(tp) for tp in first.assignment()}
    first.close()
    assert sum(committed.values()) == 60

    second = kafka.consumer(group, topic)
    rest = _drain(second, 100, timeout_ms=5_000)
    second.close()
    values = sorted(r.value.decode() for r in [*seen, *rest])
    assert values == sorted(f"m{i}" for i in range(100))  # every message exactly once across the two

    offsets = admin.list_group_offsets(group)[group]
    assert sum(meta.offset for meta in offsets.values()) == 60  # the second consumer never committed
    assert {tp.partition for tp in offsets} == {0, 1}
    assert TopicPartition(topic, 0) in offsets
    admin.close()


def test_sasl_settings_reach_the_clients() -> None:
    kafka = KafkaResource(bootstrap_servers="a:1, b:2", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                          sasl_username="u", sasl_password="p")
    config = kafka.connection_config()
    assert config["bootstrap_servers"] == ["a:1", "b:2"]
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("u", "p")
    assert config["security_protocol"] == "SASL_SSL"
