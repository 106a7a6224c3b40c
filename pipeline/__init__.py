"""Event-driven ML inference on Apache Kafka."""

import warnings

# confluent-kafka's schema-registry client imports authlib's deprecated httpx integration; the warning is
# theirs, not something a user of this tool can act on.
warnings.filterwarnings("ignore", message=r".*httpx module is deprecated.*")

__version__ = "0.1.0"
