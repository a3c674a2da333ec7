"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019) with sequence parallelism (Korthikanti et
al. 2022), on PyTorch's `parallelize_module`: the plan torchtitan applies to Llama.

Q/K/V and the MLP's input projections split column-wise (each rank keeps n_heads / tp heads and
ffn / tp features), the output projections row-wise; with sequence parallelism the norms and the
residual stream hold seq / tp tokens per rank, gathered before attention and the MLP.
"""

from __future__ import annotations

from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from suanli.runtime.model import MLP, Decoder


def parallelize_decoder(model: Decoder, mesh: DeviceMesh, sequence_parallel: bool) -> None:
    """Shard `model` (a whole decoder or a pipeline stage of one) over the tensor-parallel `mesh`."""
    residual = Shard(1) if sequence_parallel else Replicate()
    top: dict[str, ParallelStyle] = {}
    if model.embedding is not None:
        top["embedding"] = RowwiseParallel(input_layouts=Replicate(), output_layouts=residual)
    if model.norm is not None:
        if sequence_parallel:
            top["norm"] = SequenceParallel()
        top["output"] = ColwiseParallel(input_layouts=residual, output_layouts=Replicate())
    parallelize_module(model, mesh, top)
    for block in model.layers.values():
        assert isinstance(block.mlp, MLP), "tensor parallelism of MoE layers is refused in preflight"
        plan: dict[str, ParallelStyle] = {
            "attention": PrepareModuleInput(
                input_layouts=(residual, None, None), desired_input_layouts=(Replicate(), None, None)
            ),
            "attention.wq": ColwiseParallel(),
            "attention.wk": ColwiseParallel(),
            "attention.wv": ColwiseParallel(),
            "attention.wo": RowwiseParallel(output_layouts=residual),
            "mlp": PrepareModuleInput(input_layouts=(residual,), desired_input_layouts=(Replicate(),)),
            "mlp.w1": ColwiseParallel(),
            "mlp.w2": RowwiseParallel(output_layouts=residual),
        }
        if block.mlp.w3 is not None:
            plan["mlp.w3"] = ColwiseParallel()
        if sequence_parallel:
            plan["attention_norm"] = SequenceParallel()
            plan["mlp_norm"] = SequenceParallel()
        parallelize_module(block, mesh, plan)
