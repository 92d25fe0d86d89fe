"""chat: rooms (one per channel), messages over NATS/JetStream fanned out to SSE and WebSocket
viewers, moderation, follows with go-live notifications, and donation announcements (docs/chat.md)."""
