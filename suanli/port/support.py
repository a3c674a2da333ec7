"""The support matrix: what each vendor stack offers a CUDA script, from `catalog/port_support.yaml`.

A target's device type, plug-in module, collective backend and visible-devices variable are read from
`catalog/device_backends.yaml` (the runtime's table), so the two never disagree.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import Field, model_validator

from suanli.spec.base import Spec
from suanli.spec.catalog import CATALOG
from suanli.spec.device_backend import DeviceBackend
from suanli.spec.errors import SpecError
from suanli.spec.io import parse_yaml, validate

SHIM_PREFIX = "suanli.port.shims."
TARGETS_ANY = "any"


class ApiRule(Spec):
    """How one `torch.cuda.<name>` reads on a target; `to=None` = no equivalent (a manual change)."""

    to: str | None
    device_arg: bool = False
    note: str = ""
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """`name: torch.accelerator.x` in the YAML stands for `name: {to: torch.accelerator.x}`."""
        return {"to": value} if isinstance(value, str) else value

    @property
    def is_shim(self) -> bool:
        return self.to is not None and self.to.startswith(SHIM_PREFIX)


class Library(Spec):
    status: Literal["supported", "alternative", "none"]
    alternative: str = ""
    source: str


class FusedOptimizers(Spec):
    supported: bool
    note: str


class _Defaults(Spec):
    requires: str
    source: str
    apis: dict[str, ApiRule]


class _TargetEntry(Spec):
    target: str
    family: str
    stack: str
    versions: str
    vendor_tool: str
    sources: list[str] = Field(min_length=1)
    dtypes: dict[str, bool]
    apis: dict[str, ApiRule] = Field(default_factory=dict)
    fused_optimizers: FusedOptimizers
    flags_note: str
    env_note: str
    libraries: dict[str, Library]


class _Matrix(Spec):
    api_defaults: _Defaults
    library_imports: dict[str, str]
    targets: list[_TargetEntry]


class Target(Spec):
    """One target with its device-table row and its API rules resolved (defaults, then overrides)."""

    name: str
    family: str
    stack: str
    versions: str
    vendor_tool: str
    sources: list[str]
    device_type: str
    module: str | None
    collective_backend: str
    visible_devices_env: str | None
    dtypes: dict[str, bool]
    apis: dict[str, ApiRule]
    requires: str
    fused_optimizers: FusedOptimizers
    flags_note: str
    env_note: str
    libraries: dict[str, Library]


class SupportMatrix(Spec):
    targets: dict[str, Target]
    library_imports: dict[str, str]
    cuda_families: list[str] = Field(description="families whose PyTorch keeps the cuda device type")

    def target_for_family(self, family: str | None) -> Target | None:
        """The target a pool of this accelerator family needs; None where CUDA code runs as is.
        A CPU pool (no family) and a family the device table lacks run on the CPU."""
        if family in self.cuda_families:
            return None
        return next((t for t in self.targets.values() if t.family == family), self.targets["cpu"])

    def target(self, name: str, field: str = "--target") -> Target:
        if name not in self.targets:
            known = ", ".join([*self.targets, TARGETS_ANY])
            raise SpecError(f"{field}: unknown target {name!r}; known: {known}")
        return self.targets[name]

    def select(self, name: str) -> list[Target]:
        """`any` = every target; otherwise the one named."""
        return list(self.targets.values()) if name == TARGETS_ANY else [self.target(name)]

    def library_of(self, module: str) -> str | None:
        """The `libraries` key of an imported module (`flash_attn.flash_attn_interface` -> flash_attn)."""
        parts = module.split(".")
        for length in range(len(parts), 0, -1):
            key = self.library_imports.get(".".join(parts[:length]))
            if key:
                return key
        return None


def _read(filename: str) -> Any:
    text = resources.files("suanli.catalog").joinpath(filename).read_text(encoding="utf-8")
    return parse_yaml(text, source=filename)


def _resolve(entry: _TargetEntry, defaults: _Defaults, backend: DeviceBackend) -> Target:
    apis = {}
    for name, rule in {**defaults.apis, **entry.apis}.items():
        to = rule.to.format(device=backend.device_type) if rule.to else None
        apis[name] = rule.model_copy(update={"to": to, "source": rule.source or defaults.source})
    return Target(
        name=entry.target,
        family=entry.family,
        stack=entry.stack,
        versions=entry.versions,
        vendor_tool=entry.vendor_tool,
        sources=entry.sources,
        device_type=backend.device_type,
        module=backend.module,
        collective_backend=backend.collective_backend,
        visible_devices_env=backend.visible_devices_env,
        dtypes=entry.dtypes,
        apis=apis,
        requires=defaults.requires if backend.device_type != "cpu" else "",
        fused_optimizers=entry.fused_optimizers,
        flags_note=entry.flags_note,
        env_note=entry.env_note,
        libraries=entry.libraries,
    )


@cache
def support_matrix() -> SupportMatrix:
    """The matrix, each target joined with its device_backends.yaml row."""
    matrix = validate(_Matrix, _read("port_support.yaml"), source="port_support.yaml")
    backends = CATALOG.device_backends
    targets = {}
    for i, entry in enumerate(matrix.targets):
        if entry.family not in backends:
            raise SpecError(
                f"port_support.yaml: targets[{i}].family: {entry.family!r} not in device_backends.yaml"
            )
        missing = set(matrix.library_imports.values()) - set(entry.libraries)
        if missing:
            raise SpecError(
                f"port_support.yaml: targets[{i}].libraries: missing {', '.join(sorted(missing))}"
            )
        targets[entry.target] = _resolve(entry, matrix.api_defaults, backends[entry.family])
    cuda = [family for family, row in backends.items() if row.device_type == "cuda"]
    return SupportMatrix(targets=targets, library_imports=matrix.library_imports, cuda_families=cuda)
