"""Event-driven ML inference on Apache Kafka."""

__version__ = "0.1.0"
