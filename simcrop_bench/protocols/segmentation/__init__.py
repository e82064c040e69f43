"""The UNETR fine-tuning protocol (``protocol.md`` §7) and its resumable state."""
