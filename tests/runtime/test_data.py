"""Batches: a pure function of the step, split across data-parallel ranks without overlap or loss."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.runtime.config import load_config
from suanli.runtime.data import BatchLoader, SyntheticTokens, TokenFile
from suanli.runtime.train import ProcessEnv, run
from suanli.spec import SpecError


def step_tokens(loader: BatchLoader, step: int) -> torch.Tensor:
    return torch.cat([inputs for inputs, _ in loader.micro_batches(step)])


@settings(max_examples=15, deadline=None)
@given(world=st.sampled_from([1, 2, 4]), micro=st.sampled_from([1, 2]), step=st.integers(0, 1000))
def test_ranks_together_see_exactly_the_single_process_batch(world: int, micro: int, step: int) -> None:
    source = SyntheticTokens(vocab=97, seed=3)
    single = step_tokens(BatchLoader(source, 16, 8, 8), step)
    ranks = [step_tokens(BatchLoader(source, 16, 8, micro, rank, world), step) for rank in range(world)]
    torch.testing.assert_close(torch.cat(ranks), single)


def test_targets_are_inputs_shifted_by_one() -> None:
    inputs, targets = next(BatchLoader(SyntheticTokens(vocab=50), 10, 2, 2).micro_batches(5))
    torch.testing.assert_close(inputs[:, 1:], targets[:, :-1])


def test_resuming_at_a_step_gives_the_same_batch_as_running_through() -> None:
    source = SyntheticTokens(vocab=50, seed=1)
    fresh = BatchLoader(source, 8, 4, 2)
    resumed = BatchLoader(SyntheticTokens(vocab=50, seed=1), 8, 4, 2)
    torch.testing.assert_close(step_tokens(fresh, 7), step_tokens(resumed, 7))
    assert not torch.equal(step_tokens(fresh, 7), step_tokens(fresh, 8))


def test_batch_that_does_not_divide_is_refused_in_one_line() -> None:
    with pytest.raises(SpecError, match="multiple of dp"):
        BatchLoader(SyntheticTokens(vocab=50), 8, global_batch=6, micro_batch=2, rank=0, world_size=4)


def test_token_file_is_read_in_windows(tmp_path: Path) -> None:
    path = tmp_path / "tokens.bin"
    np.arange(100, dtype=np.uint16).tofile(path)
    source = TokenFile(path, vocab=100)
    np.testing.assert_array_equal(source.sample(1, 10), np.arange(10, 20))
    np.testing.assert_array_equal(source.sample(10, 10), np.arange(0, 10))  # wraps around


def test_token_file_errors_name_the_cause(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        TokenFile(tmp_path / "missing.bin", vocab=10)
    path = tmp_path / "tokens.bin"
    np.arange(100, dtype=np.uint16).tofile(path)
    with pytest.raises(SpecError, match="token id 19 >= model vocab 10"):
        TokenFile(path, vocab=10).sample(1, 10)


def test_a_run_learns_from_a_token_file(write_config, tmp_path: Path) -> None:
    (np.arange(64 * 40, dtype=np.uint16) % 256).tofile(tmp_path / "tokens.bin")  # counting: next = this + 1
    data = {"kind": "file", "path": "tokens.bin", "dtype": "uint16"}
    config = load_config(write_config(data=data, steps=10, layout={"dp": 1, "micro_batch": 8}))
    losses = run(config, env=ProcessEnv()).losses
    assert losses[-1] < losses[0] - 1.0
