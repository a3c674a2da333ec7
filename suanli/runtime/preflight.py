"""Every refusal of a training run, as one line, before any process starts.

A run that cannot work fails here with a `SpecError` (exit status 2 from `suanli train`), not as a
traceback per rank repeated over every restart the launcher allows: a layout that does not divide
the processes or the model, a combination the runtime does not run, a backend or accelerator this
machine lacks, a batch that does not split.
"""

from __future__ import annotations

from suanli.runtime.config import TrainConfig
from suanli.runtime.data import BatchLoader, SyntheticTokens, TokenFile
from suanli.runtime.devices import check_present, resolve_backend
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SpecError
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout


def check_layout(config: TrainConfig, spec: ModelSpec, layout: Layout, world_size: int) -> None:
    """What the runtime runs, and whether `layout` fits the processes, the model and the batch."""
    if layout.world_size != world_size:
        raise SpecError(
            f"layout {layout.short()} needs tp×pp×dp×cp = {layout.world_size} processes but {world_size} "
            f"were launched; use --nproc {layout.world_size}"
        )
    if layout.recompute == "selective":
        raise SpecError("layout.recompute=selective is not implemented; use none or full")
    _check_tensor(spec, layout)
    _check_pipeline(config, spec, layout)
    _check_context(config, layout)
    _check_expert(spec, layout)
    replicate = config.parallel.dp_replicate
    if replicate > 1 and (layout.zero_stage != 3 or layout.dp % replicate):
        raise SpecError(
            f"parallel.dp_replicate={replicate}: HSDP needs zero_stage 3 and dp ({layout.dp}) divisible by it"
        )
    shares = config.resolved_batch_shares(layout.dp)
    if shares is not None and len(set(shares)) > 1 and (layout.pp > 1 or layout.world_size != layout.dp):
        raise SpecError(
            f"batch shares {shares}: mixed-speed data parallelism runs data-parallel ranks only (tp=pp=cp=1)"
        )
    slowdown = config.parallel.emulated_slowdown
    if slowdown is not None and len(slowdown) != world_size:
        raise SpecError(
            f"parallel.emulated_slowdown lists {len(slowdown)} factors for {world_size} processes"
        )
    BatchLoader(
        SyntheticTokens(spec.vocab),
        config.seq_len,
        config.global_batch_size,
        layout.micro_batch,
        0,
        layout.dp,
        shares,
    )


def _check_tensor(spec: ModelSpec, layout: Layout) -> None:
    tp = layout.tp
    if tp == 1:
        return
    if spec.n_heads % tp or spec.kv_heads % tp:
        raise SpecError(
            f"layout.tp={tp} must divide the attention heads ({spec.n_heads}) and key/value heads "
            f"({spec.kv_heads})"
        )
    if spec.ffn_hidden % tp or spec.vocab % tp:
        raise SpecError(f"layout.tp={tp} must divide ffn_hidden ({spec.ffn_hidden}) and vocab ({spec.vocab})")
    if spec.is_moe:
        raise SpecError(
            f"layout.tp={tp} on MoE model {spec.slug}: the runtime shards MoE layers with ep, not tp"
        )
    if spec.tied_embeddings or spec.learned_positions or spec.linear_bias:
        raise SpecError(
            f"layout.tp={tp}: the runtime's tensor-parallel plan covers Llama-style models (untied, RoPE, no "
            f"biases); {spec.slug} is not one"
        )


def _check_pipeline(config: TrainConfig, spec: ModelSpec, layout: Layout) -> None:
    if layout.pp == 1:
        return
    stages = layout.pp * layout.vpp
    if stages > spec.n_layers:
        raise SpecError(f"layout pp×vpp = {stages} stages but {spec.slug} has {spec.n_layers} layers")
    if spec.tied_embeddings:
        raise SpecError(
            f"layout.pp={layout.pp}: {spec.slug} ties its embeddings, which a pipeline splits apart"
        )
    if layout.zero_stage == 3 or layout.cp > 1 or layout.ep > 1:
        raise SpecError(
            f"layout {layout.short()}: the runtime pipelines with tp and DDP-style dp only "
            "(not zero_stage 3, cp or ep)"
        )
    micro = config.global_batch_size // (layout.dp * layout.micro_batch)
    if layout.vpp > 1 and micro % layout.pp:
        raise SpecError(
            f"interleaved 1F1B needs micro-batches per step ({micro}) to be a multiple of pp ({layout.pp})"
        )


def _check_context(config: TrainConfig, layout: Layout) -> None:
    cp = layout.cp
    if cp == 1:
        return
    if config.seq_len % cp:
        raise SpecError(f"layout.cp={cp} must divide seq_len ({config.seq_len})")
    if layout.tp > 1 or layout.ep > 1:
        raise SpecError(
            f"layout {layout.short()}: the runtime combines cp with dp and FSDP only (not tp or ep)"
        )


def _check_expert(spec: ModelSpec, layout: Layout) -> None:
    ep = layout.ep
    if ep == 1:
        return
    if spec.moe is None:
        raise SpecError(f"layout.ep={ep} but {spec.slug} is a dense model (no experts to shard)")
    if spec.moe.experts % ep:
        raise SpecError(f"layout.ep={ep} must divide the experts ({spec.moe.experts}) of {spec.slug}")
    if layout.dp % ep:
        raise SpecError(
            f"layout.ep={ep} must divide dp ({layout.dp}): experts are sharded over data-parallel ranks"
        )
    if layout.zero_stage == 3:
        raise SpecError(
            f"layout.ep={ep} with zero_stage 3: the runtime shards experts with DDP-style dp only"
        )


def preflight(config: TrainConfig, world_size: int) -> None:
    """Everything that can be checked before processes start, so a bad config fails in one line."""
    spec, layout = config.resolved_model(), config.resolved_layout(world_size)
    check_layout(config, spec, layout, world_size)
    if config.data.kind == "file":
        assert config.data.path is not None
        TokenFile(config.data.path, spec.vocab, config.data.dtype).sample(0, config.seq_len + 1)
    family = None
    if config.accelerator is not None:
        family = CATALOG.accelerator(config.accelerator, field="accelerator").family
    check_present(resolve_backend(family), world_size)
