"""The gateway's part in a direct benchmark run: see :class:`onair.auth.standin.GatewayStandIn`."""

from onair.auth.standin import GatewayStandIn as IdentityKeys

__all__ = ["IdentityKeys"]
