"""Which lm-evaluation-harness tasks a run asks for, and whether the harness knows them.

Light on purpose (no torch, no harness import unless needed): the Snakefile checks the configured
task names at start-up, so that an unknown name fails before any job runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

# The name lines of a task YAML (task, group or tag); full parsing would need the harness's own
# YAML tags (``!function``).
_NAME_LINE = re.compile(r"^(?:task|group|tag):\s*['\"]?([\w.\-]+)['\"]?\s*$", flags=re.MULTILINE)


def tasks_for(tasks: Sequence[str] | Mapping[str, Sequence[str]], lang: str) -> list[str]:
    """The task names of one language.

    ``tasks`` is a list of templates, where ``{lang}`` becomes the language code, or a mapping from
    language to its own list (a language missing from it runs no task).
    """
    templates = tasks.get(lang, []) if isinstance(tasks, Mapping) else tasks
    return list(dict.fromkeys(template.replace("{lang}", lang) for template in templates))


def local_task_names(include_path: str | None) -> set[str]:
    """Task, group and tag names declared by the YAML files under ``include_path``."""
    if not include_path or not Path(include_path).is_dir():
        return set()
    names = set()
    for path in Path(include_path).rglob("*.yaml"):
        names.update(_NAME_LINE.findall(path.read_text(encoding="utf-8")))
    return names


def unknown_tasks(tasks: Sequence[str], include_path: str | None) -> list[str]:
    """Names in ``tasks`` that are neither in ``include_path`` nor tasks, groups or tags of the harness.

    Only names missing from ``include_path`` make the harness index its own tasks (seconds).
    """
    missing = [task for task in tasks if task not in local_task_names(include_path)]
    if not missing:
        return []
    from lm_eval.tasks import TaskManager

    known = TaskManager(include_path=include_path).all_tasks
    return [task for task in missing if task not in known]
