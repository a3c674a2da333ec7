"""A GPU telemetry sample modelled on NVIDIA DCGM fields, and a failure record to learn from.

Each field accepts our name or the DCGM field identifier (as dcgm-exporter and `dcgmi dmon`
name them), so a centre's export can be read as it is. Counters are the running totals DCGM
reports; the predictor turns them into increments between consecutive samples.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

# Our name -> DCGM field identifier (DCGM API reference, "Field Identifiers").
DCGM_FIELDS: dict[str, str] = {
    "xid": "DCGM_FI_DEV_XID_ERRORS",
    "ecc_sbe_volatile_total": "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "ecc_dbe_volatile_total": "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "row_remap_pending": "DCGM_FI_DEV_ROW_REMAP_PENDING",
    "row_remap_failure": "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "uncorrectable_remapped_rows": "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "correctable_remapped_rows": "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "nvlink_crc_flit_errors_total": "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "nvlink_replay_errors_total": "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "nvlink_recovery_errors_total": "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "gpu_temp_c": "DCGM_FI_DEV_GPU_TEMP",
    "memory_temp_c": "DCGM_FI_DEV_MEMORY_TEMP",
    "power_usage_w": "DCGM_FI_DEV_POWER_USAGE",
}

# XID codes that mean the GPU itself is in trouble (NVIDIA "XID Errors" guide): 48 double-bit
# ECC, 63/64 row remapping recorded/failed, 74 NVLink error, 79 fallen off the bus, 92 high
# single-bit ECC rate, 94/95 contained/uncontained ECC error, 119/120 GSP timeout/error.
CRITICAL_XIDS = frozenset({48, 63, 64, 74, 79, 92, 94, 95, 119, 120})


def timestamp_s(value: Any) -> float:
    """Seconds since the epoch from a number or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected seconds since the epoch or an ISO 8601 time, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _field(name: str, default: Any) -> Any:
    return Field(default, validation_alias=AliasChoices(name, DCGM_FIELDS[name]))


class GpuSample(BaseModel):
    """One reading of one GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp_s: float = Field(validation_alias=AliasChoices("timestamp_s", "timestamp", "time"))
    node: str = Field(min_length=1, validation_alias=AliasChoices("node", "Hostname", "hostname"))
    gpu: int = Field(0, ge=0)
    xid: int = _field("xid", 0)
    ecc_sbe_volatile_total: int = _field("ecc_sbe_volatile_total", 0)
    ecc_dbe_volatile_total: int = _field("ecc_dbe_volatile_total", 0)
    row_remap_pending: bool = _field("row_remap_pending", False)
    row_remap_failure: bool = _field("row_remap_failure", False)
    uncorrectable_remapped_rows: int = _field("uncorrectable_remapped_rows", 0)
    correctable_remapped_rows: int = _field("correctable_remapped_rows", 0)
    nvlink_crc_flit_errors_total: int = _field("nvlink_crc_flit_errors_total", 0)
    nvlink_replay_errors_total: int = _field("nvlink_replay_errors_total", 0)
    nvlink_recovery_errors_total: int = _field("nvlink_recovery_errors_total", 0)
    gpu_temp_c: float | None = _field("gpu_temp_c", None)
    memory_temp_c: float | None = _field("memory_temp_c", None)
    power_usage_w: float | None = _field("power_usage_w", None)

    @field_validator("timestamp_s", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> float:
        return timestamp_s(value)


class FailureRecord(BaseModel):
    """A failure that interrupted work on a node (and GPU, when known)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp_s: float = Field(validation_alias=AliasChoices("timestamp_s", "timestamp", "time"))
    node: str = Field(min_length=1, validation_alias=AliasChoices("node", "Hostname", "hostname"))
    gpu: int | None = Field(None, ge=0, description="None: the whole node")
    cause: str = ""

    @field_validator("timestamp_s", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> float:
        return timestamp_s(value)
