"""The training loop: one process per device, started by the elastic launcher, driven by a `TrainConfig`.

    python -m suanli.ft.checkpoint.launcher --nproc 2 --agent-dir AGENTS -m suanli.runtime.train CONFIG.yaml

(`torchrun --nproc-per-node 2 -m suanli.runtime.train CONFIG.yaml` runs it too.)

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from suanli.ft.checkpoint import manifest as mf
from suanli.ft.checkpoint.agent import remove_shared_memory
from suanli.ft.checkpoint.launcher import DETERMINISTIC_EXIT
from suanli.ft.checkpoint.storage import LocalStorage
from suanli.runtime.checkpointing import Checkpointer, StepCost
from suanli.runtime.config import OptimizerConfig, TrainConfig, load_config
from suanli.runtime.data import BatchLoader, SyntheticTokens, TokenFile, TokenSource
from suanli.runtime.devices import DeviceBackend, bind_device, resolve_backend
from suanli.runtime.fence import SliceExceeded, apply_fence, held_bytes
from suanli.runtime.metrics import (
    MetricsLog,
    goodput,
    hfu,
    measure_matmul_peak_tflops,
    mfu,
    read_records,
    step_time_comparison,
)
from suanli.runtime.parallel import build as build_parallel
from suanli.runtime.parallel.mesh import coordinates
from suanli.runtime.preflight import check_layout, preflight
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SuanliError
from suanli.spec.model import ModelSpec
from suanli.spec.plan import Layout

INJECTED_FAILURE_EXIT = 17
LAUNCHED_AT_ENV = "SUANLI_LAUNCHED_AT"


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


def lr_at(step: int, total_steps: int, optimizer: OptimizerConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at `total_steps` (GPT-3, sec. B)."""
    if step < optimizer.warmup_steps:
        return optimizer.lr * (step + 1) / optimizer.warmup_steps
    decay_steps = max(1, total_steps - optimizer.warmup_steps)
    progress = min(1.0, (step - optimizer.warmup_steps) / decay_steps)
    floor = optimizer.lr * optimizer.min_lr_ratio
    return floor + (optimizer.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


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


def inject_failure(step: int, inject_at_step: int | None, env: ProcessEnv) -> None:
    """Kill the last rank abruptly during step `inject_at_step` (1-based) of the first attempt."""
    if inject_at_step == step and env.attempt == 0 and env.rank == env.world_size - 1:
        print(f"rank {env.rank}: injected failure at step {step}", file=sys.stderr, flush=True)
        os._exit(INJECTED_FAILURE_EXIT)


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
    check_layout(config, spec, layout, env.world_size)
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
    loader = BatchLoader(
        token_source(config, spec),
        config.seq_len,
        config.global_batch_size,
        layout.micro_batch,
        shares=config.resolved_batch_shares(layout.dp),
        rank=coordinates(env.rank, layout).dp,
        world_size=layout.dp,
    )
    parallel = build_parallel(
        spec,
        layout,
        device,
        config.seed,
        rank=env.rank,
        world_size=env.world_size,
        recompute=layout.recompute == "full",
        moe=config.moe,
        options=config.parallel,
        micro_batches=loader.accumulation_steps,
        seq_len=config.seq_len,
    )
    model = parallel.module
    opt = config.optimizer
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
    )
    result = RunResult()
    result.peak_tflops_per_device, result.peak_source = peak_tflops_per_device(config, device, dtype, env)
    peak_total = result.peak_tflops_per_device * env.world_size
    tokens_per_step = config.global_batch_size * config.seq_len
    checkpointer = (
        Checkpointer(
            config.checkpoint,
            env.rank,
            env.world_size,
            env.local_world_size,
            model,
            optimizer,
            device,
            tokens_per_step,
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
    source = checkpointer.restored if checkpointer is not None and restored is not None else None
    if env.attempt > 0 or restored is not None:
        log.write(
            "resume",
            restored_step=restored,
            tier=source.tier if source else None,
            where=source.where if source else None,
        )
    if source is not None and env.rank == 0:
        print(f"resumed at step {source.step} from {source.tier}: {source.where}", flush=True)
    result.resumed_from_step = restored
    start_step = restored or 0
    predicted_s = config.predicted_step_time_s()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    model.train()
    step_times: list[float] = []
    for step in range(start_step + 1, config.steps + 1):
        inject_failure(step, inject_failure_at_step, env)
        step_start = time.perf_counter()
        if checkpointer is not None:
            checkpointer.step_started()
        lr = lr_at(step - 1, config.steps, opt)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_value, data_wait_s, update_wait_s = parallel.train_step(
            optimizer,
            loader,
            step,
            device,
            autocast,
            opt.grad_clip,
            checkpointer.before_update if checkpointer is not None else lambda: 0.0,
        )
        if fence is not None:
            fence.check(held_bytes(device))
        compute_s = time.perf_counter() - step_start - data_wait_s - update_wait_s
        cost = (
            checkpointer.step_finished(step, config.steps, compute_s)
            if checkpointer is not None
            else StepCost(0.0, 0.0, saved=False)
        )
        compute_s -= cost.slowdown_s  # time a checkpoint in flight added to this step is its badput
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
            checkpoint_stall_s=cost.blocking_s + cost.slowdown_s,
            checkpoint_blocking_s=cost.blocking_s,
            checkpoint_slowdown_s=cost.slowdown_s,
            checkpoint_saved=cost.saved,
            checkpoint_in_flight=cost.in_flight,
            tokens_per_s=tokens_per_s,
            mfu=mfu(spec, config.seq_len, tokens_per_s, peak_total),
            hfu=hfu(spec, config.seq_len, layout.recompute, tokens_per_s, peak_total),
            predicted_step_time_s=predicted_s,
        )
    if checkpointer is not None:
        checkpointer.close()
        _report_checkpoint_costs(checkpointer, env, log)
    if step_times:
        _report(config, spec, layout, env, log, step_times, peak_total, predicted_s, result)
    elif env.rank == 0:
        print(
            f"the checkpoint at step {start_step} already completes steps={config.steps}; nothing to "
            "train (raise steps to continue, or pass --fresh to start over)"
        )
    return result


def _report_checkpoint_costs(checkpointer: Checkpointer, env: ProcessEnv, log: MetricsLog) -> None:
    """One record (and, on rank 0, one line) of what the saves of this attempt cost training."""
    costs = checkpointer.costs
    if not costs:
        return
    lost = [c.lost_s for c in costs]
    log.write(
        "checkpoint_costs",
        saves=len(costs),
        mean_time_lost_per_save_s=sum(lost) / len(lost),
        mean_blocking_s=sum(c.blocking_s for c in costs) / len(costs),
        mean_slowdown_s=sum(c.slowdown_s for c in costs) / len(costs),
        overlapped_saves=sum(c.overlap for c in costs),
    )
    if env.rank == 0:
        print(
            f"checkpoints: {len(costs)} saves, time lost per save {sum(lost) / len(lost):.3f} s "
            f"(blocking + slowdown of the steps they overlapped; {sum(c.overlap for c in costs)} overlapped)"
        )


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


def clear_run(config: TrainConfig) -> list[str]:
    """Remove a run's checkpoints (committed, partial, quarantined), agent files and shared memory left
    by a launcher that was killed, and metrics; what went. Call it while no launch of the run is alive."""
    removed = []
    if config.checkpoint is not None and Path(config.checkpoint.folder).is_dir():
        storage = LocalStorage(config.checkpoint.folder)
        removed += [str(folder) for folder in remove_shared_memory(Path(config.checkpoint.folder) / "agents")]
        for name in mf.removable(storage):
            storage.delete(name)
            removed.append(storage.describe(name))
    metrics = Path(config.metrics.path)
    if metrics.exists():
        metrics.unlink()
        removed.append(str(metrics))
    return removed


def launch(
    config_path: str | Path,
    nproc: int,
    inject_failure_at_step: int | None = None,
    max_restarts: int = 3,
    fresh: bool = False,
) -> int:
    """Run `nproc` local processes under the elastic launcher, which restarts them all when one dies.

    With checkpoints configured the launcher starts the node's checkpoint agent first and keeps it
    alive, so a restarted rank resumes from the snapshot in shared memory instead of the disk.
    A run resumes from its checkpoint folder by default; `fresh` clears it first.
    """
    launched_at = time.time()
    config = load_config(config_path)
    preflight(config, nproc)
    if fresh:
        removed = clear_run(config)
        print(f"fresh start: removed {len(removed)} checkpoint and metrics entries", flush=True)
    command = [
        sys.executable,
        "-m",
        "suanli.ft.checkpoint.launcher",
        f"--nproc={nproc}",
        f"--max-restarts={max_restarts}",
    ]
    if config.checkpoint is not None:
        command.append(f"--agent-dir={Path(config.checkpoint.folder) / 'agents'}")
    command += ["-m", "suanli.runtime.train", str(config_path)]
    if inject_failure_at_step is not None:
        command.append(f"--inject-failure-at-step={inject_failure_at_step}")
    launcher = subprocess.Popen(command, env=os.environ | {LAUNCHED_AT_ENV: repr(launched_at)})
    # A terminated caller passes the signal on; the launcher stops the ranks and the agent.
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    if in_main_thread:
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: launcher.send_signal(signal.SIGTERM))
    try:
        return launcher.wait()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suanli.runtime.train", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--inject-failure-at-step", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        run(load_config(args.config), args.inject_failure_at_step)
    except (SuanliError, SliceExceeded) as exc:  # a bad config or an unusable checkpoint fails alike again
        if ProcessEnv.from_environ().rank == 0:  # every rank fails alike; one line is enough
            print(f"error: {exc}", file=sys.stderr)
        return DETERMINISTIC_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
