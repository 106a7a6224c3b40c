"""The per-event decisions: what each record of a batch becomes (a forward, a result, or an error event
and a dead letter). Stages take a batch and return the records to write; they write nothing and know no
Kafka client, so they are tested by feeding records in and reading records out.
"""
