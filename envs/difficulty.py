"""One integer difficulty d drives every axis of an episode (docs/architecture.md, "Difficulty").

`axes_for(d)` returns the values; `axes_for(d, overrides)` replaces named axes so a user
can vary one axis alone (`env.reset(options={"difficulty": 6, "axes": {"p_noise": 0}})`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .actions import describe_validation_error

MAX_DIFFICULTY = 30


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class Axes(BaseModel):
    """The per-episode difficulty axes. Field docs give the formula in d and the bound an
    override must respect (the value at MAX_DIFFICULTY, or a cap the generators are tested
    at); types are strict (an int axis takes an int, never a bool, float or string)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    m: int = Field(description="constraints: 2 + d//2 (at most 17)", ge=1, le=17)
    k: int = Field(description="items to recommend: min(10, 3 + d//3) (at most 10)", ge=1, le=10)
    T_max: int = Field(description="turn budget: 4 + d//2 (at most 32)", ge=1, le=32)
    p_missing: float = Field(description="slot omission: 0.8*sigmoid((d-3.6)/1.3)", ge=0, le=1)
    p_noise: float = Field(description="typo noise per char: min(0.125, 0.01*d)", ge=0, le=1)
    p_switch: float = Field(description="context switch: 0.6*sigmoid((d-5)/2)", ge=0, le=1)
    top_k: int = Field(description="retrieval depth: max(20, 200 - 10*d) (at most 200)", ge=1, le=200)
    eps_rank: float = Field(description="distractor rate in search results: min(0.4, 0.02*d)", ge=0, le=1)
    p_oos: float = Field(description="out-of-stock mid-episode: min(0.5, 0.05*d)", ge=0, le=1)
    H: int = Field(description="order history: 1 + d//2 (at most 16)", ge=1, le=16)
    B_branch: int = Field(description="policy clauses: 1 + d//3 (at most 11)", ge=1, le=11)
    B_tool: int = Field(description="tool calls per turn: 1 + d//2 (at most 16)", ge=1, le=16)
    # environment-specific axes
    cart_items: int = Field(description="distinct cart items: min(5, 1 + d//3) (at most 5)", ge=1, le=5)
    p_variant: float = Field(description="variant required: sigmoid((d-2)/1.5)", ge=0, le=1)
    p_quantity: float = Field(description="quantity > 1: min(0.5, 0.1*d)", ge=0, le=1)
    p_edge: float = Field(description="return-window edge case: 0.7*sigmoid((d-4)/1.5)", ge=0, le=1)
    p_ref: float = Field(description="indirect order reference: sigmoid((d-2)/1.5)", ge=0, le=1)
    S_req: int = Field(description="bundle categories: min(12, 3 + d//2) (at most 32 as an override)", ge=1, le=32)
    L: int = Field(description="journey sub-tasks: min(5, 2 + d//4) (at most 5)", ge=1, le=5)


AXIS_NAMES: tuple[str, ...] = tuple(Axes.model_fields)  # the built-in axes


@dataclass(frozen=True)
class AxisSpec:
    """A difficulty axis an environment adds (`ecomrlve.envs.registry.EnvSpec.axes`):
    `schedule(d)` gives its value at difficulty d (an int for `kind=int`, a float for
    `kind=float`), and an override must lie in [ge, le]."""

    name: str
    schedule: Callable[[int], int | float]
    description: str
    kind: type = int
    ge: float = 0
    le: float = 1


# env id -> the axes it added; `axes_for` evaluates them and validates with `axes_model()`
_EXTRA_AXES: dict[str, tuple[AxisSpec, ...]] = {}
_AXES_MODEL: list[type[Axes]] = [Axes]


def extend_axes(env_id: str, axes: tuple[AxisSpec, ...]) -> None:
    """Add `axes` (an environment's own difficulty axes) to every episode's `Axes`.
    Raises ValueError naming an axis that already exists."""
    taken = set(axis_names()) - {a.name for a in _EXTRA_AXES.get(env_id, ())}
    for a in axes:
        if a.name in taken:
            raise ValueError(f"axis {a.name!r} of {env_id} already exists")
        if a.kind not in (int, float):
            raise ValueError(f"axis {a.name!r}: kind must be int or float, got {a.kind!r}")
        taken.add(a.name)
    _EXTRA_AXES[env_id] = tuple(axes)
    _rebuild()


def retract_axes(env_id: str) -> None:
    """Remove the axes `extend_axes` added for `env_id` (no-op if none)."""
    if _EXTRA_AXES.pop(env_id, None) is not None:
        _rebuild()


def _rebuild() -> None:
    extra = [a for axes in _EXTRA_AXES.values() for a in axes]
    _AXES_MODEL[0] = create_model(
        "Axes", __base__=Axes, __module__=__name__,
        **{a.name: (a.kind, Field(description=a.description, ge=a.ge, le=a.le)) for a in extra},
    ) if extra else Axes


def axes_model() -> type[Axes]:
    """`Axes` with every registered environment's axes (`Axes` itself when none)."""
    return _AXES_MODEL[0]


def axis_names() -> tuple[str, ...]:
    """The built-in axes, then those registered environments added."""
    return tuple(axes_model().model_fields)


def axes_for(d: int, overrides: dict | None = None) -> Axes:
    """The axes at difficulty `d` (0..MAX_DIFFICULTY), with named axes overridden.

    Raises ValueError naming the offending key for an unknown axis or a bad value."""
    if isinstance(d, bool) or not isinstance(d, int):
        raise ValueError(f"difficulty must be an int, got {type(d).__name__}")
    if not 0 <= d <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be in [0, {MAX_DIFFICULTY}], got {d}")
    values = dict(
        m=2 + d // 2,
        k=min(10, 3 + d // 3),
        T_max=4 + d // 2,
        p_missing=0.8 * sigmoid((d - 3.6) / 1.3),
        p_noise=min(0.125, 0.01 * d),
        p_switch=0.6 * sigmoid((d - 5) / 2),
        top_k=max(20, 200 - 10 * d),
        eps_rank=min(0.4, 0.02 * d),
        p_oos=min(0.5, 0.05 * d),
        H=1 + d // 2,
        B_branch=1 + d // 3,
        B_tool=1 + d // 2,
        cart_items=min(5, 1 + d // 3),
        p_variant=sigmoid((d - 2) / 1.5),
        p_quantity=min(0.5, 0.1 * d),
        p_edge=0.7 * sigmoid((d - 4) / 1.5),
        p_ref=sigmoid((d - 2) / 1.5),
        S_req=min(12, 3 + d // 2),
        L=min(5, 2 + d // 4),
    )
    values.update({a.name: a.schedule(d) for axes in _EXTRA_AXES.values() for a in axes})
    model = axes_model()
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(f"axes must be a dict of axis -> value, got {type(overrides).__name__}")
    for key, value in (overrides or {}).items():
        if key not in values:
            raise ValueError(f"unknown axis {key!r}; known axes: {', '.join(axis_names())}")
        if isinstance(value, float) and model.model_fields[key].annotation is int and value.is_integer():
            value = int(value)  # 3.0 from a JSON/YAML config is the int 3
        values[key] = value
    try:
        return model(**values)
    except ValidationError as exc:
        raise ValueError(f"invalid axis override: {describe_validation_error(exc)}") from None
