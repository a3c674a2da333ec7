"""gpt_events.py ported to CPU by hand, the reference the automatic port is judged against."""

import time

import torch
import torch.nn.functional as F
from torch import nn

device = "cpu"
ptdtype = torch.bfloat16
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
    model = GPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    data = torch.randint(0, VOCAB, (STEPS, 8, BLOCK + 1))
    for step in range(STEPS):
        x = data[step, :, :-1]
        y = data[step, :, 1:]
        started = time.perf_counter()
        with torch.autocast(device_type="cpu", dtype=ptdtype):
            loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        assert time.perf_counter() >= started
        print(f"step {step} loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
