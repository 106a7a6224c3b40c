"""Kafka plumbing shared by every part: client configs, the admin connection, topic layout."""
