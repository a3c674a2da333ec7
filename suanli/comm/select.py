"""Pick the fastest algorithm for one collective call, and judge it against NCCL fairly.

Every algorithm is timed with the same cost models (`comm.cost`) and the same latency table (NCCL
v2.30.7-1 tuning.cc): linear-step algorithms at NCCL's ring per-step latency, log-step ones (trees,
recursive halving/doubling, Bruck, PAT) at its tree per-step latency. The judge (`nccl_best`) is the
best of the algorithms NCCL itself offers for the call, PAT included, under that same model, so a
reported gain is one an algorithm NCCL lacks earns on the model, never a difference between two
models. It is a *modelled* gain. `nccl_baseline` is what NCCL's own tuner would pick (used to check
the model against nccl-tests, which run NCCL's pick).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from suanli.comm import cost
from suanli.comm.nccl_model import NCCL_ALGORITHMS, nccl_choice, nccl_supports
from suanli.comm.topology import GroupLinks
from suanli.spec.errors import SpecError

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast")

CostFn = Callable[[float, GroupLinks, cost.Proto], float]

# collective -> algorithm -> (latency family, payload-share family, cost function)
ALGORITHMS: dict[str, dict[str, tuple[str, str, CostFn]]] = {
    "all_reduce": {
        "ring": ("ring", "ring", cost.ring_all_reduce_s),
        "tree": ("tree", "tree", cost.double_binary_tree_all_reduce_s),
        "nvls": ("nvls", "ring", cost.nvls_all_reduce_s),
        "nvls_tree": ("nvls_tree", "ring", cost.nvls_tree_all_reduce_s),
        "collnet": ("collnet", "ring", cost.in_network_all_reduce_s),
        "rabenseifner": ("tree", "ring", cost.rabenseifner_all_reduce_s),
        "hierarchical": ("ring", "ring", cost.hierarchical_all_reduce_s),
    },
    "all_gather": {
        "ring": ("ring", "ring", cost.ring_all_gather_s),
        "nvls": ("nvls", "ring", cost.nvls_all_gather_s),
        "pat": ("pat", "ring", cost.recursive_doubling_all_gather_s),
        "recursive_doubling": ("tree", "ring", cost.recursive_doubling_all_gather_s),
        "bruck": ("tree", "ring", cost.bruck_all_gather_s),
        "hierarchical": ("ring", "ring", cost.hierarchical_all_gather_s),
    },
    "reduce_scatter": {
        "ring": ("ring", "ring", cost.ring_reduce_scatter_s),
        "nvls": ("nvls", "ring", cost.nvls_reduce_scatter_s),
        "pat": ("pat", "ring", cost.recursive_halving_reduce_scatter_s),
        "recursive_halving": ("tree", "ring", cost.recursive_halving_reduce_scatter_s),
        "hierarchical": ("ring", "ring", cost.hierarchical_reduce_scatter_s),
    },
    "broadcast": {
        "ring": ("ring", "ring", cost.ring_broadcast_s),
        "binomial": ("tree", "ring", cost.binomial_broadcast_s),
        "scatter_all_gather": ("ring", "ring", cost.scatter_all_gather_broadcast_s),
    },
    "all_to_all": {
        "direct": ("ring", "ring", cost.direct_all_to_all_s),
        "hierarchical": ("ring", "ring", cost.hierarchical_all_to_all_s),
    },
}

_NCCL_ONLY = {"nvls", "nvls_tree", "collnet", "pat"}


@dataclass(frozen=True)
class Choice:
    """One algorithm for one call, with nccl-tests' algbw and busbw (GB/s)."""

    collective: str
    algorithm: str
    protocol: str
    message_bytes: float
    time_s: float
    algbw_gb_s: float
    busbw_gb_s: float


def busbw_factor(collective: str, n_ranks: int) -> float:
    """nccl-tests PERFORMANCE.md: busbw = algbw x this factor."""
    if collective == "all_reduce":
        return 2 * (n_ranks - 1) / n_ranks
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n_ranks - 1) / n_ranks
    return 1.0


def check_request(collective: str, message_bytes: float) -> None:
    if collective not in COLLECTIVES:
        raise SpecError(f"collective: unknown {collective!r}, expected one of {', '.join(COLLECTIVES)}")
    if not message_bytes > 0:
        raise SpecError(f"message size: must be > 0 bytes, got {message_bytes!r}")


def applicable(collective: str, algorithm: str, protocol: str, g: GroupLinks) -> bool:
    """Hardware algorithms need their hardware; NVLS/CollNet/PAT run only the Simple protocol, PAT
    only with one rank per node; LL128 only on NVIDIA NVLink groups (as NCCL enables them)."""
    if algorithm in _NCCL_ONLY:
        multi_node_nvls = algorithm == "nvls" and collective != "all_reduce" and g.nodes > 1
        return nccl_supports(algorithm, protocol, g) and not multi_node_nvls
    return not (protocol == "ll128" and not g.nvidia_nvlink)


def _choice(collective: str, algorithm: str, protocol: str, message_bytes: float, g: GroupLinks) -> Choice:
    family, share, fn = ALGORITHMS[collective][algorithm]
    time_s = fn(message_bytes, g, cost.protocol(family, protocol, g, share))
    algbw = message_bytes / time_s / 1e9
    return Choice(
        collective,
        algorithm,
        protocol,
        message_bytes,
        time_s,
        algbw,
        algbw * busbw_factor(collective, g.n_ranks),
    )


def evaluate(collective: str, algorithm: str, protocol: str, message_bytes: float, g: GroupLinks) -> Choice:
    """Time one (algorithm, protocol) for this call with our cost models."""
    check_request(collective, message_bytes)
    if algorithm not in ALGORITHMS[collective]:
        known = ", ".join(ALGORITHMS[collective])
        raise SpecError(f"algorithm: {algorithm!r} is not an algorithm for {collective} (known: {known})")
    return _choice(collective, algorithm, protocol, message_bytes, g)


@lru_cache(maxsize=4096)
def _options(
    collective: str, g: GroupLinks, nccl_only: bool
) -> tuple[tuple[str, str, CostFn, cost.Proto], ...]:
    offered = NCCL_ALGORITHMS[collective] if nccl_only else ALGORITHMS[collective]
    return tuple(
        (algorithm, protocol, fn, cost.protocol(family, protocol, g, share))
        for algorithm, (family, share, fn) in ALGORITHMS[collective].items()
        if algorithm in offered
        for protocol in cost.PROTOCOLS
        if applicable(collective, algorithm, protocol, g)
    )


def _fastest(collective: str, message_bytes: float, g: GroupLinks, nccl_only: bool) -> Choice:
    check_request(collective, message_bytes)
    options = _options(collective, g, nccl_only)
    best = min(options, key=lambda option: option[2](message_bytes, g, option[3]))
    return _choice(collective, best[0], best[1], message_bytes, g)


@lru_cache(maxsize=65536)
def select(collective: str, message_bytes: float, g: GroupLinks) -> Choice:
    """The fastest (algorithm, protocol) by our cost models, over every algorithm we know."""
    return _fastest(collective, message_bytes, g, nccl_only=False)


@lru_cache(maxsize=65536)
def nccl_best(collective: str, message_bytes: float, g: GroupLinks) -> Choice:
    """The judge: the fastest of the algorithms NCCL offers (PAT included), by the same cost models."""
    return _fastest(collective, message_bytes, g, nccl_only=True)


@lru_cache(maxsize=65536)
def nccl_baseline(collective: str, message_bytes: float, g: GroupLinks) -> Choice:
    """NCCL's own pick (its tuning model), timed with our cost models."""
    check_request(collective, message_bytes)
    algorithm, protocol = nccl_choice(collective, message_bytes, g)
    return _choice(collective, algorithm, protocol, message_bytes, g)


def gain(collective: str, message_bytes: float, g: GroupLinks) -> float:
    """Modelled speed-up of our pick over the best NCCL algorithm under the same cost model:
    time(nccl_best) / time(ours) - 1 (0.10 = 10 % faster; 0 when NCCL's own algorithms are best)."""
    return nccl_best(collective, message_bytes, g).time_s / select(collective, message_bytes, g).time_s - 1


BENCH_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
"""The collectives `suanli comm bench` executes (ours next to the built-ins)."""


def sizes_bytes(min_bytes: int, max_bytes: int) -> list[int]:
    """Powers of two from min to max (nccl-tests -f 2)."""
    if min_bytes <= 0 or max_bytes < min_bytes:
        raise SpecError(f"sizes: need 0 < min_bytes <= max_bytes, got {min_bytes} and {max_bytes}")
    sizes, size = [], min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= 2
    return sizes
