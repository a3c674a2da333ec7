"""A classic CUDA training script: .cuda() calls, cudnn flags, AMP, and a DDP branch on nccl.

Written for the tests of `suanli port`: it runs on an NVIDIA GPU as is and fails on a CPU-only machine.
Lines marked `# port: ...` are the ones the port must report (`# port[cpu]: ...` only for --target cpu).
"""

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

torch.backends.cudnn.benchmark = True  # port: no effect off NVIDIA
torch.backends.cudnn.deterministic = False  # port: no effect off NVIDIA
torch.backends.cuda.matmul.allow_tf32 = True  # port: no effect off NVIDIA

STEPS = 8


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def main() -> None:
    distributed = "WORLD_SIZE" in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if distributed:
        dist.init_process_group(backend="nccl")  # port: collective backend
    torch.cuda.set_device(local_rank)  # port: device API

    torch.manual_seed(0)
    torch.cuda.manual_seed_all(0)  # port: device RNG
    images = torch.randn(STEPS * 16, 3, 16, 16)
    labels = torch.randint(0, 10, (STEPS * 16,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, pin_memory=True)  # port: pinned memory

    model = build_model().cuda()  # port: .cuda()
    if distributed:
        model = DistributedDataParallel(model, device_ids=[local_rank])  # port[cpu]: no device ids on CPU
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.cuda.amp.GradScaler()  # port: AMP

    for step, (x, y) in enumerate(loader):
        x = x.cuda(non_blocking=True)  # port: .cuda()
        y = y.cuda(non_blocking=True)  # port: .cuda()
        with torch.cuda.amp.autocast():  # port: AMP
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        print(f"step {step} loss {loss.item():.6f}")

    torch.cuda.synchronize()  # port: device API
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
