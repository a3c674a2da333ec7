"""`NodeType`: what one server holds and how its accelerators and NICs are wired."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from suanli.spec.base import Spec

TopologyKind = Literal["nvswitch", "oam-mesh", "hccs", "mtlink", "pcie-tree", "none"]


class IntraNodeTopology(Spec):
    """The intra-node fabric as a graph description.

    - `nvswitch`: every accelerator reaches every other through switches at `link_bw_gb_s`.
    - `oam-mesh`, `hccs`, `mtlink`: point-to-point links; `links` lists the edges, or `groups`
      lists fully-connected sets (default: one full mesh of all accelerators).
    - `pcie-tree`: `groups` are the accelerators under each PCIe switch; switches meet at the
      host bridge at `uplink_bw_gb_s`.
    Bandwidths are per accelerator, per direction.
    """

    kind: TopologyKind
    link_bw_gb_s: float = Field(default=0.0, ge=0, description="per accelerator and direction, GB/s")
    link_latency_us: float = Field(default=1.0, gt=0)
    links: list[tuple[int, int]] | None = None
    groups: list[list[int]] | None = None
    uplink_bw_gb_s: float | None = Field(default=None, gt=0)
    in_switch_reduction: bool = Field(default=False, description="NVLS-style reduction inside the switch")


class NicGroup(Spec):
    count: int = Field(gt=0)
    gbit_s: float = Field(gt=0)
    kind: Literal["infiniband", "roce", "ethernet"] = "infiniband"
    serves: list[list[int]] | None = Field(
        default=None, description="accelerator indices each NIC serves; default: spread evenly (rails)"
    )


class NodeType(Spec):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    accelerator: str | None = Field(default=None, description="accelerator slug; None for a CPU-only node")
    accelerators_per_node: int = Field(default=0, ge=0)
    topology: IntraNodeTopology = Field(default_factory=lambda: IntraNodeTopology(kind="none"))
    nics: list[NicGroup] = Field(default_factory=list)
    cpu_cores: int = Field(gt=0)
    memory_gb: float = Field(gt=0)
    cpu_fp64_tflops: float | None = Field(default=None, gt=0)
    source: str

    @model_validator(mode="after")
    def _consistent(self) -> NodeType:
        n = self.accelerators_per_node
        if (self.accelerator is None) != (n == 0):
            raise ValueError(
                "accelerator and accelerators_per_node must both be set (or both empty for a CPU node)"
            )
        indices = [i for edge in self.topology.links or [] for i in edge]
        indices += [i for group in self.topology.groups or [] for i in group]
        indices += [i for nic in self.nics for served in nic.serves or [] for i in served]
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"accelerator index {bad[0]} is outside 0..{n - 1}")
        if n and self.topology.kind != "none" and self.topology.link_bw_gb_s <= 0:
            raise ValueError("topology.link_bw_gb_s must be > 0 for a node with accelerators")
        for nic in self.nics:
            if nic.serves is not None and len(nic.serves) != nic.count:
                raise ValueError(f"nics.serves lists {len(nic.serves)} NICs but count is {nic.count}")
        return self

    @property
    def is_cpu_only(self) -> bool:
        return self.accelerators_per_node == 0

    @property
    def nic_bw_gb_s(self) -> float:
        """Total NIC bandwidth of the node, GB/s per direction."""
        return sum(nic.count * nic.gbit_s for nic in self.nics) / 8

    def nics_serving(self, accelerator_index: int) -> int:
        """How many NICs an accelerator can use (1 on a rail-optimized 1:1 node)."""
        total = 0
        for nic in self.nics:
            if nic.serves is None:
                total += max(1, nic.count // max(1, self.accelerators_per_node))
            else:
                total += sum(accelerator_index in served for served in nic.serves)
        return total
