"""Adaptive difficulty curriculum.

`ecomrlve.scheduler.curriculum` is the pure algorithm (no Ray import); `ecomrlve.scheduler.actor` holds the
`CurriculumScheduler` Ray actor around it and is imported only when asked for, so
``import scheduler`` stays Ray-free.
"""

from .curriculum import Curriculum, CurriculumConfig, EnvLevel, Outcome, Task

__all__ = ["Curriculum", "CurriculumConfig", "EnvLevel", "Outcome", "Task", "CurriculumScheduler"]


def __getattr__(name):
    if name == "CurriculumScheduler":
        from .actor import CurriculumScheduler

        return CurriculumScheduler
    raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
