"""The state / viewpoint / output dataclasses as pytree nodes, so `torch.export` and `torch.compile` take
and return them directly (their tensors become graph inputs and outputs, no graph break)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch.utils._pytree as pytree


def register_dataclass(cls: type, build: Callable[..., Any] | None = None) -> type:
    """Register a frozen dataclass as a pytree node whose children are its fields, in order.

    build(**fields) remakes an instance from (possibly fake, symbolic) tensors; give one that skips
    value checks that read tensor data (export traces with fake tensors). Default: the constructor.
    """
    names = tuple(f.name for f in dataclasses.fields(cls))
    make = build if build is not None else cls

    def flatten(obj: Any) -> tuple[list[Any], tuple[str, ...]]:
        return [getattr(obj, n) for n in names], names

    def flatten_with_keys(obj: Any) -> tuple[list[tuple[Any, Any]], tuple[str, ...]]:
        return [(pytree.GetAttrKey(n), getattr(obj, n)) for n in names], names

    def unflatten(values: Any, context: tuple[str, ...]) -> Any:
        return make(**dict(zip(context, values)))

    if cls not in pytree.SUPPORTED_NODES:
        pytree.register_pytree_node(
            cls, flatten, unflatten,
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
            flatten_with_keys_fn=flatten_with_keys,
        )
    return cls
