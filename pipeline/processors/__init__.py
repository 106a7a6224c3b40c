"""The processors: Faust agents whose stream items are micro-batches read by a Kafka client.

Data path: ``reader`` (a confluent-kafka consumer in a thread) -> a bounded Faust channel -> an agent
(``input_stage`` or ``inference_stage``) -> ``writer`` (an idempotent producer) -> ``offsets`` (commit only
what the broker acknowledged).
"""
