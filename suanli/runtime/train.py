"""The training loop: one process per device, launched by torchrun, driven by a `TrainConfig`.

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m suanli.runtime.train CONFIG.yaml

Data parallelism is DDP (zero_stage 0-2) or FSDP2 `fully_shard` (zero_stage 3); the device and the
collective backend come from `suanli.runtime.devices`, so nothing here names a vendor.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from suanli.ft.checkpoint.agent import start_agent
from suanli.runtime.checkpointing import AGENT_DIR_ENV, Checkpointer, agent_dir
from suanli.runtime.config import OptimizerConfig, TrainConfig, load_config
from suanli.runtime.data import BatchLoader, SyntheticTokens, TokenFile, TokenSource
from suanli.runtime.devices import DeviceBackend, bind_device, resolve_backend, synchronize
from suanli.runtime.fence import apply_fence, held_bytes
from suanli.runtime.metrics import (
    MetricsLog,
    goodput,
    hfu,
    measure_matmul_peak_tflops,
    mfu,
    read_records,
    step_time_comparison,
)
from suanli.runtime.model import Decoder
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SpecError, SuanliError
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout

INJECTED_FAILURE_EXIT = 17
LAUNCHED_AT_ENV = "SUANLI_LAUNCHED_AT"
UNSUPPORTED_DEGREES = ("tp", "pp", "cp", "ep")


@dataclass(frozen=True)
class ProcessEnv:
    """Who this process is, from torchrun's variables (a single process when they are absent)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    attempt: int = 0

    @classmethod
    def from_environ(cls) -> ProcessEnv:
        read = lambda name: int(os.environ.get(name, 0))  # noqa: E731
        return cls(
            rank=read("RANK"),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=read("LOCAL_RANK"),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
            attempt=read("TORCHELASTIC_RESTART_COUNT"),
        )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclass
class RunResult:
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int | None = None
    peak_tflops_per_device: float = 0.0
    peak_source: str = ""


def check_layout(layout: Layout, world_size: int) -> None:
    """Refuse, in one line, what the runtime cannot run yet; dp must match the processes launched."""
    for name in UNSUPPORTED_DEGREES:
        degree = getattr(layout, name)
        if degree > 1:
            raise SpecError(
                f"layout.{name}={degree}: the runtime runs data parallelism only (DDP or FSDP); "
                f"use a plan with {name}=1"
            )
    if layout.dp != world_size:
        raise SpecError(
            f"layout.dp={layout.dp} but {world_size} processes were launched; use --nproc {layout.dp}"
        )
    if layout.recompute == "selective":
        raise SpecError("layout.recompute=selective is not implemented; use none or full")


def lr_at(step: int, total_steps: int, optimizer: OptimizerConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at `total_steps` (GPT-3, sec. B)."""
    if step < optimizer.warmup_steps:
        return optimizer.lr * (step + 1) / optimizer.warmup_steps
    decay_steps = max(1, total_steps - optimizer.warmup_steps)
    progress = min(1.0, (step - optimizer.warmup_steps) / decay_steps)
    floor = optimizer.lr * optimizer.min_lr_ratio
    return floor + (optimizer.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(
    spec: ModelSpec, layout: Layout, device: torch.device, seed: int, world_size: int
) -> nn.Module:
    """The decoder, identically initialised on every rank, wrapped for data parallelism."""
    torch.manual_seed(seed)
    model = Decoder(spec, recompute=layout.recompute == "full").to(device)
    if world_size == 1:
        return model
    if layout.zero_stage == 3:
        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        return model
    return DistributedDataParallel(model, device_ids=None if device.type == "cpu" else [device.index])


def gradient_sync(model: nn.Module, enabled: bool) -> AbstractContextManager[object]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
        return nullcontext()
    if isinstance(model, DistributedDataParallel) and not enabled:
        return model.no_sync()
    return nullcontext()


def token_source(config: TrainConfig, spec: ModelSpec) -> TokenSource:
    if config.data.kind == "file":
        assert config.data.path is not None
        return TokenFile(config.data.path, spec.vocab, config.data.dtype)
    return SyntheticTokens(spec.vocab, seed=config.data.seed, max_stride=config.data.max_stride)


def peak_tflops_per_device(
    config: TrainConfig, device: torch.device, dtype: torch.dtype, env: ProcessEnv
) -> tuple[float, str]:
    """Configured peak, else the catalog's datasheet peak, else a matmul measured by every rank at once."""
    if config.metrics.peak_tflops is not None:
        return config.metrics.peak_tflops, "config"
    if config.accelerator is not None:
        peak = CATALOG.accelerator(config.accelerator, field="accelerator").peak(config.precision)
        if peak is not None:
            return peak, f"{config.accelerator} datasheet {config.precision}"
    if env.distributed:
        dist.barrier()  # measure together: ranks that share cores see the contention they train under
    measured = torch.tensor(measure_matmul_peak_tflops(device, dtype), dtype=torch.float64)
    if env.distributed:
        dist.all_reduce(measured)
        measured /= env.world_size
    return float(measured), f"measured {device.type} matmul ({str(dtype).removeprefix('torch.')})"


def mean_across_ranks(value: float, env: ProcessEnv, device: torch.device) -> float:
    if not env.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor) / env.world_size


def inject_failure(step: int, inject_at_step: int | None, env: ProcessEnv) -> None:
    """Kill the last rank abruptly during step `inject_at_step` (1-based) of the first attempt."""
    if inject_at_step == step and env.attempt == 0 and env.rank == env.world_size - 1:
        print(f"rank {env.rank}: injected failure at step {step}", file=sys.stderr, flush=True)
        os._exit(INJECTED_FAILURE_EXIT)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: BatchLoader,
    step: int,
    device: torch.device,
    autocast: torch.autocast,
    grad_clip: float | None,
) -> tuple[float, float]:
    """One optimizer step over this rank's micro-batches: (mean local loss, seconds waiting for data)."""
    loss_sum, data_wait_s = 0.0, 0.0
    batches = loader.micro_batches(step - 1)
    for micro in range(loader.accumulation_steps):
        fetch_start = time.perf_counter()
        inputs, targets = next(batches)
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        data_wait_s += time.perf_counter() - fetch_start
        with gradient_sync(model, micro == loader.accumulation_steps - 1), autocast:
            logits = model(inputs)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
            (loss / loader.accumulation_steps).backward()
        loss_sum += loss.item()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return loss_sum / loader.accumulation_steps, data_wait_s


@contextmanager
def process_group(backend: DeviceBackend, env: ProcessEnv) -> Iterator[None]:
    if not env.distributed:
        yield
        return
    dist.init_process_group(backend.collective_backend)
    yield
    dist.barrier()  # no rank tears down its communicator while another still uses it
    dist.destroy_process_group()


def run(
    config: TrainConfig, inject_failure_at_step: int | None = None, env: ProcessEnv | None = None
) -> RunResult:
    """Train for `config.steps` optimizer steps (resuming from a checkpoint if there is one)."""
    env = env or ProcessEnv.from_environ()
    spec, layout = config.resolved_model(), config.resolved_layout(env.world_size)
    check_layout(layout, env.world_size)
    family = (
        CATALOG.accelerator(config.accelerator, field="accelerator").family if config.accelerator else None
    )
    backend = resolve_backend(family)
    log = MetricsLog(config.metrics.path, attempt=env.attempt, enabled=env.rank == 0)
    with process_group(backend, env):
        return _train(config, spec, layout, backend, env, log, inject_failure_at_step)


def _train(
    config: TrainConfig,
    spec: ModelSpec,
    layout: Layout,
    backend: DeviceBackend,
    env: ProcessEnv,
    log: MetricsLog,
    inject_failure_at_step: int | None,
) -> RunResult:
    # the first attempt's startup counts from the launch (process spawn and imports included)
    launched_at = os.environ.get(LAUNCHED_AT_ENV) if env.attempt == 0 else None
    started_at = float(launched_at) if launched_at else time.time()
    device = bind_device(backend, env.local_rank)
    fence = apply_fence(device)  # a sliced job's memory cap and check (docs/sharing.md)
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
    model = build_model(spec, layout, device, config.seed, env.world_size)
    opt = config.optimizer
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
    )
    loader = BatchLoader(
        token_source(config, spec),
        config.seq_len,
        config.global_batch_size,
        layout.micro_batch,
        env.rank,
        env.world_size,
    )
    result = RunResult()
    result.peak_tflops_per_device, result.peak_source = peak_tflops_per_device(config, device, dtype, env)
    peak_total = result.peak_tflops_per_device * env.world_size
    checkpointer = (
        Checkpointer(
            config.checkpoint, env.rank, env.world_size, env.local_world_size, model, optimizer, device
        )
        if config.checkpoint
        else None
    )
    restored = checkpointer.restore() if checkpointer is not None else None
    if env.attempt == 0 and restored is None:
        log.reset()
    log.write(
        "start", at=started_at, world_size=env.world_size, layout=layout.short(), device=backend.device_type
    )
    if env.attempt > 0 or restored is not None:
        log.write("resume", restored_step=restored, tier=checkpointer.restored_tier if checkpointer else None)
    result.resumed_from_step = restored
    start_step = restored or 0
    tokens_per_step = config.global_batch_size * config.seq_len
    predicted_s = config.predicted_step_time_s()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    model.train()
    step_times: list[float] = []
    for step in range(start_step + 1, config.steps + 1):
        inject_failure(step, inject_failure_at_step, env)
        step_start = time.perf_counter()
        lr = lr_at(step - 1, config.steps, opt)
        for group in optimizer.param_groups:
            group["lr"] = lr
        local_loss, data_wait_s = train_step(model, optimizer, loader, step, device, autocast, opt.grad_clip)
        loss_value = mean_across_ranks(local_loss, env, device)
        if fence is not None:
            fence.check(held_bytes(device))
        compute_s = time.perf_counter() - step_start - data_wait_s
        stall_s = (
            checkpointer.after_step(step, config.steps, compute_s + data_wait_s) if checkpointer else 0.0
        )
        step_time_s = time.perf_counter() - step_start
        tokens_per_s = tokens_per_step / step_time_s
        result.losses.append(loss_value)
        step_times.append(step_time_s)
        log.write(
            "step",
            step=step,
            loss=loss_value,
            lr=lr,
            step_time_s=step_time_s,
            compute_s=compute_s,
            data_wait_s=data_wait_s,
            checkpoint_stall_s=stall_s,
            tokens_per_s=tokens_per_s,
            mfu=mfu(spec, config.seq_len, tokens_per_s, peak_total),
            hfu=hfu(spec, config.seq_len, layout.recompute, tokens_per_s, peak_total),
            predicted_step_time_s=predicted_s,
        )
    if checkpointer is not None:
        checkpointer.close()
    if step_times:
        _report(config, spec, layout, env, log, step_times, peak_total, predicted_s, result)
    elif env.rank == 0:
        print(f"the checkpoint at step {start_step} already completes steps={config.steps}; nothing to train")
    return result


def _report(
    config: TrainConfig,
    spec: ModelSpec,
    layout: Layout,
    env: ProcessEnv,
    log: MetricsLog,
    step_times: list[float],
    peak_total: float,
    predicted_s: float | None,
    result: RunResult,
) -> None:
    """The end-of-run summary: a JSON record for the service, a few lines for the user (rank 0)."""
    steady = step_times[1:] or step_times  # the first step pays for warm-up
    measured_s = sorted(steady)[len(steady) // 2]
    tokens_per_s = config.global_batch_size * config.seq_len / measured_s
    run_mfu = mfu(spec, config.seq_len, tokens_per_s, peak_total)
    run_hfu = hfu(spec, config.seq_len, layout.recompute, tokens_per_s, peak_total)
    log.write(
        "end",
        final_loss=result.losses[-1],
        median_step_time_s=measured_s,
        tokens_per_s=tokens_per_s,
        mfu=run_mfu,
        hfu=run_hfu,
        peak_tflops_per_device=result.peak_tflops_per_device,
        peak_source=result.peak_source,
        predicted_step_time_s=predicted_s,
    )
    if env.rank != 0:
        return
    records = read_records(log.path)
    summary = goodput(records)
    badput = ", ".join(f"{cause} {seconds:.2f} s" for cause, seconds in summary.badput_s.items())
    first_loss = next(r["loss"] for r in records if r["event"] == "step")  # from before any restart
    print(f"loss {first_loss:.4f} -> {result.losses[-1]:.4f} over {config.steps} steps ({layout.short()})")
    print(
        f"{tokens_per_s:,.0f} tokens/s, MFU {run_mfu:.1%}, HFU {run_hfu:.1%} "
        f"(peak {result.peak_tflops_per_device:.3g} TFLOPS/device, {result.peak_source})"
    )
    print(step_time_comparison(predicted_s, measured_s))
    print(f"goodput {summary.goodput:.1%} of {summary.wall_s:.1f} s; badput: {badput}")
    print(f"restarts {summary.restarts}")


def preflight(config: TrainConfig, world_size: int) -> None:
    """Everything that can be checked before processes start, so a bad config fails in one line."""
    spec, layout = config.resolved_model(), config.resolved_layout(world_size)
    check_layout(layout, world_size)
    BatchLoader(
        token_source(config, spec),
        config.seq_len,
        config.global_batch_size,
        layout.micro_batch,
        0,
        world_size,
    )
    if config.accelerator is not None:
        CATALOG.accelerator(config.accelerator, field="accelerator")


def launch(
    config_path: str | Path,
    nproc: int,
    inject_failure_at_step: int | None = None,
    max_restarts: int = 3,
) -> int:
    """Run `nproc` local processes under torchrun, which restarts them all when one dies.

    With checkpoints configured, a node agent is started first and outlives the ranks, so a
    restarted rank resumes from the snapshot in shared memory instead of the disk.
    """
    launched_at = time.time()
    config = load_config(config_path)
    preflight(config, nproc)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "--monitor-interval=0.1",
        "-m",
        "suanli.runtime.train",
        str(config_path),
    ]
    if inject_failure_at_step is not None:
        command.append(f"--inject-failure-at-step={inject_failure_at_step}")
    # Restarted ranks must not find the previous attempt's gloo addresses in torchrun's shared
    # store (pytorch/pytorch#167288): with this set, every attempt gets a fresh store.
    env = os.environ | {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", LAUNCHED_AT_ENV: repr(launched_at)}
    agent = None
    if config.checkpoint is not None:
        agent = start_agent(0, agent_dir(config.checkpoint))
        env[AGENT_DIR_ENV] = str(agent_dir(config.checkpoint))
    torchrun = subprocess.Popen(command, env=env)
    # A terminated launcher passes the signal on (torchrun stops its ranks), then stops the agent,
    # which runs in its own session and would otherwise outlive the job.
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    if in_main_thread:
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: torchrun.send_signal(signal.SIGTERM))
    try:
        return torchrun.wait()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
        if agent is not None:
            agent.terminate()
            agent.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suanli.runtime.train", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--inject-failure-at-step", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        run(load_config(args.config), args.inject_failure_at_step)
    except SuanliError as exc:  # a bad config or an unusable checkpoint fails alike again
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
