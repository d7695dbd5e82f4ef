"""The continual-learning sensor against a real broker: a retrain only for messages the latest model did not see."""

import json

import numpy as np
from dagster import AssetMaterialization, MetadataValue, RunRequest, SkipReason, build_sensor_context, instance_for_test

from mlassets.resources import KafkaResource
from mlassets.sensors.susy_train_rows import trainData_new_rows
from mlassets.streaming.susy_messages import encode_train_rows, ensure_topic


def test_sensor_requests_a_retrain_for_new_messages_only(stack, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 2)
    producer = kafka.producer()
    rows = encode_train_rows(np.array([1, 0, 1]), np.ones((3, 18), dtype=np.float32))
    for i, (key, value) in enumerate(rows):
        producer.send(topic, key=key, value=value, partition=i % 2)
    producer.flush()
    with instance_for_test() as instance:
        context = build_sensor_context(instance=instance, resources={"kafka": kafka})
        assert isinstance(trainData_new_rows(context), SkipReason)  # no model yet
        instance.report_runless_asset_event(AssetMaterialization("susy_model", metadata={
            "trained_to_offsets": MetadataValue.json({"topic": topic, "offsets": {"0": 2, "1": 1}})}))
        skip = trainData_new_rows(build_sensor_context(instance=instance, resources={"kafka": kafka}))
        assert isinstance(skip, SkipReason) and "no messages" in skip.skip_message
        producer.send(topic, key=rows[0][0], value=rows[0][1], partition=1)
        producer.flush()
        producer.close()
        context = build_sensor_context(instance=instance, resources={"kafka": kafka})
        request = trainData_new_rows(context)
        assert isinstance(request, RunRequest)
        assert request.run_key == f"{topic}:0=2,1=2"
        assert request.run_config == {"ops": {"susy_model": {"config": {"end_offsets": {"0": 2, "1": 2}}}}}
        assert request.tags["mlassets/new_rows"] == "1"
        assert json.loads(context.cursor) == {"0": 2, "1": 2}
