"""The task registry: every synthetic task by name, the way `seqmix.archs.MIXERS` holds the mixers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)

TASKS: dict[str, type] = {}
"""Task name -> its data module class (a `SeededSplitsDataModule` subclass); filled by `@register_task`."""


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: make a synthetic task findable by `name` (in `seqmix evaluate`, `compare` and the sweeps)."""

    def add(cls: T) -> T:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task name {name!r} is already registered to {class_path(TASKS[name])}")
        TASKS[name] = cls
        cls.task_name = name  # type: ignore[attr-defined]
        return cls

    return add


def class_path(cls: type) -> str:
    """The dotted path LightningCLI writes for a class (its `class_path`)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def get_task(name: str) -> type:
    """The data module class registered as `name`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_name(data_class_path: str | None) -> str | None:
    """The registered name of the task whose data module class has this dotted path (None if none has)."""
    return next((name for name, cls in TASKS.items() if class_path(cls) == data_class_path), None)
