"""`suanli comm tune`: the selection as NCCL's example tuner plugin config and as NCCL_ALGO/NCCL_PROTO.

The format checked here is NCCL v2.30.7-1's plugins/tuner/example (README.md and nccl_tuner.conf):
`collective_type,min_bytes,max_bytes,algorithm,protocol,channels,nNodes,nRanks[,numPipeOps[,regBuff]]`,
`#` comments; and the NCCL_ALGO/NCCL_PROTO syntax parsed by src/graph/tuning.cc parseList with the
names of src/init.cc:52-55."""

from __future__ import annotations

import itertools
from pathlib import Path

from typer.testing import CliRunner

from suanli.cli import app
from suanli.comm.select import nccl_best
from suanli.comm.topology import group_links, pool_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clusters"
TUNER_COLLECTIVES = {"broadcast", "reduce", "allgather", "reducescatter", "allreduce"}
TUNER_ALGORITHMS = {"tree", "ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree", "pat"}
TUNER_PROTOCOLS = {"ll", "ll128", "simple"}
NCCL_FUNCS = {"broadcast", "reduce", "allgather", "reducescatter", "allreduce"}
NCCL_ALGOS = {"tree", "ring", "collnetdirect", "collnetchain", "nvls", "nvlstree", "pat"}
NCCL_PROTOS = {"ll", "ll128", "simple"}
MAX_BYTES = 4294967295


def parse_tuner_config(text: str) -> list[dict]:
    """Read a config the way the example plugin does; raise on any line it would reject."""
    rules = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        assert len(fields) in (8, 9, 10), line
        assert all(f == f.strip() for f in fields), "no spaces after commas"
        coll, low, high, algo, proto, channels, nodes, ranks = fields[:8]
        assert coll in TUNER_COLLECTIVES and algo in TUNER_ALGORITHMS and proto in TUNER_PROTOCOLS, line
        low_b, high_b = int(low), int(high)
        assert 0 <= low_b <= high_b <= MAX_BYTES
        assert int(channels) == -1 or int(channels) > 0
        assert all(int(x) == -1 or int(x) > 0 for x in (nodes, ranks, *fields[8:9]))
        assert all(int(x) in (-1, 0, 1) for x in fields[9:10])
        rules.append(
            {"coll": coll, "min": low_b, "max": high_b, "algo": algo, "proto": proto, "shape": (nodes, ranks)}
        )
    return rules


def test_tuner_config_follows_the_example_plugin_format_and_covers_every_size() -> None:
    cluster = EXAMPLES / "hgx-h100-1024.yaml"
    result = CliRunner().invoke(
        app, ["comm", "tune", "--cluster", str(cluster), "--ranks", "8", "--ranks", "1024"]
    )
    assert result.exit_code == 0, result.output
    rules = parse_tuner_config(result.stdout)
    shapes = {(r["coll"], r["shape"]) for r in rules}
    assert {
        ("allreduce", ("1", "8")),
        ("allreduce", ("128", "1024")),
        ("allgather", ("128", "1024")),
    } <= shapes
    for coll, shape in shapes:  # contiguous ranges from 0 to the plugin's maximum, one choice per size
        ranges = sorted((r["min"], r["max"]) for r in rules if (r["coll"], r["shape"]) == (coll, shape))
        assert ranges[0][0] == 0 and ranges[-1][1] == MAX_BYTES
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))


def test_tuner_rules_are_the_best_nccl_algorithm_by_the_model(hgx_cluster) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app, ["comm", "tune", "--cluster", str(EXAMPLES / "hgx-h100-1024.yaml"), "--ranks", "1024"]
    )
    links = group_links(pool_model(hgx_cluster, "h100"), 1024, 8)
    for rule in parse_tuner_config(result.stdout):
        if rule["coll"] != "allreduce":
            continue
        choice = nccl_best("all_reduce", float(rule["max"] if rule["max"] < MAX_BYTES else 2**32), links)
        assert (choice.algorithm, choice.protocol) == (rule["algo"], rule["proto"])


def test_env_emits_nccl_algo_and_proto_in_nccls_per_collective_syntax(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "nccl.env"
    result = CliRunner().invoke(
        app,
        [
            "comm",
            "tune",
            "--cluster",
            str(EXAMPLES / "hgx-h100-1024.yaml"),
            "--emit",
            "env",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    settings = dict(line.removeprefix("export ").split("=", 1) for line in out.read_text().splitlines())
    assert settings.keys() == {"NCCL_ALGO", "NCCL_PROTO"}
    for key, names in (("NCCL_ALGO", NCCL_ALGOS), ("NCCL_PROTO", NCCL_PROTOS)):
        for entry in settings[key].strip('"').split(";"):
            prefix, elements = entry.split(":")
            assert prefix.lower() in NCCL_FUNCS
            assert elements and {e.lower() for e in elements.split(",")} <= names, entry


def test_tune_bad_emit_is_one_line() -> None:
    result = CliRunner().invoke(
        app, ["comm", "tune", "--cluster", str(EXAMPLES / "hgx-h100-1024.yaml"), "--emit", "yaml"]
    )
    assert result.exit_code != 0 and "--emit: expected nccl-tuner or env" in result.output
