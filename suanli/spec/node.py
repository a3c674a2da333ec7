"""`NodeType`: what one server holds and how its accelerators and NICs are wired."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

from pydantic import Field, model_validator

from suanli.spec.base import Spec
from suanli.spec.io import parse_yaml

TopologyKind = Literal["nvswitch", "nvlink-bridge", "oam-mesh", "hccs", "mtlink", "pcie-tree", "none"]
LinkFamily = Literal["nvlink", "mesh", "pcie", "socket", "net"]


class LinkGeneration(Spec):
    """One generation of link (NVLink 4, HCCS, PCIe Gen5, UPI, ...): its rate per link and direction,
    the key of its achievable-bandwidth factor in `calibration/comm_model.yaml`, and its source."""

    family: LinkFamily
    gb_s_per_link: float = Field(gt=0, description="line rate per link and direction, GB/s")
    efficiency: str = Field(description="key under link_efficiency in calibration/comm_model.yaml")
    source: str


class PcieLayer(Spec):
    """The PCIe tree under the accelerators: `groups` are the accelerators under each PCIe switch or
    CPU socket (each at `link_bw_gb_s`), and the groups meet at the host through `uplink_bw_gb_s` (the
    switch uplink or the socket interconnect). Per direction."""

    groups: list[list[int]] = Field(min_length=1)
    link_bw_gb_s: float = Field(gt=0)
    uplink_bw_gb_s: float = Field(gt=0)
    link: str = Field(default="pcie5", description="link generation of the accelerator links (catalog links)")
    uplink: str = Field(default="pcie5", description="link generation joining the groups (pcie5, upi, ...)")


class IntraNodeTopology(Spec):
    """The intra-node fabric as a graph description.

    - `nvswitch`: every accelerator reaches every other through switches at `link_bw_gb_s`.
    - `oam-mesh`, `hccs`, `mtlink`: point-to-point links; `links` lists the edges, or `groups`
      lists fully-connected sets (default: one full mesh of all accelerators).
    - `nvlink-bridge`: NVLink bridges; `groups` are the bridged sets (fully connected), with no
      accelerator link between groups: traffic between them goes through `pcie`.
    - `pcie-tree`: `groups` are the accelerators under each PCIe switch; switches meet at the
      host bridge at `uplink_bw_gb_s`.
    `link` names the link generation (catalog `links` table in node_types.yaml); `pcie` the PCIe
    layer under the accelerator links, where they do not connect every accelerator.
    Bandwidths are per accelerator, per direction.
    """

    kind: TopologyKind
    link_bw_gb_s: float = Field(default=0.0, ge=0, description="per accelerator and direction, GB/s")
    link_latency_us: float = Field(default=1.0, gt=0)
    links: list[tuple[int, int]] | None = None
    groups: list[list[int]] | None = None
    uplink_bw_gb_s: float | None = Field(default=None, gt=0)
    in_switch_reduction: bool = Field(default=False, description="NVLS-style reduction inside the switch")
    link: str | None = Field(default=None, description="link generation; default: the kind's default")
    pcie: PcieLayer | None = None


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
        indices += [i for group in (self.topology.pcie.groups if self.topology.pcie else []) for i in group]
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"accelerator index {bad[0]} is outside 0..{n - 1}")
        if n and self.topology.kind != "none" and self.topology.link_bw_gb_s <= 0:
            raise ValueError("topology.link_bw_gb_s must be > 0 for a node with accelerators")
        for name in self.link_names():
            if name not in link_table():
                known = ", ".join(sorted(link_table()))
                raise ValueError(f"topology link {name!r} is not in the catalog links table ({known})")
        for nic in self.nics:
            if nic.serves is not None and len(nic.serves) != nic.count:
                raise ValueError(f"nics.serves lists {len(nic.serves)} NICs but count is {nic.count}")
        return self

    def link_names(self) -> list[str]:
        """The link generations this node's topology names (accelerator links, PCIe layer)."""
        names = [self.topology.link or default_link(self.topology.kind)]
        if self.topology.pcie is not None:
            names += [self.topology.pcie.link, self.topology.pcie.uplink]
        return names

    @property
    def is_cpu_only(self) -> bool:
        return self.accelerators_per_node == 0

    @property
    def nic_bw_gb_s(self) -> float:
        """Total NIC bandwidth of the node, GB/s per direction."""
        return sum(nic.count * nic.gbit_s for nic in self.nics) / 8


@cache
def _links_file() -> dict:
    text = resources.files("suanli.catalog").joinpath("node_types.yaml").read_text(encoding="utf-8")
    return parse_yaml(text, source="node_types.yaml")


@cache
def link_table() -> dict[str, LinkGeneration]:
    """The catalog's link generations (`links` in suanli/catalog/node_types.yaml), by name."""
    return {name: LinkGeneration.model_validate(entry) for name, entry in _links_file()["links"].items()}


def default_link(kind: TopologyKind) -> str:
    """The link generation a topology of `kind` has when its node type names none."""
    return _links_file()["default_links"][kind]


def link_generation(name: str) -> LinkGeneration:
    return link_table()[name]
