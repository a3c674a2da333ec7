"""`Cluster`: pools of identical nodes joined by one inter-node fabric."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from suanli.spec.accelerator import Accelerator
from suanli.spec.base import Spec
from suanli.spec.node import NodeType
from suanli.spec.units import parse_duration_s


class Fabric(Spec):
    """The inter-node network. A fat tree of leaf and spine switches, or a rail-optimized one
    (NIC i of every node on leaf i). `oversubscription` is leaf downlink : uplink bandwidth."""

    kind: Literal["fat-tree", "rail-optimized"] = "fat-tree"
    oversubscription: float = Field(default=1.0, ge=1.0)
    hop_latency_us: float = Field(default=0.7, gt=0, description="per switch hop incl. cable, µs")
    switch_radix: int = Field(default=64, ge=4)
    in_network_reduction: bool = Field(default=False, description="SHARP-style reduction in the switches")


class FairShare(Spec):
    """Slurm-style fair share (its `fairshare=` per account and `PriorityDecayHalfLife`): each
    queue's due share of the cluster's use, as relative weights, and how fast past use is forgotten.
    A service YAML that gives any queue a `fair_share` replaces `queues` as a whole (the operator's
    running configuration wins); the half-life is read from here either way."""

    queues: dict[str, float] = Field(default_factory=dict, description="queue → its share (a weight > 0)")
    usage_half_life_s: float = Field(default=7 * 24 * 3600.0, gt=0, alias="usage_half_life")

    @field_validator("queues")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = next((q for q, share in value.items() if not share > 0), None)
        if bad is not None:
            raise ValueError(f"queue {bad!r}: a share must be > 0, got {value[bad]}")
        return value

    @field_validator("usage_half_life_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration_s(value)


class Pool(Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    node_type: str = Field(description="node-type slug from the catalog or from this file's node_types")
    nodes: int = Field(gt=0)
    partition: str | None = Field(default=None, description="its Slurm partition (default: the pool's name)")
    gres_type: str | None = Field(
        default=None,
        description="its accelerators' name on the engine: Slurm GRES type, Ray custom resource "
        "(default: the accelerator's slug)",
    )


class Cluster(Spec):
    name: str
    pools: list[Pool] = Field(min_length=1)
    fabric: Fabric = Field(default_factory=Fabric)
    node_types: list[NodeType] = Field(default_factory=list, description="node types defined inline")
    accelerators: list[Accelerator] = Field(default_factory=list, description="accelerators defined inline")
    failures_per_1k_gpu_month: float | None = Field(default=None, ge=0)
    fair_share: FairShare | None = Field(default=None, description="queues' shares and usage half-life")
    price_per_gpu_hour: dict[str, float] = Field(
        default_factory=dict, description="pool name → price, for cost"
    )

    _node_types: dict[str, NodeType] = PrivateAttr(default_factory=dict)
    _accelerators: dict[str, Accelerator] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve(self) -> Cluster:
        from suanli.spec.catalog import CATALOG

        names = [pool.name for pool in self.pools]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"pool name {duplicate!r} is used twice")
        inline_nodes = {n.slug: n for n in self.node_types}
        for index, pool in enumerate(self.pools):
            node = inline_nodes.get(pool.node_type.lower()) or CATALOG.node_type(
                pool.node_type, field=f"pools[{index}].node_type"
            )
            self._node_types[pool.name] = node
            if node.accelerator:
                accel = self.find_accelerator(node.accelerator, field=f"pools[{index}].node_type.accelerator")
                self._accelerators[pool.name] = accel
        return self

    def find_accelerator(self, name: str, field: str = "") -> Accelerator:
        """An accelerator by slug or alias: one this file defines inline, else the catalog's."""
        from suanli.spec.catalog import CATALOG, _normalise

        key = _normalise(name)
        for accel in self.accelerators:
            if key == accel.slug or key in {_normalise(alias) for alias in accel.aliases}:
                return accel
        return CATALOG.accelerator(name, field=field)

    def node_type_of(self, pool: str) -> NodeType:
        return self._node_types[pool]

    def accelerator_of(self, pool: str) -> Accelerator | None:
        return self._accelerators.get(pool)

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def accelerator_count(self, pool: str) -> int:
        return self.pool(pool).nodes * self.node_type_of(pool).accelerators_per_node

    @property
    def total_accelerators(self) -> int:
        return sum(self.accelerator_count(p.name) for p in self.pools)

    @property
    def total_nodes(self) -> int:
        return sum(p.nodes for p in self.pools)

    def peak_pflops(self, precision: str) -> tuple[float, list[str]]:
        """Dense peak in PFLOPS summed over the pools whose figure is known, and the pools
        (with accelerators) whose figure the catalog does not know."""
        total, unknown = 0.0, []
        for pool in self.pools:
            accel = self.accelerator_of(pool.name)
            if accel is None:
                continue
            peak = accel.peak(precision)
            if peak is None:
                unknown.append(pool.name)
            else:
                total += peak * self.accelerator_count(pool.name) / 1000
        return total, unknown

    def bisection_bw_gb_s(self) -> float:
        """Bisection bandwidth of the inter-node fabric, GB/s one direction: half the nodes' NIC
        bandwidth, divided by the leaf oversubscription when the cut crosses the spine."""
        injection = sum(p.nodes * self.node_type_of(p.name).nic_bw_gb_s for p in self.pools)
        return injection / 2 / self.fabric.oversubscription
