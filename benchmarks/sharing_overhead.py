"""GPU sharing overhead and isolation: the same training step alone on a whole GPU, under MPS (alone
and beside a noisy neighbour), time-sliced beside a neighbour, and on MIG instances (alone and with
every other instance busy), with the slices set exactly as Suanli's executors set them
(`suanli.sched.launch.launch_env`, the node helper's MPS daemon, the runtime's memory fence).

Figures per scenario: the measured job's steps/s, its ratio to the whole GPU, its ratio to the
share it was given (the "< 5 % overhead" claim is `1 - that ratio` for a slice running alone), and
the interference a neighbour causes (`1 - with neighbour / alone at the same slice`).

    .venv/bin/python benchmarks/sharing_overhead.py --gpu h200-sxm [--steps 200] [--json out.json]
    .venv/bin/python benchmarks/sharing_overhead.py --device cpu --steps 20   # smoke test, no GPU

MIG scenarios run instead of the others when the GPU already has MIG instances (`nvidia-smi -L`
lists them; the benchmark never changes a GPU's MIG mode): pass the whole-GPU steps/s of a run
without MIG as `--baseline` to normalise them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from suanli.runtime.slices import ensure_mps_daemon, parse_smi_list
from suanli.sched.launch import launch_env, slice_grant
from suanli.spec.job import Sharing


def worker(args: argparse.Namespace) -> None:
    """One training job: an MLP stack with AdamW in bf16 autocast; prints steps/s as JSON."""
    import torch

    from suanli.runtime.fence import apply_fence, held_bytes

    device = torch.device(args.device)
    fence = apply_fence(device)
    torch.manual_seed(0)
    layers = [torch.nn.Linear(args.width, args.width) for _ in range(args.layers)]
    model = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.GELU())]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randn(args.batch, args.width, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(batch).float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed = time.perf_counter() - start
    if fence is not None:
        fence.check(held_bytes(device))
    print(json.dumps({"steps_per_s": args.steps / elapsed, "held_mib": held_bytes(device) / 2**20}))


@dataclass
class Job:
    env: dict[str, str] = field(default_factory=dict)
    measured: bool = False  # the job whose throughput the scenario reports


def run_jobs(args: argparse.Namespace, jobs: list[Job]) -> float:
    """Start all jobs at once; the measured job's steps/s."""
    command = [sys.executable, __file__, "--worker", "--device", args.device]
    command += ["--width", str(args.width), "--layers", str(args.layers), "--batch", str(args.batch)]
    procs = []
    for job in jobs:
        # neighbours run longer than the measured job so it never runs alone
        steps = args.steps if job.measured else args.steps * 3
        env = {**os.environ, **job.env}
        procs.append(
            subprocess.Popen(
                [*command, "--steps", str(steps), "--warmup", str(args.warmup)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate()[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"a benchmark job failed ({proc.returncode}): {out.strip()}")
    measured = next(i for i, job in enumerate(jobs) if job.measured)
    return json.loads(outputs[measured].splitlines()[-1])["steps_per_s"]


def mps_env(gpu: str, fraction: float) -> dict[str, str]:
    grant = slice_grant(Sharing(mode="fraction", core_fraction=fraction, memory_fraction=fraction), gpu, 1)
    return launch_env(grant)  # type: ignore[arg-type]


def scenarios(args: argparse.Namespace) -> list[tuple[str, float, list[Job]]]:
    """(name, share of the GPU the measured job holds, the jobs started together)."""
    half_ts = launch_env(slice_grant(Sharing(mode="timeslice", memory_fraction=0.5), args.gpu, 1))  # type: ignore[arg-type]
    result = [
        ("whole GPU, alone", 1.0, [Job(measured=True)]),
        ("time-slice 50 %, beside a neighbour", 0.5, [Job(half_ts, True), Job(half_ts)]),
    ]
    if args.device == "cpu":
        return result
    result += [
        ("MPS 100 %, alone", 1.0, [Job(mps_env(args.gpu, 1.0), True)]),
        ("MPS 50 %, alone", 0.5, [Job(mps_env(args.gpu, 0.5), True)]),
        (
            "MPS 50 %, beside a 50 % neighbour",
            0.5,
            [Job(mps_env(args.gpu, 0.5), True), Job(mps_env(args.gpu, 0.5))],
        ),
    ]
    return result


def mig_scenarios(args: argparse.Namespace) -> tuple[list[tuple[str, float, list[Job]]], str]:
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        return [], f"skipped: nvidia-smi -L failed ({exc})"
    devices = parse_smi_list(listing)
    if not devices:
        return [], "skipped: no MIG instances on this machine (MIG mode is left as it is)"
    first, others = devices[0], devices[1:]
    compute = int(first.profile.split("g.")[0]) / 7
    alone = Job({"CUDA_VISIBLE_DEVICES": first.uuid, "SUANLI_MIG_PROFILE": first.profile}, True)
    busy = [Job({"CUDA_VISIBLE_DEVICES": d.uuid}) for d in others]
    return [
        (f"MIG {first.profile}, alone", compute, [alone]),
        (f"MIG {first.profile}, {len(others)} other instances busy", compute, [alone, *busy]),
    ], ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--gpu", default="h200-sxm", help="catalog slug of the GPU (slice memory)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--baseline", type=float, default=None, help="whole-GPU steps/s of a run without MIG")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: the figures need a GPU (--device cpu runs a smoke test)")
    if args.device == "cpu":
        args.width, args.layers, args.batch = min(args.width, 512), min(args.layers, 4), min(args.batch, 256)
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as mps_dir:
        planned = scenarios(args)
        if args.device != "cpu":
            os.environ["CUDA_MPS_PIPE_DIRECTORY"] = f"{mps_dir}/pipe"
            os.environ["CUDA_MPS_LOG_DIRECTORY"] = f"{mps_dir}/log"
            Path(f"{mps_dir}/log").mkdir()
            mig, why = mig_scenarios(args)
            if mig:  # with MIG on, CUDA sees an instance as device 0: no whole-GPU or MPS rows
                planned = mig
                notes.append("MIG: measured on the instances nvidia-smi -L lists; × whole uses --baseline")
            else:
                notes.append(f"MIG: {why}")
        rows = []
        for name, share, jobs in planned:
            if name.startswith("MPS") and not Path(f"{mps_dir}/pipe/control").exists():
                ensure_mps_daemon(Path(f"{mps_dir}/pipe"))
            rows.append((name, share, run_jobs(args, jobs)))
        if Path(f"{mps_dir}/pipe/control").exists():
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, check=False)
    whole = args.baseline or (rows[0][2] if rows[0][0].startswith("whole") else None)
    alone_at = {}
    print("| scenario | share | steps/s | × whole GPU | × its share | interference |")
    print("|---|---|---|---|---|---|")
    for name, share, rate in rows:
        key = (name.split(",")[0], share)
        interference = f"{1 - rate / alone_at[key]:.1%}" if key in alone_at else "–"
        alone_at.setdefault(key, rate)
        ratio = f"{rate / whole:.3f} | {rate / whole / share:.3f}" if whole else "– | –"
        print(f"| {name} | {share:.2f} | {rate:.2f} | {ratio} | {interference} |")
    for note in notes:
        print(note)
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "notes": notes, "args": vars(args)}, default=str, indent=2)
        )


if __name__ == "__main__":
    main()
