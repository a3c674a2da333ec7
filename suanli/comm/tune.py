"""The selection in a form real NCCL can use: its example tuner plugin's CSV, or NCCL_ALGO/NCCL_PROTO.

NCCL can only run its own algorithms, so the rules come from the judge's side of the selection
(`select.nccl_best`): for each size the fastest algorithm NCCL offers, by our cost model, which may
differ from the pick of NCCL's own tuning model (`nccl_model.nccl_choice`).

- `tuner_csv`: the format of NCCL's example tuner plugin (NVIDIA/nccl v2.30.7-1
  plugins/tuner/example/nccl_tuner.conf and README.md):
  `collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks,numPipeOps,regBuff`,
  one line per run of sizes with the same choice; channels -1 keeps NCCL's channel count (the model
  does not choose channels), numPipeOps and regBuff -1 match any call. Load it with
  NCCL_TUNER_PLUGIN=<the built example plugin> NCCL_TUNER_CONFIG_FILE=<this file>.
- `env_settings`: NCCL_ALGO / NCCL_PROTO per collective (`AllReduce:tree,nvls_tree;AllGather:ring`,
  parsed by tuning.cc parseList, names as src/init.cc:52-55 ncclFuncStr/ncclAlgoStr/ncclProtoStr):
  they enable only the algorithms and protocols the selection uses at some size, and NCCL's tuner
  chooses among them per call. Coarser than the tuner file, but needs no plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanli.comm.select import nccl_best
from suanli.comm.topology import GroupLinks

MAX_BYTES = 4294967295  # the example plugin's "all sizes" upper bound
TUNER_HEADER = (
    "collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks,numPipeOps,regBuff"
)
# Suanli collective -> (tuner-file name, NCCL_ALGO prefix); all-to-all is send/recv, which NCCL does not tune
COLLECTIVE_NAMES = {
    "all_reduce": ("allreduce", "AllReduce"),
    "all_gather": ("allgather", "AllGather"),
    "reduce_scatter": ("reducescatter", "ReduceScatter"),
    "broadcast": ("broadcast", "Broadcast"),
}
# Suanli algorithm -> (tuner-file name, NCCL_ALGO name); the cost model's CollNet is NCCL's chain
ALGORITHM_NAMES = {
    "ring": ("ring", "Ring"),
    "tree": ("tree", "Tree"),
    "nvls": ("nvls", "NVLS"),
    "nvls_tree": ("nvls_tree", "NVLSTree"),
    "collnet": ("collnet_chain", "CollNetChain"),
    "pat": ("pat", "PAT"),
}
PROTOCOL_NAMES = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}


@dataclass(frozen=True)
class TunerRule:
    collective: str
    min_bytes: int
    max_bytes: int
    algorithm: str
    protocol: str
    n_nodes: int
    n_ranks: int

    def csv_line(self) -> str:
        coll = COLLECTIVE_NAMES[self.collective][0]
        algo = ALGORITHM_NAMES[self.algorithm][0]
        return (
            f"{coll},{self.min_bytes},{self.max_bytes},{algo},{self.protocol},-1,"
            f"{self.n_nodes},{self.n_ranks},-1,-1"
        )


def tuner_rules(g: GroupLinks) -> list[TunerRule]:
    """Size ranges (2^(k-1), 2^k] for k = 0..32, each timed at its upper end, merged where the choice
    does not change; the last range runs to the plugin's 4294967295."""
    rules: list[TunerRule] = []
    for collective in COLLECTIVE_NAMES:
        for k in range(33):
            low, high = (0 if k == 0 else 2 ** (k - 1) + 1), min(2**k, MAX_BYTES)
            choice = nccl_best(collective, float(high), g)
            last = rules[-1] if rules else None
            if (
                last is not None
                and last.collective == collective
                and (last.algorithm, last.protocol) == (choice.algorithm, choice.protocol)
            ):
                rules[-1] = TunerRule(
                    collective, last.min_bytes, high, last.algorithm, last.protocol, g.nodes, g.n_ranks
                )
            else:
                rules.append(
                    TunerRule(collective, low, high, choice.algorithm, choice.protocol, g.nodes, g.n_ranks)
                )
        end = rules[-1]
        rules[-1] = TunerRule(
            collective, end.min_bytes, MAX_BYTES, end.algorithm, end.protocol, end.n_nodes, end.n_ranks
        )
    return rules


def tuner_csv(groups: list[GroupLinks], title: str) -> str:
    """The example tuner plugin's config file for these communicator shapes."""
    lines = [
        f"# {title}",
        "# written by `suanli comm tune --emit nccl-tuner` (NCCL v2.30.7-1 example tuner format)",
    ]
    lines.append(f"# Format: {TUNER_HEADER}")
    for g in groups:
        lines.append(f"# {g.n_ranks} ranks, {g.nodes} nodes x {g.ranks_per_node}")
        lines += [rule.csv_line() for rule in tuner_rules(g)]
    return "\n".join(lines) + "\n"


def env_settings(groups: list[GroupLinks]) -> dict[str, str]:
    """NCCL_ALGO and NCCL_PROTO enabling, per collective, what the selection uses at some size."""
    algos: dict[str, list[str]] = {}
    protos: dict[str, list[str]] = {}
    for g in groups:
        for rule in tuner_rules(g):
            prefix = COLLECTIVE_NAMES[rule.collective][1]
            algo, proto = ALGORITHM_NAMES[rule.algorithm][1], PROTOCOL_NAMES[rule.protocol]
            algos.setdefault(prefix, [])
            protos.setdefault(prefix, [])
            if algo not in algos[prefix]:
                algos[prefix].append(algo)
            if proto not in protos[prefix]:
                protos[prefix].append(proto)
    return {
        "NCCL_ALGO": ";".join(f"{c}:{','.join(a)}" for c, a in algos.items()),
        "NCCL_PROTO": ";".join(f"{c}:{','.join(p)}" for c, p in protos.items()),
    }
