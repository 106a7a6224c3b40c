"""Event-driven ML inference on Apache Kafka."""

import contextlib
import warnings

# confluent-kafka's schema-registry client imports authlib's deprecated httpx integration; the warning is
# theirs, not something a user of this tool can act on. authlib forces its own warnings to "always" when
# it is imported, so our filter has to come after that import to take precedence.
with contextlib.suppress(ImportError):
    import authlib.deprecate  # noqa: F401
warnings.filterwarnings("ignore", message=r".*httpx module is deprecated.*")

__version__ = "0.1.0"
