"""The linear-probe protocol (``protocol.md`` §6): features, head, schedule, aggregation."""
