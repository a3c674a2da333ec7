"""Fault tolerance: checkpoints with memory and peer tiers, recovery, intervals, failure prediction."""
