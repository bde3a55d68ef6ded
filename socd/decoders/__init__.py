"""Decoders: one vendor format each, into the ECS + ``socd.*`` event model."""
