"""The order in which MultiProc starts ready nodes: the longest estimated chain of work first.

nipype's MultiProc starts the nodes whose inputs are ready in the graph's topological order (``tsort``) or
smallest memory first (``mem_thread``). Neither knows which node the end of the run waits for: in
``anat_preproc`` the template's probability maps were warped before the two atlases that the cortical
thickness needs, and the thickness (11 s, then the report) started 2-3 s later than it could.

``critical_path`` (the default of :class:`smriflow.config.execution_models.MultiProcArgs`) ranks every node
by the longest chain of estimated work from it to the end of the graph, its own included (the *upward
rank* of list scheduling, as HEFT uses it), and starts the ready node of highest rank first. A node's
estimate is its YAML ``resources.seconds`` (:attr:`ESTIMATE_ATTR`; 1 s when unset): it orders the nodes,
never limits them, and only relative values matter. Ties keep the topological order, so a graph without
estimates runs in the longest chain of nodes first. The order changes when nodes run, never what they
compute: the derivatives are the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import networkx as nx
from nipype.pipeline.plugins import MultiProcPlugin

__all__ = ["DEFAULT_SECONDS", "ESTIMATE_ATTR", "CriticalPathMultiProc", "estimated_seconds", "upward_ranks"]

#: Attribute of a nipype node holding its YAML ``resources.seconds`` (set by the engine's builder).
ESTIMATE_ATTR = "smriflow_seconds"

#: The estimate of a node without one (sinks, nodes of Python-built workflows).
DEFAULT_SECONDS = 1.0


def estimated_seconds(node: Any) -> float:
    """A node's estimated run time (s): its ``resources.seconds``, else :data:`DEFAULT_SECONDS`."""
    return float(getattr(node, ESTIMATE_ATTR, DEFAULT_SECONDS))


def upward_ranks(graph: nx.DiGraph, cost: Callable[[Hashable], float]) -> dict[Hashable, float]:
    """Longest path (summed ``cost``) from each node to a node without successors, the node's own included.

    Examples
    --------
    >>> g = nx.DiGraph([("a", "b"), ("a", "c"), ("c", "d")])
    >>> upward_ranks(g, {"a": 1, "b": 5, "c": 1, "d": 1}.get)
    {'d': 1.0, 'c': 2.0, 'b': 5.0, 'a': 6.0}
    """
    ranks: dict[Hashable, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        after = max((ranks[succ] for succ in graph.successors(node)), default=0.0)
        ranks[node] = float(cost(node)) + after
    return ranks


def by_rank(jobids: Iterable[int], ranks: Mapping[int, float] | list[float]) -> list[int]:
    """Job ids, highest rank first; equal ranks keep their given order."""
    return sorted(jobids, key=lambda jobid: -ranks[jobid])


class CriticalPathMultiProc(MultiProcPlugin):
    """nipype's MultiProc with a third ``scheduler``, ``critical_path`` (module docstring).

    ``tsort`` and ``mem_thread`` behave as in nipype. The subnodes of a MapNode take the MapNode's rank.
    """

    def _generate_dependency_list(self, graph):
        super()._generate_dependency_list(graph)
        ranks = upward_ranks(graph, estimated_seconds)
        self._ranks = [ranks[node] for node in self.procs]

    def _submit_mapnode(self, jobid):
        before = len(self.procs)
        result = super()._submit_mapnode(jobid)
        self._ranks.extend([self._ranks[jobid]] * (len(self.procs) - before))
        return result

    def _sort_jobs(self, jobids, scheduler="tsort"):
        if scheduler == "critical_path":
            return by_rank(jobids, self._ranks)
        return super()._sort_jobs(jobids, scheduler=scheduler)
