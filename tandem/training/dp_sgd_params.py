"""The run parameter of user-level DP-SGD (`tandem.training.dp_sgd`), apart from it so that reading run
parameters does not import Opacus."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DpSgdConfig(BaseModel):
    """User-level DP-SGD for the server's pretraining (off by default)."""

    enabled: bool = Field(False, description="train with user-level DP-SGD (Opacus) instead of plain Adam")
    target_epsilon: float = Field(8.0, gt=0, description="user-level epsilon of the released model")
    delta: float = Field(1e-6, gt=0, lt=1, description="delta of the model's guarantee")
    max_grad_norm: float = Field(1.0, gt=0, description="per-user gradient clipping bound")
    sample_rate: float = Field(0.5, gt=0, le=1, description="probability that a user takes part in a step (Poisson)")
    steps: int = Field(300, ge=1, le=100000, description="optimizer steps")
    windows_per_user: int = Field(32, ge=1, le=4096, description="windows of a sampled user per step")
    learning_rate: float = Field(0.01, gt=0, le=1, description="Adam learning rate")
