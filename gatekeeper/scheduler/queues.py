"""Shared change queues of a dependent pipeline.

Projects that run a job in common must merge in one order, so they share a
queue: changes to nova and glance that both run the devstack job are tested
one on top of the other. Sharing is transitive. A ``queue-name`` on a job
names the queue its projects share (and joins projects that have nothing
else in common); otherwise a queue is named after its first project in the
layout.
"""

from __future__ import annotations

from gatekeeper.config.layout import Layout

__all__ = ["change_queues"]


def change_queues(layout: Layout, pipeline: str) -> dict[str, str]:
    """Project name -> the name of its change queue in ``pipeline``.

    Projects without jobs in ``pipeline`` are absent.

    :raises ConfigError: a template a project uses cannot be expanded.
    """
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def union(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra

    by_job: dict[str, str] = {}
    by_queue: dict[str, str] = {}
    named: dict[str, str] = {}  # a project -> the queue-name one of its jobs gives
    order: list[str] = []
    for project in layout.projects:
        trees = layout.jobs_for(project.name, pipeline)
        if not trees:
            continue
        parent[project.name] = project.name
        order.append(project.name)
        for tree in trees:
            for job in tree.walk():
                first = by_job.setdefault(job.name, project.name)
                union(first, project.name)
                queue_name = layout.job(job.name).queue_name
                if queue_name:
                    named.setdefault(project.name, queue_name)
                    union(by_queue.setdefault(queue_name, project.name), project.name)
    names: dict[str, str] = {}
    for name in order:  # the first queue-name in the group, in file order
        if name in named:
            names.setdefault(root(name), named[name])
    for name in order:  # else the group's first project
        names.setdefault(root(name), name)
    return {name: names[root(name)] for name in order}
