"""Packing a set of slices onto as few accelerators of one type as possible (`suanli share pack`).

MIG instances and MPS / time-slice shares go through the scheduler's own placement
(`placement.find_slots` on a `ClusterState`), largest first, so what the CLI answers is what the
scheduler would do. Ascend vNPU templates add up AI cores, AI CPUs and HBM within one chip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from suanli.sched.cluster_state import ClusterState, Node
from suanli.sched.fractional import FULL_MILLI, share_milli
from suanli.sched.job import SchedJob
from suanli.sched.placement import find_slots
from suanli.spec.catalog import CATALOG
from suanli.spec.errors import SpecError
from suanli.spec.job import Sharing
from suanli.spec.sharing import ShareMode, VnpuModel, VnpuTemplate

SHARE_PREFIXES: dict[str, ShareMode] = {"mps": "fraction", "timeslice": "timeslice"}
MODE_NAMES = {"fraction": "mps"}


@dataclass(frozen=True)
class SliceItem:
    """One requested slice: a MIG profile, a vNPU template, or a share (`mps=0.25`, `timeslice=0.5`)."""

    label: str
    sharing: Sharing | None = None  # None: a vNPU template
    template: VnpuTemplate | None = None


@dataclass
class Packing:
    gpus_used: int
    placed: int
    layout: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"gpus_used": self.gpus_used, "placed": self.placed, "layout": self.layout}


def parse_items(accel_type: str, texts: list[str]) -> list[SliceItem]:
    """`1g.10gb:7`, `4g.40gb,3g.40gb`, `mps=0.25:4`, `vir05_1c_16g:2` → one item per slice."""
    model = CATALOG.sharing(accel_type, field="--gpu")
    items: list[SliceItem] = []
    for text in ",".join(texts).split(","):
        name, _, count_text = text.strip().partition(":")
        if not name:
            continue
        try:
            count = int(count_text) if count_text else 1
        except ValueError:
            raise SpecError(f"{text}: the count after ':' must be a whole number") from None
        if count < 1:
            raise SpecError(f"{text}: the count must be at least 1")
        items.extend([_item(accel_type, name, model.vnpu)] * count)
    if not items:
        raise SpecError("nothing to pack: name at least one slice, e.g. 1g.10gb:7")
    return items


def _item(accel_type: str, name: str, vnpu: VnpuModel | None) -> SliceItem:
    kind, eq, value = name.partition("=")
    if eq:
        if kind not in SHARE_PREFIXES:
            raise SpecError(f"{name}: a share is mps=FRACTION or timeslice=FRACTION")
        try:
            fraction = float(value)
        except ValueError:
            raise SpecError(f"{name}: {value!r} is not a fraction") from None
        if not 0 < fraction <= 1:
            raise SpecError(f"{name}: the fraction must be in (0, 1]")
        mode = SHARE_PREFIXES[kind]
        _check_mode(accel_type, mode)
        return SliceItem(name, Sharing(mode=mode, memory_fraction=fraction, core_fraction=fraction))
    if vnpu is not None:
        template = vnpu.template(name)
        if template is None:
            known = ", ".join(t.name for t in vnpu.templates)
            raise SpecError(f"{name}: not a {accel_type} vNPU template; one of {known}")
        return SliceItem(name, template=template)
    if not _looks_like_mig(name):
        raise SpecError(f"{name}: not a MIG profile (such as 1g.10gb) nor mps=F / timeslice=F")
    sharing = Sharing(mode="mig", mig_profile=name)
    share_milli(sharing, accel_type)  # one line naming the profile when the GPU has no such profile
    return SliceItem(name, sharing)


def _looks_like_mig(name: str) -> bool:
    compute, _, memory = name.partition("g.")
    return compute.isdigit() and memory.endswith("gb") and memory[:-2].isdigit()


def _check_mode(accel_type: str, mode: str) -> None:
    model = CATALOG.sharing(accel_type)
    if mode not in model.modes():
        raise SpecError(model.refusal(mode))


def pack(accel_type: str, items: list[SliceItem], max_gpus: int | None = None) -> Packing:
    """Place every item on the fewest GPUs (largest first); SpecError naming the first item that
    does not fit when `max_gpus` is given and too small."""
    slug = CATALOG.accelerator(accel_type, field="--gpu").slug
    vnpu = CATALOG.sharing(slug).vnpu
    templates = [item.template for item in items if item.template is not None]
    if templates:
        if vnpu is None or len(templates) != len(items):
            raise SpecError(f"--gpu: {slug} slices are all vNPU templates or none (parse_items)")
        return _pack_vnpu(vnpu, templates, max_gpus)
    gpus = max_gpus or len(items)
    state = ClusterState(nodes=[Node("pack", "pack", slug, 0, [FULL_MILLI] * gpus)], memory_gb={slug: 0.0})
    order = sorted(items, key=lambda i: -share_milli(i.sharing, slug))  # type: ignore[arg-type]
    for index, item in enumerate(order):
        job = SchedJob(f"s{index}", 0.0, 1, {slug: 1.0}, sharing=item.sharing)  # type: ignore[arg-type]
        slots = find_slots(state, job, slug)
        if slots is None:
            raise SpecError(
                f"{item.label}: does not fit on {gpus} {slug} GPU(s) beside the larger slices"
                f" ({index} of {len(items)} placed)"
            )
        state.bind(job.job_id, slots)
    return _layout(state, order)


def _layout(state: ClusterState, order: list[SliceItem]) -> Packing:
    node = state.nodes[0]
    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for index, item in enumerate(order):
        slot = state.held[f"s{index}"][0]
        entry: dict[str, Any] = {"slice": item.label}
        if slot.mig_start is not None:
            entry |= {"start": slot.mig_start, "memory_slices": slot.mig_size}
        else:
            entry["milli"] = slot.milli
        by_gpu.setdefault(slot.gpu, []).append(entry)
    layout = [
        {
            "gpu": gpu,
            "mode": MODE_NAMES.get(node.modes[gpu], node.modes[gpu]),
            "slices": sorted(s, key=lambda e: e.get("start", 0)),
        }
        for gpu, s in sorted(by_gpu.items())
    ]
    return Packing(gpus_used=len(layout), placed=len(order), layout=layout)


def _pack_vnpu(model: VnpuModel, templates: list[VnpuTemplate], max_gpus: int | None) -> Packing:
    """First fit decreasing over (AI cores, AI CPUs, HBM): a template fits a chip while all three
    sums stay within the chip (Huawei's virtual-instance rules)."""
    chips: list[list[VnpuTemplate]] = []
    order = sorted(templates, key=lambda t: (-t.ai_cores, -t.memory_gb))
    for index, template in enumerate(order):
        home = next((c for c in chips if _vnpu_fits(model, c, template)), None)
        if home is None:
            if max_gpus is not None and len(chips) == max_gpus:
                raise SpecError(
                    f"{template.name}: does not fit on {max_gpus} {model.chip} chip(s) beside the larger"
                    f" templates ({index} of {len(templates)} placed)"
                )
            home = []
            chips.append(home)
        home.append(template)
    layout = [
        {"gpu": i, "mode": "vnpu", "slices": [{"slice": t.name, "ai_cores": t.ai_cores} for t in chip]}
        for i, chip in enumerate(chips)
    ]
    return Packing(gpus_used=len(chips), placed=len(order), layout=layout)


def _vnpu_fits(model: VnpuModel, chip: list[VnpuTemplate], template: VnpuTemplate) -> bool:
    return (
        sum(t.ai_cores for t in chip) + template.ai_cores <= model.ai_cores
        and sum(t.ai_cpus for t in chip) + template.ai_cpus <= model.ai_cpus
        and sum(t.memory_gb for t in chip) + template.memory_gb <= model.memory_gb
    )
