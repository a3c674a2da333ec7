"""Node-side helper that makes a sliced job's grant real on the GPU node, run at the start of the job.

`python -m suanli.runtime.slices env` reads the grant from the environment (`SUANLI_SLICE_MODE`,
`SUANLI_MIG_PROFILE`, `SUANLI_SLICE_GPUS`, set by `suanli.sched.launch.launch_env`) and prints the
`export` lines the job script evaluates:

- MIG: claims free instances of the profile (listed by `nvidia-smi -L`), creating one with
  `nvidia-smi mig -cgi <profile> -C` on a MIG-enabled GPU when none is free, and exports
  `CUDA_VISIBLE_DEVICES=MIG-<uuid>`. A claim is a file named after the instance's UUID holding the
  pid of the job's shell; a claim whose pid is gone is free again.
- MPS: starts the node's MPS control daemon (`nvidia-cuda-mps-control -d`) if none is running.

Import-safe without a GPU: nothing runs until a function is called.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from suanli.spec.errors import ExecutorError

CLAIMS_DIR = Path(os.environ.get("SUANLI_SLICE_CLAIMS", "/tmp/suanli-slices"))
MPS_PIPE_DIR = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
_GPU_LINE = re.compile(r"^GPU (\d+): .*\(UUID: (GPU-[0-9a-fA-F-]+)\)")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[0-9a-fA-F-]+)\)")


@dataclass(frozen=True)
class MigDevice:
    gpu: int
    profile: str
    uuid: str


def parse_smi_list(text: str) -> list[MigDevice]:
    """The MIG devices in `nvidia-smi -L` output (R470+ format: `  MIG 1g.10gb Device 0: (UUID: MIG-…)`)."""
    devices, gpu = [], -1
    for line in text.splitlines():
        if match := _GPU_LINE.match(line):
            gpu = int(match.group(1))
        elif (match := _MIG_LINE.match(line)) and gpu >= 0:
            devices.append(MigDevice(gpu, match.group(1), match.group(3)))
    return devices


def _smi(*args: str) -> str:
    if shutil.which("nvidia-smi") is None:
        raise ExecutorError("nvidia-smi not found: this node has no NVIDIA driver, so no MIG slice")
    result = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ExecutorError(f"nvidia-smi {' '.join(args)}: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_claim(uuid: str, owner: int, claims: Path) -> bool:
    """Claim `uuid` for `owner` (atomic create); a stale claim (its owner gone) is taken over."""
    path = claims / uuid
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(path.read_text() or "0")
            except (FileNotFoundError, ValueError):
                holder = 0
            if holder and _alive(holder):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(owner))
        return True
    return False


def claim_mig(
    profile: str, count: int, owner: int, claims: Path = CLAIMS_DIR, list_devices: str | None = None
) -> list[str]:
    """UUIDs of `count` instances of `profile` now claimed by `owner`; instances are created when
    too few are free. ExecutorError naming the profile when the node cannot provide them."""
    claims.mkdir(parents=True, exist_ok=True)
    got: list[str] = []
    created = False
    while len(got) < count:
        devices = parse_smi_list(list_devices if list_devices is not None else _smi("-L"))
        for device in devices:
            if (
                device.profile == profile
                and device.uuid not in got
                and _try_claim(device.uuid, owner, claims)
            ):
                got.append(device.uuid)
                if len(got) == count:
                    return got
        if created or list_devices is not None:
            break
        _create_instances(profile, count - len(got), {d.gpu for d in devices})
        created = True
    for uuid in got:
        release(uuid, claims)
    raise ExecutorError(
        f"MIG {profile}: {count} instance(s) wanted, {len(got)} free or creatable on this node"
    )


def _create_instances(profile: str, count: int, mig_gpus: set[int]) -> None:
    """Create `count` GPU instances (with their default compute instance) on the first MIG-enabled GPUs
    that have room; GPUs already holding MIG devices are tried first."""
    enabled = _smi("--query-gpu=index,mig.mode.current", "--format=csv,noheader")
    gpus = [int(i) for i, mode in (line.split(", ") for line in enabled.splitlines()) if mode == "Enabled"]
    for gpu in sorted(gpus, key=lambda g: g not in mig_gpus):
        while count:
            try:
                _smi("mig", "-i", str(gpu), "-cgi", profile, "-C")
            except ExecutorError:
                break
            count -= 1


def release(uuid: str, claims: Path = CLAIMS_DIR) -> None:
    with contextlib.suppress(FileNotFoundError):
        (claims / uuid).unlink()


def ensure_mps_daemon(pipe_dir: Path = MPS_PIPE_DIR) -> bool:
    """Start the node's MPS control daemon unless one already listens in `pipe_dir`; True if started."""
    if (pipe_dir / "control").exists():
        return False
    if shutil.which("nvidia-cuda-mps-control") is None:
        raise ExecutorError("nvidia-cuda-mps-control not found: this node cannot run MPS shares")
    pipe_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir)}
    env.pop("CUDA_VISIBLE_DEVICES", None)  # the daemon serves every GPU of the node
    result = subprocess.run(["nvidia-cuda-mps-control", "-d"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ExecutorError(f"nvidia-cuda-mps-control -d: {(result.stderr or result.stdout).strip()}")
    return True


def node_exports(environ: dict[str, str], owner: int) -> dict[str, str]:
    """What the job's shell must export on this node for the grant in `environ`."""
    mode = environ.get("SUANLI_SLICE_MODE", "")
    if mode == "mig" and not environ.get("CUDA_VISIBLE_DEVICES", "").startswith("MIG-"):
        count = int(environ.get("SUANLI_SLICE_GPUS", "1"))
        return {"CUDA_VISIBLE_DEVICES": ",".join(claim_mig(environ["SUANLI_MIG_PROFILE"], count, owner))}
    if mode == "fraction":
        ensure_mps_daemon()
        return {"CUDA_MPS_PIPE_DIRECTORY": str(MPS_PIPE_DIR)}
    return {}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["env"]:
        print("usage: python -m suanli.runtime.slices env", file=sys.stderr)
        return 2
    try:
        exports = node_exports(dict(os.environ), os.getppid())
    except ExecutorError as exc:
        print(f"suanli slice: {exc}", file=sys.stderr)
        return 3
    for key, value in exports.items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
