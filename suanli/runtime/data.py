"""Token batches from a tokenized file (np.memmap) or a synthetic stream.

Sample `i` of the run is a pure function of `i`, so a run resumes from a step number alone: the
global batch of step `s` is samples `[s * B, (s + 1) * B)`, and data-parallel rank `r` of `W` takes
the `r`-th contiguous slice of it. One process with gradient accumulation and `W` processes with
data parallelism therefore see exactly the same tokens. Mixed-speed data parallelism gives ranks
slices of different sizes (`shares`), still covering the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from suanli.spec.errors import SpecError


class TokenSource(Protocol):
    vocab: int

    def sample(self, index: int, length: int) -> np.ndarray:
        """`length` token ids for sample `index`."""
        ...


class SyntheticTokens:
    """Arithmetic sequences modulo the vocabulary with a random start and stride per sample.

    The next token follows from the previous two, so a model that learns loses its loss quickly; a
    stream that cannot be learned would make "loss decreases" an empty test.
    """

    def __init__(self, vocab: int, seed: int = 0, max_stride: int = 2) -> None:
        self.vocab, self.seed, self.max_stride = vocab, seed, min(max_stride, vocab - 1)

    def sample(self, index: int, length: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        start = rng.integers(0, self.vocab)
        stride = rng.integers(1, self.max_stride + 1)
        return (start + stride * np.arange(length, dtype=np.int64)) % self.vocab


class TokenFile:
    """A flat binary file of token ids (the nanoGPT/Megatron `.bin` layout), read through np.memmap."""

    def __init__(self, path: str | Path, vocab: int, dtype: str = "uint16") -> None:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"data.path: token file {path} not found")
        self.path, self.vocab = path, vocab
        self.tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")

    def sample(self, index: int, length: int) -> np.ndarray:
        windows = len(self.tokens) // length
        if windows == 0:
            raise SpecError(f"data.path: {self.path} holds {len(self.tokens)} tokens, fewer than {length}")
        start = (index % windows) * length
        window = np.asarray(self.tokens[start : start + length], dtype=np.int64)
        if window.max() >= self.vocab:
            raise SpecError(
                f"data.path: {self.path} has token id {int(window.max())} >= model vocab {self.vocab}"
            )
        return window


class BatchLoader:
    """This rank's micro-batches of `(inputs, targets)` for one optimizer step."""

    def __init__(
        self,
        source: TokenSource,
        seq_len: int,
        global_batch: int,
        micro_batch: int,
        rank: int = 0,
        world_size: int = 1,
        shares: list[int] | None = None,
    ) -> None:
        if shares is None:
            per_rank, rest = divmod(global_batch, world_size)
            if rest or per_rank % micro_batch:
                raise SpecError(
                    f"global_batch_size {global_batch} must be a multiple of dp ({world_size}) x micro_batch "
                    f"({micro_batch})"
                )
            shares = [per_rank] * world_size
        odd = next((s for s in shares if s <= 0 or s % micro_batch), None)
        if len(shares) != world_size or sum(shares) != global_batch or odd is not None:
            raise SpecError(
                f"batch shares {shares}: need {world_size} positive multiples of micro_batch ({micro_batch}) "
                f"summing to global_batch_size {global_batch}"
            )
        self.source, self.seq_len, self.global_batch = source, seq_len, global_batch
        self.micro_batch, self.rank, self.per_rank = micro_batch, rank, shares[rank]
        self.offset = sum(shares[:rank])

    @property
    def accumulation_steps(self) -> int:
        return self.per_rank // self.micro_batch

    def micro_batches(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        first = step * self.global_batch + self.offset
        for offset in range(0, self.per_rank, self.micro_batch):
            rows = [self.source.sample(first + offset + i, self.seq_len + 1) for i in range(self.micro_batch)]
            tokens = torch.from_numpy(np.stack(rows))
            yield tokens[:, :-1], tokens[:, 1:]
