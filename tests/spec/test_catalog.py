"""The catalog is data with sources; derived figures match what the publishers state."""

import csv
import io

import pytest

from suanli.spec import CATALOG, SpecError
from suanli.spec.datasets import read_text


def _reference_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_text("accelerators/accelerators.csv"))))


def _published() -> list:
    """Datasheet entries. Measured ones (benchmarks/cpu_calibration.py) and ones derived from other
    entries (a non-standard part between two datasheets) are not in the reference file."""
    return [a for a in CATALOG.accelerators if not a.source.startswith(("measured:", "derived:"))]


def test_every_accelerator_of_the_reference_file_is_in_the_catalog():
    names = {row["name"] for row in _reference_rows()}
    assert {a.name for a in _published()} == names
    assert len(_published()) == 30


def test_catalog_figures_equal_the_reference_file_and_unknowns_stay_unknown():
    rows = {row["name"]: row for row in _reference_rows()}
    for accel in _published():
        row = rows[accel.name]
        for precision in ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8"):
            expected = row[f"{precision}_tflops"]
            assert accel.peak(precision) == (float(expected) if expected else None), (accel.slug, precision)
        assert accel.memory_gb == (float(row["memory_gb"]) if row["memory_gb"] else None)
        assert accel.source == row["source"] and accel.confidence == row["confidence"]


def test_every_catalog_figure_traces_to_a_source():
    for entry in [*CATALOG.node_types, *CATALOG.models]:
        assert entry.source.strip(), entry.slug
    for accel in CATALOG.accelerators:
        known = len(accel.unknown_figures()) < 11 or accel.memory_gb is not None
        assert accel.source.strip() or not known, f"{accel.slug} has figures but no source"
        if accel.achievable_matmul_fraction is not None:
            assert accel.achievable_matmul_source


def test_slugs_are_case_insensitive_and_aliases_resolve():
    assert CATALOG.accelerator("H100-SXM").slug == "h100-sxm"
    assert CATALOG.accelerator("H100").slug == "h100-sxm"
    assert CATALOG.accelerator("Ascend 910B").slug == "ascend-910b"
    assert CATALOG.model("Llama3.1-405B").slug == "llama3.1-405b"
    assert CATALOG.node_type("HGX-H100").slug == "hgx-h100"


def test_a_miss_suggests_the_closest_names():
    with pytest.raises(SpecError, match=r"unknown model 'llama3-405b'; did you mean .*llama3.1-405b"):
        CATALOG.model("llama3-405b")


def test_every_node_type_names_a_catalog_accelerator():
    for node in CATALOG.node_types:
        if node.accelerator:
            CATALOG.accelerator(node.accelerator)
        else:
            assert node.is_cpu_only and node.cpu_fp64_tflops


@pytest.mark.parametrize("model", CATALOG.models, ids=lambda m: m.slug)
def test_derived_parameter_count_is_within_2_percent_of_the_published_size(model):
    if model.stated_params_b is None:
        pytest.skip("no published size")
    assert model.params_b == pytest.approx(model.stated_params_b, rel=0.02)


@pytest.mark.parametrize(
    ("slug", "active_b"),
    [("mixtral-8x7b", 12.9), ("mixtral-8x22b", 39.0), ("deepseek-v3", 37.0)],
)
def test_moe_active_parameters_match_the_published_figure(slug, active_b):
    # Mixtral paper: 12.9B active; Mistral: 39B active; DeepSeek-V3 report: 37B active.
    assert CATALOG.model(slug).active_params_b == pytest.approx(active_b, rel=0.03)
