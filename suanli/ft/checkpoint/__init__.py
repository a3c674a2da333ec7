"""Asynchronous, tiered checkpoints: staging, agent memory, peer replicas, DCP on disk."""
