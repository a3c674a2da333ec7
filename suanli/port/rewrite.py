"""The lossless rewrite: one pass over a concrete syntax tree (libcst) per file and target.

Every CUDA-specific construct becomes one `Finding`, whatever happens to it: rewritten to the
device-agnostic API, replaced by a project shim, kept (harmless on the target), guarded by an
ImportError fallback, or left for a person (manual). Nodes the pass does not change are printed
back byte for byte, comments and formatting included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, PositionProvider

from suanli.port.support import SupportMatrix, Target

_CUDA_DEVICE = re.compile(r"^cuda(?::(\d+))?$")
_FALLBACK_EXCEPTIONS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
_CUDA_SOURCE = re.compile(r"\.cuh?$")
_PROFILER_NOTE = (
    "records no {device} activity: use the device's own activity (ProfilerActivity.PrivateUse1 for "
    "plug-in devices, XPU, HPU) or the vendor's profiler"
)
_AUTOCAST_POSITIONAL = ("enabled", "dtype", "cache_enabled")
_TIGHT_EQUAL = cst.AssignEqual(
    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
)


class Action(StrEnum):
    REWRITTEN = "rewritten"  # same meaning through the device-agnostic API
    SHIMMED = "shimmed"  # a project shim keeps it running; the note says what differs
    KEPT = "kept"  # left as is: it has no effect on the target
    FALLBACK = "fallback"  # a CUDA-only library behind an ImportError fallback: runs without it
    MANUAL = "manual"  # cannot move automatically


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    target: str
    action: Action
    what: str
    detail: str
    alternative: str = ""
    source: str = ""

    def as_dict(self) -> dict[str, str | int]:
        return {key: str(value) if isinstance(value, Action) else value for key, value in vars(self).items()}


def _dotted(node: cst.BaseExpression) -> str | None:
    """`torch.cuda.amp.autocast` for an Attribute chain of plain names; None otherwise."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr.value}" if head else None
    return None


def _expr(dotted: str) -> cst.BaseExpression:
    return cst.parse_expression(dotted)


def _quoted(value: str) -> cst.SimpleString:
    return cst.SimpleString(f'"{value}"')


def _string(like: cst.SimpleString | cst.FormattedString, value: str) -> cst.SimpleString:
    """A plain string literal with the quotes of `like`."""
    quote = like.quote if isinstance(like, cst.SimpleString) else like.end
    return cst.SimpleString(f"{quote}{value}{quote}")


def _guards_imports(node: cst.Try) -> bool:
    for handler in node.handlers:
        if handler.type is None:
            return True
        names = (
            [handler.type]
            if not isinstance(handler.type, cst.Tuple)
            else [e.value for e in handler.type.elements]
        )
        if any(_dotted(name) in _FALLBACK_EXCEPTIONS for name in names):
            return True
    return False


class _Porter(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider, ParentNodeProvider)

    def __init__(self, file: str, target: Target, matrix: SupportMatrix) -> None:
        super().__init__()
        self.file = file
        self.target = target
        self.matrix = matrix
        self.findings: list[Finding] = []
        self.uses_shims = False
        self.changed = False
        self._guarded: set[int] = set()
        self._amp_names: dict[str, str] = {}  # local name -> torch.cuda.amp name

    # ---- bookkeeping -------------------------------------------------------------------------
    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _note(self, node: cst.CSTNode, action: Action, what: str, detail: str, **extra: str) -> None:
        finding = Finding(self.file, self._line(node), self.target.name, action, what, detail, **extra)
        if finding not in self.findings:
            self.findings.append(finding)
        if action in (Action.REWRITTEN, Action.SHIMMED):
            self.changed = True
            self.uses_shims |= action is Action.SHIMMED

    @property
    def _dev(self) -> str:
        return self.target.device_type

    def _device_string(self, index: str | None) -> str:
        return self._dev if index is None or self._dev == "cpu" else f"{self._dev}:{index}"

    # ---- imports -----------------------------------------------------------------------------
    def visit_Try(self, node: cst.Try) -> None:
        if _guards_imports(node):
            for found in m.findall(node.body, m.Import() | m.ImportFrom()):
                self._guarded.add(id(found))

    def _library(self, node: cst.CSTNode, module: str) -> None:
        key = self.matrix.library_of(module)
        if key is None:
            return
        library = self.target.libraries[key]
        extra = {"alternative": library.alternative, "source": library.source}
        if library.status == "supported":
            self._note(
                node, Action.KEPT, f"import {module}", f"{self.target.stack} has a build of it", **extra
            )
        elif id(node) in self._guarded:
            self._note(
                node,
                Action.FALLBACK,
                f"import {module}",
                "CUDA-only; the script's ImportError fallback runs instead (without its kernels)",
                **extra,
            )
        else:
            why = "CUDA-only, no fallback in the script" + (
                "" if library.alternative else "; no vendor alternative"
            )
            self._note(node, Action.MANUAL, f"import {module}", why, **extra)

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = _dotted(alias.name)
            if name:
                self._library(node, name)

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        module = _dotted(original_node.module) if original_node.module else None
        if module is None:
            return updated_node
        self._library(original_node, module)
        names = [] if isinstance(original_node.names, cst.ImportStar) else original_node.names
        if module == "torch.utils.cpp_extension" and any(_dotted(a.name) == "CUDAExtension" for a in names):
            self._cuda_extension(original_node, "CUDAExtension")
        if module == "torch.cuda.amp":
            for alias in names:
                name = _dotted(alias.name) or ""
                local = _dotted(alias.asname.name) if alias.asname else None
                self._amp_names[local or name] = name
            self._note(original_node, Action.REWRITTEN, "from torch.cuda.amp import", "now from torch.amp")
            return updated_node.with_changes(module=_expr("torch.amp"))
        if module.startswith("torch.cuda"):
            self._note(
                original_node, Action.MANUAL, f"from {module} import", "write the torch.cuda.<name> form"
            )
        return updated_node

    def _cuda_extension(self, node: cst.CSTNode, what: str) -> None:
        library = self.target.libraries["cuda_extension"]
        self._note(
            node,
            Action.MANUAL,
            what,
            "a custom CUDA kernel",
            alternative=library.alternative,
            source=library.source,
        )

    # ---- torch.cuda.*, torch.backends.cud* ---------------------------------------------------
    def _is_chain_inner(self, node: cst.Attribute) -> bool:
        parent = self.get_metadata(ParentNodeProvider, node)
        return isinstance(parent, cst.Attribute) and parent.value is node

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        if original_node.attr.value == "is_cuda":
            return self._is_cuda(original_node, updated_node)
        dotted = _dotted(original_node)
        if dotted is None or self._is_chain_inner(original_node):
            return updated_node
        if dotted.startswith("torch.float8_"):
            if not self.target.dtypes.get("float8", False):
                self._note(original_node, Action.MANUAL, dotted, f"{self.target.stack} has no float8 dtype")
            return updated_node
        if dotted.endswith("ProfilerActivity.CUDA"):
            self._note(original_node, Action.KEPT, dotted, _PROFILER_NOTE.format(device=self._dev))
            return updated_node
        if dotted.startswith(("torch.backends.cudnn.", "torch.backends.cuda.")):
            self._note(original_node, Action.KEPT, dotted, self.target.flags_note)
            return updated_node
        if not dotted.startswith("torch.cuda."):
            return updated_node
        api = dotted.removeprefix("torch.cuda.")
        rule = self.target.apis.get(api)
        if rule is None:
            self._note(original_node, Action.MANUAL, dotted, "no equivalent in the support matrix")
            return updated_node
        if rule.to is None:
            self._note(original_node, Action.MANUAL, dotted, rule.note, source=rule.source)
            return updated_node
        action = Action.SHIMMED if rule.is_shim else Action.REWRITTEN
        self._note(original_node, action, dotted, f"-> {rule.to}" + (f" ({rule.note})" if rule.note else ""))
        return _expr(rule.to)

    def _is_cuda(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        if self._dev == "cpu":
            self._note(
                original, Action.KEPT, ".is_cuda", "always False on CPU: the CUDA-only branch is skipped"
            )
            return updated
        self._note(original, Action.REWRITTEN, ".is_cuda", f'-> .device.type == "{self._dev}"')
        device_type = cst.Attribute(cst.Attribute(updated.value, cst.Name("device")), cst.Name("type"))
        return cst.Comparison(
            device_type,
            [cst.ComparisonTarget(cst.Equal(), _quoted(self._dev))],
            lpar=[cst.LeftParen()],
            rpar=[cst.RightParen()],
        )

    # ---- calls ---------------------------------------------------------------------------------
    def _amp_args(self, api: str, args: Sequence[cst.Arg]) -> list[cst.Arg]:
        """torch.amp takes the device type first. torch.cuda.amp.autocast's positional parameters
        (enabled, dtype, cache_enabled) become keywords, and its default dtype (float16) is made explicit."""
        rest = list(args)
        if api.endswith("autocast"):
            rest = [
                arg.with_changes(keyword=cst.Name(name), equal=_TIGHT_EQUAL) if arg.keyword is None else arg
                for arg, name in zip(rest, [*_AUTOCAST_POSITIONAL, *[""] * len(rest)], strict=False)
            ]
            if not any(arg.keyword and arg.keyword.value == "dtype" for arg in rest):
                rest.append(
                    cst.Arg(keyword=cst.Name("dtype"), value=_expr("torch.float16"), equal=_TIGHT_EQUAL)
                )
        return [cst.Arg(_quoted(self._dev)), *rest]

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = original_node.func
        dotted = _dotted(func)
        if dotted and dotted.startswith("torch.cuda."):
            rule = self.target.apis.get(dotted.removeprefix("torch.cuda."))
            if rule and rule.to and rule.device_arg:
                return updated_node.with_changes(args=self._amp_args(dotted, updated_node.args))
        if isinstance(func, cst.Name) and func.value in self._amp_names:
            self._note(
                original_node, Action.REWRITTEN, f"{func.value}()", f"torch.amp {func.value} on {self._dev}"
            )
            return updated_node.with_changes(
                args=self._amp_args(self._amp_names[func.value], updated_node.args)
            )
        if isinstance(func, cst.Attribute) and dotted != "torch.cuda":
            if func.attr.value == "cuda":
                return self._dot_cuda(original_node, updated_node)
            if func.attr.value == "pin_memory" and not original_node.args and self._dev == "cpu":
                self._note(
                    original_node, Action.REWRITTEN, ".pin_memory()", "dropped: no accelerator to copy to"
                )
                return updated_node.func.value  # type: ignore[attr-defined]
        return self._keywords(original_node, updated_node)

    def _dot_cuda(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        func = updated.func
        assert isinstance(func, cst.Attribute)
        index = next(
            (a.value for a in updated.args if a.keyword is None or a.keyword.value == "device"), None
        )
        rest = [a for a in updated.args if a.keyword is not None and a.keyword.value != "device"]
        device: cst.BaseExpression
        if index is None or self._dev == "cpu":
            device = _quoted(self._dev)
        else:
            device = cst.Call(_expr("torch.device"), [cst.Arg(_quoted(self._dev)), cst.Arg(index)])
        self._note(original, Action.REWRITTEN, ".cuda()", f"-> .to({cst.Module([]).code_for_node(device)})")
        return updated.with_changes(
            func=func.with_changes(attr=cst.Name("to")),
            args=[cst.Arg(device), *[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in rest]],
        )

    def _keywords(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        args = list(updated.args)
        for i, arg in enumerate(original.args):
            keyword = arg.keyword.value if arg.keyword else None
            true = m.matches(arg.value, m.Name("True"))
            if keyword == "pin_memory" and true:
                if self._dev == "cpu":
                    self._note(
                        arg, Action.REWRITTEN, "pin_memory=True", "-> False: no accelerator to copy to"
                    )
                    args[i] = args[i].with_changes(value=cst.Name("False"))
                else:
                    self._note(arg, Action.KEPT, "pin_memory=True", f"pins host memory for {self._dev}")
            elif keyword == "fused" and true:
                fused = self.target.fused_optimizers
                if fused.supported:
                    self._note(arg, Action.KEPT, "fused=True", fused.note)
                else:
                    self._note(
                        arg, Action.REWRITTEN, "fused=True", f"-> False (same update, unfused): {fused.note}"
                    )
                    args[i] = args[i].with_changes(value=cst.Name("False"))
            elif (
                keyword in ("device_ids", "output_device")
                and self._dev == "cpu"
                and not m.matches(arg.value, m.Name("None"))
            ):
                self._note(
                    arg,
                    Action.REWRITTEN,
                    f"{keyword}=",
                    "-> None: DDP over CPU modules takes no device ids",
                )
                args[i] = args[i].with_changes(value=cst.Name("None"))
        return updated.with_changes(args=args)

    # ---- strings -------------------------------------------------------------------------------
    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        if "b" in original_node.prefix.lower() or self._is_docstring(original_node):
            return updated_node
        value = original_node.evaluated_value
        if not isinstance(value, str):
            return updated_node
        device = _CUDA_DEVICE.match(value)
        if device:
            new = self._device_string(device.group(1))
            self._note(original_node, Action.REWRITTEN, repr(value), f"-> {new!r}")
            return _string(original_node, new)
        if value == "nccl":
            backend = self.target.collective_backend
            self._note(
                original_node, Action.REWRITTEN, "'nccl'", f"-> {backend!r} (the target's collective backend)"
            )
            return _string(original_node, backend)
        if value == "CUDA_VISIBLE_DEVICES":
            env = self.target.visible_devices_env
            if env is None:
                self._note(original_node, Action.KEPT, value, f"no effect on {self._dev}: nothing to mask")
                return updated_node
            self._note(original_node, Action.REWRITTEN, value, f"-> {env}")
            return _string(original_node, env)
        if value.startswith("NCCL_"):
            self._note(original_node, Action.KEPT, value, self.target.env_note)
        elif "nvidia-smi" in value:
            library = self.target.libraries["nvml"]
            self._note(
                original_node,
                Action.MANUAL,
                "nvidia-smi",
                "an NVIDIA tool",
                alternative=library.alternative,
                source=library.source,
            )
        elif _CUDA_SOURCE.search(value):
            self._cuda_extension(original_node, value)
        return updated_node

    def _is_docstring(self, node: cst.SimpleString) -> bool:
        """A bare string statement (a docstring) is prose, not code."""
        return isinstance(self.get_metadata(ParentNodeProvider, node), cst.Expr)

    def leave_FormattedString(
        self, original_node: cst.FormattedString, updated_node: cst.FormattedString
    ) -> cst.BaseExpression:
        parts = original_node.parts
        if (
            len(parts) == 2
            and isinstance(parts[0], cst.FormattedStringText)
            and parts[0].value == "cuda:"
            and isinstance(parts[1], cst.FormattedStringExpression)
        ):
            if self._dev == "cpu":
                self._note(original_node, Action.REWRITTEN, "f'cuda:{…}'", "-> 'cpu' (one device)")
                return _string(original_node, "cpu")
            self._note(original_node, Action.REWRITTEN, "f'cuda:{…}'", f"-> f'{self._dev}:{{…}}'")
            return updated_node.with_changes(parts=[parts[0].with_changes(value=f"{self._dev}:"), parts[1]])
        return updated_node

    # ---- module: the plug-in and shim imports --------------------------------------------------
    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if not self.changed:
            return updated_node
        added = []
        if self.target.module:
            added.append(f"import {self.target.module}  # suanli port: registers the {self._dev} device")
        if self.uses_shims:
            added.append("import suanli.port.shims  # suanli port: portable stand-ins (see the port report)")
        if not added:
            return updated_node
        body = list(updated_node.body)
        at = next((i + 1 for i, stmt in enumerate(body) if _imports_torch(stmt)), 0)
        statements = [cst.parse_statement(line + "\n") for line in added]
        return updated_node.with_changes(body=[*body[:at], *statements, *body[at:]])


def _imports_torch(statement: cst.CSTNode) -> bool:
    return m.matches(
        statement,
        m.SimpleStatementLine(body=[m.Import(names=[m.ImportAlias(name=m.Name("torch"))])])
        | m.SimpleStatementLine(body=[m.ImportFrom(module=m.Name("torch"))]),
    )


@dataclass(frozen=True)
class FilePort:
    file: str
    original: str
    ported: str
    findings: list[Finding]


def port_source(file: str, module: cst.Module, target: Target, matrix: SupportMatrix) -> FilePort:
    """Port one parsed file to one target."""
    wrapper = cst.MetadataWrapper(module)
    porter = _Porter(file, target, matrix)
    ported = wrapper.visit(porter)
    findings = sorted(porter.findings, key=lambda f: f.line)
    return FilePort(file, module.code, ported.code, findings)
