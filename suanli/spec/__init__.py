"""Typed domain objects: accelerators, nodes, clusters, models, jobs and plans."""

from suanli.spec.accelerator import Accelerator, PeakTflops
from suanli.spec.catalog import CATALOG, Catalog
from suanli.spec.cluster import Cluster, Fabric, Pool
from suanli.spec.errors import SpecError
from suanli.spec.io import dump_yaml, load, read_yaml, validate
from suanli.spec.job import AcceleratorRequest, JobSpec, Parallelism, Resources, Sharing, Training
from suanli.spec.model import ModelSpec, MoE
from suanli.spec.node import IntraNodeTopology, NicGroup, NodeType
from suanli.spec.plan import Layout, Plan, StepEstimate

__all__ = [
    "CATALOG",
    "Accelerator",
    "AcceleratorRequest",
    "Catalog",
    "Cluster",
    "Fabric",
    "IntraNodeTopology",
    "JobSpec",
    "Layout",
    "MoE",
    "ModelSpec",
    "NicGroup",
    "NodeType",
    "Parallelism",
    "PeakTflops",
    "Plan",
    "Pool",
    "Resources",
    "Sharing",
    "SpecError",
    "StepEstimate",
    "Training",
    "dump_yaml",
    "load",
    "read_yaml",
    "validate",
]
