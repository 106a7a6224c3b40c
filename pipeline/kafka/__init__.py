"""Kafka I/O and the commit rule: client configs, the admin connection, topic layout, the batch reader,
the output writer (the one emitter), the offset tracker that commits only what the broker acknowledged,
the batching rule, the retry policy and the lag monitor. No Faust here.
"""
