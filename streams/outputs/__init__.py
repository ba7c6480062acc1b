"""What people and systems read: metrics, the HTTP API, the wall."""
