"""fused_libs_graph.py ported to CPU by hand, the reference the automatic port is judged against."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Adam

DIM, HEADS, SEQ, STEPS = 32, 4, 8, 6


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.mlp = nn.Sequential(nn.Linear(DIM, 2 * DIM), nn.GELU(), nn.Linear(2 * DIM, DIM))
        self.out = nn.Linear(DIM, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (z.reshape(b, t, HEADS, DIM // HEADS) for z in self.qkv(x).split(DIM, dim=2))
        x = x + attention(q, k, v).reshape(b, t, DIM)
        return self.out(x + self.mlp(x)).mean(dim=(1, 2))


def main() -> None:
    torch.manual_seed(7)
    net = Net()
    torch.randn(4, SEQ, DIM, requires_grad=True)  # the graph's sample input draws from the generator too
    optimizer = Adam(net.parameters(), lr=1e-2)
    for step in range(STEPS):
        x = torch.randn(4, SEQ, DIM)
        target = torch.randn(4)
        loss = F.mse_loss(net(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
