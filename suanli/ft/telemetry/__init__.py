"""GPU telemetry for the failure predictor: a DCGM-modelled schema and its ingestion."""

from suanli.ft.telemetry.ingest import load_failures, load_samples
from suanli.ft.telemetry.schema import CRITICAL_XIDS, DCGM_FIELDS, FailureRecord, GpuSample

__all__ = ["CRITICAL_XIDS", "DCGM_FIELDS", "FailureRecord", "GpuSample", "load_failures", "load_samples"]
