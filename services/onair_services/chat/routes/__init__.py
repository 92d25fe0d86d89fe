"""chat's HTTP and WebSocket routes, one module per concern."""

from onair_services.chat.routes import follows, messages, moderation, notify, streams

ROUTERS = [messages.router, streams.router, moderation.router, follows.router, notify.router]
