"""Properties: every valid spec loads; every single-field mutation to a value of the wrong kind is
refused with one line per problem, naming the file and the field."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.spec import CATALOG, Cluster, JobSpec, SpecError, validate

node_slugs = st.sampled_from([n.slug for n in CATALOG.node_types])
pool = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
        "node_type": node_slugs,
        "nodes": st.integers(1, 4096),
    }
)
clusters = st.fixed_dictionaries(
    {
        "name": st.text(min_size=1, max_size=20),
        "pools": st.lists(pool, min_size=1, max_size=5, unique_by=lambda p: p["name"]),
        "fabric": st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["fat-tree", "rail-optimized"]),
                "oversubscription": st.floats(1, 8),
                "hop_latency_us": st.floats(0.05, 5),
            }
        ),
    }
)
jobs = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
        "model": st.sampled_from([m.slug for m in CATALOG.models]),
        "resources": st.fixed_dictionaries(
            {"accelerators": st.sampled_from(["H100:8", "A100:16", "any:4", "64GB..:8", "ascend-910b:8..64"])}
        ),
        "num_nodes": st.one_of(st.just("auto"), st.integers(1, 512)),
        "training": st.fixed_dictionaries(
            {
                "seq_len": st.integers(1, 131072),
                "global_batch_size": st.integers(1, 8192),
                "total_tokens": st.sampled_from(["1T", "300B", 10**9]),
            }
        ),
        "priority": st.integers(-1000, 1000),
    }
)


@settings(max_examples=60, deadline=None)
@given(clusters)
def test_valid_clusters_load(data):
    cluster = validate(Cluster, data, source="c.yaml")
    assert cluster.total_nodes == sum(p["nodes"] for p in data["pools"])


@settings(max_examples=60, deadline=None)
@given(jobs)
def test_valid_jobs_load(data):
    assert validate(JobSpec, data, source="j.yaml").name == data["name"]


# Values of a kind no field of that kind accepts: a number field takes no word, a text field no
# mapping or list, a section no scalar. (Not None, 0 or -4: optional fields, `priority` take those.)
WRONG_FOR_NUMBER = st.sampled_from(["many", {"x": [1]}, [1, 2]])
WRONG_FOR_TEXT = st.sampled_from([{"x": [1]}, [1, 2]])
WRONG_FOR_SECTION = st.sampled_from([-4, "many"])


def _wrong_value(original: object, draw) -> object:
    if isinstance(original, dict | list):
        return draw(WRONG_FOR_SECTION)
    if isinstance(original, str):
        return draw(WRONG_FOR_TEXT)
    return draw(WRONG_FOR_NUMBER)


def _mutate(data: dict, draw) -> tuple[dict, str]:
    """Replace one leaf or section of `data` with a value of the wrong kind; return the mutated
    copy and its path."""
    data = copy.deepcopy(data)
    node, path = data, ""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else key)
        if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        node[key] = _wrong_value(node[key], draw)
        return data, path


def _assert_one_line_per_problem(message: str, source: str, mutated_path: str) -> None:
    """Each line is `SOURCE: field.path: what is wrong`, and the mutated field (or its parent,
    or the pool it broke) is named."""
    assert "Traceback" not in message
    for line in message.splitlines():
        assert line.startswith(f"{source}: ") and line.count(": ") >= 1, line
    top = mutated_path.split(".")[0].split("[")[0]
    assert top in message or "unknown" in message, (mutated_path, message)


@settings(max_examples=150, deadline=None)
@given(clusters, st.data())
def test_mutated_clusters_fail_with_one_line_naming_the_file(data, draw):
    mutated, path = _mutate(data, draw.draw)
    with pytest.raises(SpecError) as refused:
        validate(Cluster, mutated, source="c.yaml")
    _assert_one_line_per_problem(str(refused.value), "c.yaml", path)


@settings(max_examples=150, deadline=None)
@given(jobs, st.data())
def test_mutated_jobs_fail_with_one_line_naming_the_file(data, draw):
    mutated, path = _mutate(data, draw.draw)
    with pytest.raises(SpecError) as refused:
        validate(JobSpec, mutated, source="j.yaml")
    _assert_one_line_per_problem(str(refused.value), "j.yaml", path)
