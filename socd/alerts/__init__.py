"""Alerts after delivery: the embedded alert store, the alert lifecycle (statuses,
transitions, assignees, false-positive counts) and the tamper-evident audit log."""
