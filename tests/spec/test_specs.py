"""Specs load from YAML, round-trip, and reject bad input with one line naming the field."""

import pytest
import yaml

from suanli.spec import Cluster, JobSpec, ModelSpec, SpecError, dump_yaml, load, validate
from suanli.spec.detect import load_any
from suanli.spec.units import parse_count, parse_duration_s

SPEC_EXAMPLE_DIRS = ("clusters", "jobs", "models")


def _spec_examples(examples):
    return sorted(path for folder in SPEC_EXAMPLE_DIRS for path in (examples / folder).glob("*.yaml"))


def test_example_specs_load(examples):
    for path in _spec_examples(examples):
        kind, _ = load_any(path)
        assert kind in {"cluster", "job", "model"}, path


@pytest.mark.parametrize("model_type", [Cluster, JobSpec, ModelSpec])
def test_yaml_round_trip(examples, model_type):
    for path in _spec_examples(examples):
        _, spec = load_any(path)
        if not isinstance(spec, model_type):
            continue
        again = validate(model_type, yaml.safe_load(dump_yaml(spec)))
        assert again == spec


def test_the_issue_example_error(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "name: c\npools:\n"
        "- {name: a, node_type: hgx-h100, nodes: 2}\n"
        "- {name: b, node_type: hgx-a100, nodes: -4}\n"
    )
    with pytest.raises(SpecError) as err:
        load(Cluster, path)
    assert str(err.value) == "cluster.yaml: pools[1].nodes: must be > 0, got -4"


def test_unknown_node_type_names_the_pool_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\npools:\n- {name: a, node_type: hgx-h10, nodes: 2}\n")
    with pytest.raises(
        SpecError, match=r"^c.yaml: pools\[0\].node_type: unknown node type 'hgx-h10'; did you mean"
    ):
        load(Cluster, path)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: x\nresources: [\n")
    with pytest.raises(SpecError, match=r"^job.yaml:3:1: invalid YAML"):
        load(JobSpec, path)


def test_missing_file():
    with pytest.raises(SpecError, match=r"nope\.yaml: file not found"):
        load(JobSpec, "nope.yaml")


def test_unknown_field_is_named(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: x\nrun: echo\nresoures: {}\n")
    with pytest.raises(SpecError, match=r"^job.yaml: resoures: is not a known field$"):
        load(JobSpec, path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("H100:8", [("h100", None, 8, None)]),
        ("any:4", [(None, None, 4, None)]),
        ("64GB..:8", [(None, 64.0, 8, None)]),
        ("A100:8..64", [("a100", None, 8, 64)]),
        ({"H100": 8, "A100": 16}, [("h100", None, 8, None), ("a100", None, 16, None)]),
        (["H100:8", "mi300x:8"], [("h100", None, 8, None), ("mi300x", None, 8, None)]),
    ],
)
def test_accelerator_request_forms(text, expected):
    job = JobSpec.model_validate({"name": "j", "run": "true", "resources": {"accelerators": text}})
    got = [(r.name, r.min_memory_gb, r.count, r.count_max) for r in job.resources.accelerators]
    assert got == expected


def test_job_units_and_catalog_model():
    job = JobSpec.model_validate(
        {
            "name": "j",
            "model": "Llama3.1-8B",
            "training": {"total_tokens": "15T", "global_batch_size": 16},
            "walltime": "1-02:00:00",
            "checkpoint": {"interval": "30m"},
            "sharing": {"mig": "1g.10gb"},
        }
    )
    assert job.training.total_tokens == 15 * 10**12
    assert job.walltime_s == 26 * 3600
    assert job.checkpoint.interval_s == 1800
    assert job.sharing.mode == "mig"
    assert job.resolved_model().slug == "llama3.1-8b"


def test_a_job_needs_something_to_run():
    with pytest.raises(SpecError, match="needs a `run` command or a `model`"):
        validate(JobSpec, {"name": "j"}, source="j.yaml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("01:30:00", 5400), ("10:00", 600)],
)
def test_durations(value, seconds):
    assert parse_duration_s(value) == seconds


def test_counts():
    assert parse_count("300B") == 300 * 10**9
    assert parse_count("2.5k") == 2500
    with pytest.raises(ValueError):
        parse_count("lots")
