"""GPU sharing in the scheduler: MIG geometry from NVIDIA's MIG User Guide, one sharing mode per GPU,
and `suanli share pack`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from suanli.cli import app
from suanli.sched.fractional import FULL_MILLI, mig_model, share_milli
from suanli.sched.placement import find_slots
from suanli.sched.sharing import pack, parse_items
from suanli.spec import CATALOG, SpecError
from suanli.spec.job import Sharing
from tests.sched.conftest import job, make_cluster

A100 = "a100-sxm-80gb"


def _pack(gpu: str, *slices: str) -> dict:
    return pack(gpu, parse_items(gpu, list(slices))).to_dict()


@pytest.mark.parametrize(
    "slices",
    [["1g.10gb:7"], ["4g.40gb,3g.40gb"], ["4g.40gb,2g.20gb,1g.10gb"], ["1g.10gb", "2g.20gb", "4g.40gb"]],
)
def test_issue_cases_each_fill_one_a100(slices):
    """MIG User Guide, A100 configurations: 7 × 1g, 4g + 3g and 4g + 2g + 1g each fit one GPU
    (they needed 2 GPUs when MIG shares were counted as ceil(1000 × g / 7) thousandths)."""
    layout = _pack(A100, *slices)
    placed = sum(len(g["slices"]) for g in layout["layout"])
    assert layout["gpus_used"] == 1 and layout["placed"] == placed == len(parse_items(A100, slices))


def test_four_g_is_not_blocked_by_a_small_instance_placed_first():
    """A 1g placed alone goes to the end of the GPU, so a later 4g (start 0 only) still fits."""
    cluster = make_cluster({A100: (1, 1)})
    for i, profile in enumerate(["1g.10gb", "2g.20gb", "4g.40gb"]):
        j = job(f"m{i}", 0, 1, {A100: 1.0}, sharing=Sharing(mode="mig", mig_profile=profile))
        slots = find_slots(cluster, j, A100)
        assert slots is not None, profile
        cluster.bind(j.job_id, slots)
    assert sorted(cluster.nodes[0].mig[0]) == [(0, 4), (4, 2), (6, 1)]


@pytest.mark.parametrize(
    ("gpu", "names"),
    [
        ("h100-sxm", ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]),
        ("h200-sxm", ["1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"]),
        ("b200", ["1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"]),
    ],
)
def test_profile_names_and_instance_counts_follow_the_guide(gpu, names):
    """MIG User Guide tables: instances available 7, 4, 3, 2, 1, 1 for the six profiles."""
    model = mig_model(gpu)
    assert [p.name for p in model.profiles] == names
    assert [p.instances for p in model.profiles] == [7, 4, 3, 2, 1, 1]
    for profile in model.profiles:
        assert _pack(gpu, f"{profile.name}:{profile.instances}")["gpus_used"] == 1
        assert _pack(gpu, f"{profile.name}:{profile.instances + 1}")["gpus_used"] == 2


def test_impossible_sets_are_refused_with_one_line_naming_the_profile():
    with pytest.raises(SpecError, match=r"'5g\.50gb' is not a MIG profile of a100-sxm-80gb"):
        parse_items(A100, ["5g.50gb"])
    with pytest.raises(SpecError, match=r"^4g.40gb: does not fit on 1 a100-sxm-80gb GPU\(s\)"):
        pack(A100, parse_items(A100, ["4g.40gb:2"]), max_gpus=1)
    with pytest.raises(SpecError, match="mi300x offers no MIG"):
        parse_items("mi300x", ["1g.10gb"])
    with pytest.raises(SpecError, match="l40s offers no MIG"):
        parse_items("l40s", ["1g.10gb"])


def test_mig_and_mps_never_share_a_gpu():
    """A MIG-enabled GPU runs no MPS clients (and the reverse), whatever room is left."""
    cluster = make_cluster({A100: (1, 1)})
    mig = job("mig", 0, 1, {A100: 1.0}, sharing=Sharing(mode="mig", mig_profile="1g.10gb"))
    mps = job("mps", 0, 1, {A100: 1.0}, sharing=Sharing(mode="fraction", core_fraction=0.25))
    cluster.bind("mig", find_slots(cluster, mig, A100))
    assert find_slots(cluster, mps, A100) is None
    with pytest.raises(SpecError, match="holds mig jobs; a fraction job cannot share it"):
        slot = cluster.held["mig"][0]
        cluster.bind("mps", (type(slot)(slot.node, slot.gpu, 250, mode="fraction"),))
    cluster.release("mig")
    cluster.bind("mps", find_slots(cluster, mps, A100))
    assert find_slots(cluster, mig, A100) is None
    cluster.release("mps")
    assert cluster.nodes[0].modes == [""] and cluster.nodes[0].free_milli == [FULL_MILLI]


def test_vnpu_templates_add_up_within_one_chip():
    """Huawei virtual-instance rules, 910B3 (20 AI cores, 7 AI CPUs, 64 GB): 4 × vir05_1c_16g fill
    one chip, as do 2 × vir10_3c_32g; a third vir10_3c_32g needs a second chip."""
    assert _pack("ascend-910b", "vir05_1c_16g:4")["gpus_used"] == 1
    assert _pack("ascend-910b", "vir10_3c_32g:2")["gpus_used"] == 1
    assert _pack("ascend-910b", "vir10_3c_32g:3")["gpus_used"] == 2


def test_share_pack_cli_prints_the_issue_json():
    result = CliRunner().invoke(app, ["share", "pack", "--gpu", A100, "1g.10gb:7", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["gpus_used"], out["placed"]) == (1, 7)
    assert sorted(s["start"] for s in out["layout"][0]["slices"]) == list(range(7))
    bad = CliRunner().invoke(app, ["share", "pack", "--gpu", A100, "4g.40gb:2", "--gpus", "1"])
    assert bad.exit_code == 2 and "4g.40gb" in bad.output and "Traceback" not in bad.output


REQUESTS = st.one_of(
    st.sampled_from([p.name for p in mig_model(A100).profiles]).map(
        lambda n: Sharing(mode="mig", mig_profile=n)
    ),
    st.floats(0.05, 1.0).map(lambda f: Sharing(mode="fraction", memory_fraction=f, core_fraction=f)),
    st.floats(0.05, 1.0).map(lambda f: Sharing(mode="timeslice", memory_fraction=f)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(REQUESTS, st.booleans()), min_size=1, max_size=30))
def test_no_two_allocations_overlap_and_refusals_are_real(ops):
    """Whatever arrives and leaves: MIG instances sit on their profile's starts and never overlap;
    a GPU holds one sharing mode; shares never exceed the GPU; and a MIG job is refused only when no
    GPU has a free start for it (checked by brute force)."""
    cluster = make_cluster({A100: (1, 3)})
    model = mig_model(A100)
    held: list[str] = []
    for i, (sharing, release) in enumerate(ops):
        if release and held:
            cluster.release(held.pop(0))
        j = job(f"j{i}", 0, 1, {A100: 1.0}, sharing=sharing)
        slots = find_slots(cluster, j, A100)
        if slots is None and sharing.mode == "mig":
            profile = model.profile(sharing.mig_profile)
            node = cluster.nodes[0]
            for gpu, occupied in enumerate(node.mig):
                if node.modes[gpu] in ("", "mig"):
                    used = {s for start, size in occupied for s in range(start, start + size)}
                    assert all(used & set(range(s, s + profile.memory_slices)) for s in profile.starts)
        if slots is not None:
            cluster.bind(j.job_id, slots)
            held.append(j.job_id)
        node = cluster.nodes[0]
        for gpu in range(3):
            shares = [s for jid in held for s in cluster.held[jid] if s.gpu == gpu]
            assert len({s.mode for s in shares}) <= 1
            assert sum(s.milli for s in shares) <= FULL_MILLI
            slices = [s for s in shares if s.mig_start is not None]
            covered = [x for s in slices for x in range(s.mig_start, s.mig_start + s.mig_size)]
            assert len(covered) == len(set(covered)) and all(0 <= x < 8 for x in covered)
        for jid in held:
            slot, req = cluster.held[jid][0], ops[int(jid[1:])][0]
            if req.mode == "mig":
                profile = model.profile(req.mig_profile)
                assert slot.mig_start in profile.starts and slot.mig_size == profile.memory_slices
                assert slot.milli == share_milli(req, A100)


def test_every_catalog_accelerator_has_a_sharing_answer():
    for accel in CATALOG.accelerators:
        model = CATALOG.sharing(accel.slug)
        assert model.modes()[0] == "exclusive"
        if model.mig:
            top = max(model.mig.profiles, key=lambda p: p.memory_gb)
            assert top.memory_gb == pytest.approx(accel.memory_gb, rel=0.03), accel.slug


def test_time_sliced_jobs_slow_each_other_like_mps_shares_in_the_simulator():
    """Lucid's co-location slowdowns apply to any two jobs sharing a GPU's SMs (MPS or time-slice)."""
    from suanli.sched.policies import make_policy
    from suanli.sched.simulator import simulate

    def finish(mode: str) -> float:
        sharing = Sharing(mode=mode, memory_fraction=0.5)
        jobs = [job(f"t{i}", 0, 1, 1000.0, sharing=sharing, app="ResNet18") for i in range(2)]
        return max(s.finish_s for s in simulate(make_cluster({"a": (1, 1)}), make_policy("fifo"), jobs).jobs)

    assert finish("timeslice") == pytest.approx(finish("fraction")) and finish("timeslice") > 1000.0


def test_the_sharing_catalog_refuses_inconsistent_geometry():
    """`instances` (the guide's table) must equal the placements `nvidia-smi mig -lgipp` prints."""
    from pydantic import ValidationError

    from suanli.spec.sharing import MigProfile

    with pytest.raises(ValidationError, match="3 instances but 2 placements"):
        MigProfile(name="3g.40gb", compute_slices=3, memory_slices=4, starts=(0, 4), instances=3)
    with pytest.raises(ValidationError, match="runs past the 8 slices"):
        MigProfile(name="3g.40gb", compute_slices=3, memory_slices=4, starts=(0, 6), instances=2)
    with pytest.raises(SpecError, match="did you mean"):
        CATALOG.sharing("h2000")
