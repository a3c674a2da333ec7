"""Base class for all specs: strict about unknown fields, friendly about everything else."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, populate_by_name=True)
