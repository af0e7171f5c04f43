"""What differs between segkit's tasks, in one place: one small class per task and one name -> task table.

Training, evaluation, prediction, export, the renderer, the dataset checker and the command line ask the task
(``get_task(name)``) and never compare task names. A task says:

- its data: how a ground-truth mask is read and checked, where its datasets live (``source``), the built-in
  generated samples, the training augmentation and the loss's target tensor;
- its network: the default architecture (``segkit.models.create_model`` builds it) and its kind of output;
- its predictions: probabilities -> saved mask, how a mask file is written, how a mask is drawn;
- its scores: the metrics accumulator, the reported keys, the primary metric (which picks ``best.pt``), the loss
  of ``loss: auto`` and the default configuration of ``segkit train``.

One module per task (``saliency``, ``camouflage``, ``polyp``, ``segmentation``; the interface in ``base``);
adding a task is one subclass and one entry in ``TASKS``. Heavy modules (torch, OpenCV, albumentations) are
imported inside the methods, so that ``import segkit.tasks`` stays cheap for the command line.
"""

from __future__ import annotations

from segkit.errors import SegkitError, unknown_name
from segkit.tasks.base import Task
from segkit.tasks.camouflage import CamouflageTask
from segkit.tasks.polyp import PolypTask
from segkit.tasks.saliency import SaliencyTask
from segkit.tasks.segmentation import SegmentationTask

__all__ = ["TASKS", "CamouflageTask", "PolypTask", "SaliencyTask", "SegmentationTask", "Task", "get_task",
           "require_task", "task_names"]  # fmt: skip

TASKS: dict[str, Task] = {
    task.name: task for task in (SaliencyTask(), SegmentationTask(), CamouflageTask(), PolypTask())
}


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (a Task is returned as it is); an unknown name lists the valid ones."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise unknown_name("task", str(name), TASKS)
    return TASKS[name]


def require_task(asked: str | None, trained_for: str, what: str) -> None:
    """Stop when a user's ``--task`` (``asked``; None: not given) is not the task ``what`` was trained for."""
    if asked is not None and get_task(asked).name != get_task(trained_for).name:
        raise SegkitError(f"{what} is a {trained_for} model, but --task {asked} was given")
