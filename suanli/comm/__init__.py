"""Collective communication: topology graph, cost models, algorithm selection, torch.distributed runtime."""
