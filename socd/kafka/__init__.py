"""What socd's Kafka plugins (the ``kafka`` collector and sink) and the partitioned
correlation roles share: the client settings (:mod:`socd.kafka.client`) and the
consumer/producer metrics (:mod:`socd.kafka.metrics`).

Nothing here imports ``confluent_kafka`` at module level: the package is imported
only by Kafka-using code, and even then the librdkafka binding is loaded by the
function that builds a client, so ``socd check-config`` and start-up of a config
without Kafka never pay for it.
"""
