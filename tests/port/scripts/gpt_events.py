"""A GPT-style CUDA script (nanoGPT's habits): the device chosen through a variable, bf16/fp16 autocast,
fused AdamW, CUDA events for step timing and the allocator's peak for memory.

Written for the tests of `suanli port`. Lines marked `# port: ...` are the ones the port must report.
"""

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # port: visible devices
device = "cuda" if torch.cuda.is_available() else "cpu"  # port: device string and probe
device_type = "cuda" if "cuda" in device else "cpu"  # port: device strings
ptdtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16  # port: bf16 probe
BLOCK, VOCAB, EMBD, HEADS, STEPS = 16, 64, 32, 4, 6


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(EMBD)
        self.qkv = nn.Linear(EMBD, 3 * EMBD)
        self.proj = nn.Linear(EMBD, EMBD)
        self.ln2 = nn.LayerNorm(EMBD)
        self.mlp = nn.Sequential(nn.Linear(EMBD, 4 * EMBD), nn.GELU(), nn.Linear(4 * EMBD, EMBD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(EMBD, dim=2)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, EMBD)
        self.pos = nn.Embedding(BLOCK, EMBD)
        self.block = Block()
        self.head = nn.Linear(EMBD, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        logits = self.head(self.block(self.tok(idx) + self.pos(pos)))
        return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))


def main() -> None:
    torch.manual_seed(1337)
    model = GPT().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)  # port: fused optimizer
    data = torch.randint(0, VOCAB, (STEPS, 8, BLOCK + 1))
    print(f"device: {torch.cuda.get_device_name()} x{torch.cuda.device_count()}")  # port: device queries
    start = torch.cuda.Event(enable_timing=True)  # port: timing event
    end = torch.cuda.Event(enable_timing=True)  # port: timing event
    for step in range(STEPS):
        x = data[step, :, :-1].to(device)
        y = data[step, :, 1:].to(device)
        start.record()
        with torch.autocast(device_type=device_type, dtype=ptdtype):
            loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end.record()
        torch.cuda.synchronize()  # port: device API
        elapsed_ms = start.elapsed_time(end)
        assert elapsed_ms >= 0 and math.isfinite(elapsed_ms)
        print(f"step {step} loss {loss.item():.6f}")
    print(f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")  # port: allocator stats
    torch.cuda.empty_cache()  # port: allocator


if __name__ == "__main__":
    main()
