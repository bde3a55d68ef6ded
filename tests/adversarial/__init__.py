"""Adversarial tests: crafted input against a real running socd (docs/threat-model.md)."""
