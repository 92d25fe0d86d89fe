"""Base clients, one per backend (Valkey, NATS, Kafka, S3).

Each owns connection setup, the central default timeout (``onair.config.TimeoutSettings``), its
key/subject namespace and shutdown; narrow modules (token cache, fan-out bridge, log-stream sink,
profile store) are built on them rather than on the raw libraries.
"""

from onair.clients.base import Lifecycle, lifespan
from onair.clients.kafka import KafkaClient
from onair.clients.nats import NatsClient
from onair.clients.s3 import S3Client
from onair.clients.valkey import ValkeyClient

__all__ = ["KafkaClient", "Lifecycle", "NatsClient", "S3Client", "ValkeyClient", "lifespan"]
