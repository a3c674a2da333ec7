"""One row of `catalog/device_backends.yaml`: which PyTorch device, plug-in module and collective
backend an accelerator family uses. Read by the runtime (to bind devices) and by `suanli port` (to
say what a script needs); neither imports the other, so the row lives here, torch-free."""

from __future__ import annotations

from pydantic import Field

from suanli.spec.base import Spec


class DeviceBackend(Spec):
    family: str
    device_type: str = Field(description="torch device type: cuda, npu, musa, mlu, xpu, hpu, cpu")
    module: str | None = Field(default=None, description="module that registers the device; None = in-tree")
    collective_backend: str = Field(
        description="torch.distributed backend: nccl, hccl, mccl, cncl, gloo, ..."
    )
    visible_devices_env: str | None = None
    source: str
