"""The base model, the config error, and the resources every stage declares."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


# --------------------------------------------------------------------------- resources
class Resources(_Model):
    """Where and how wide a stage runs. The runner maps this onto Ray resources."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per task / actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (fractions share a GPU).")
    memory_gb: float | None = Field(None, ge=0, description="Memory reserved per task / actor (scheduling hint).")
    custom: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources, e.g. {nvenc: 1} to run only where NVENC exists."
    )
    min_actors: int = Field(1, ge=1, description="Actor pool lower bound (model-loading stages).")
    max_actors: int = Field(2, ge=1, description="Actor pool upper bound; the pool autoscales between the two.")
    batch_size: int = Field(1, ge=1, description="Rows per process() call.")


def _res(**kw: Any) -> Any:
    return Field(default_factory=lambda: Resources(**kw), description="Resources for this stage.")


class StageConfig(_Model):
    enabled: bool = Field(True, description="Run this stage.")
    resources: Resources = _res()
