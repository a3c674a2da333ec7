"""N-D parallelism for the training runtime: TP, PP (1F1B, interleaved, uneven), CP (ring
attention), EP (all-to-all), FSDP2/HSDP and mixed-speed data parallelism, on PyTorch's own
building blocks (DeviceMesh, DTensor, pipelining, fully_shard) and any collective backend."""

from suanli.runtime.parallel.runner import ParallelModel, build

__all__ = ["ParallelModel", "build"]
