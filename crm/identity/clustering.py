"""Turn match edges into clusters (one cluster = one real customer), honouring steward splits and the size guard.

Edges come with a priority: steward merges (0) before deterministic rules (1) before probabilistic
matches (2, strongest first). Without constraints the clusters are the connected components of all
edges (scipy, fast at millions of records). A component that would put two records a steward has
split into one customer, or that would hold more distinct descriptions of a person (*units*: a
customer with fifty tickets from one address is one unit) than ``max_size``, is re-clustered
greedily in priority order, skipping any edge that would join a forbidden pair or grow a customer
past the limit: the steward's split always wins, a giant merge through a shared mailbox or a
placeholder is refused (and reported), and a steward merge that contradicts a steward split is
reported rather than applied. Steward merges are never refused for size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

PRIORITY_STEWARD = 0
PRIORITY_DETERMINISTIC = 1
PRIORITY_PROBABILISTIC = 2


@dataclass
class ClusterResult:
    labels: np.ndarray  # cluster label per record (0..k-1), records numbered 0..n-1
    skipped_edges: list[tuple[int, int, int]] = field(default_factory=list)  # (a, b, priority)
    n_clusters: int = 0


def _components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


class _UnionFind:
    def __init__(self, nodes, units: dict[int, int] | None = None):
        self.parent = {v: v for v in nodes}
        self.forbidden: dict[int, set[int]] = {v: set() for v in nodes}
        self.units: dict[int, set[int]] = {v: {units[v] if units is not None else v} for v in nodes}

    def find(self, v: int) -> int:
        root = v
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[v] != root:
            self.parent[v], v = root, self.parent[v]
        return root

    def forbid(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        self.forbidden[ra].add(rb)
        self.forbidden[rb].add(ra)

    def union(self, a: int, b: int, max_size: int | None = None) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if rb in self.forbidden[ra]:
            return False
        if max_size is not None and len(self.units[ra] | self.units[rb]) > max_size:
            return False
        if len(self.forbidden[ra]) < len(self.forbidden[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.units[ra] |= self.units.pop(rb)
        for other in self.forbidden.pop(rb):
            self.forbidden[other].discard(rb)
            self.forbidden[other].add(ra)
            self.forbidden[ra].add(other)
        return True


def cluster_records(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    priority: np.ndarray,
    weight: np.ndarray | None = None,
    cannot_link: list[tuple[int, int]] | None = None,
    units: np.ndarray | None = None,
    max_size: int | None = None,
) -> ClusterResult:
    """Cluster records 0..n-1 given undirected edges (src[i], dst[i]).

    ``priority`` orders edges when a constraint forces a choice (lower first); ``weight`` (higher
    first) orders edges of equal priority. ``cannot_link`` pairs never end in one cluster. With
    ``max_size``, no cluster holds more than that many distinct ``units`` (default: each record is
    one unit) unless steward merges put them together.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    priority = np.asarray(priority, dtype=np.int64)
    weight = np.zeros(len(src)) if weight is None else np.asarray(weight, dtype=float)
    labels = _components(n, src, dst)
    skipped: list[tuple[int, int, int]] = []
    cannot_link = [(a, b) for a, b in (cannot_link or []) if a != b]
    conflicted = {int(labels[a]) for a, b in cannot_link if labels[a] == labels[b]}
    unit_of = np.arange(n, dtype=np.int64) if units is None else np.asarray(units, dtype=np.int64)
    if max_size is not None and n:
        pairs = np.unique(np.stack([labels, unit_of]), axis=1)
        sizes = np.bincount(pairs[0], minlength=int(labels.max()) + 1)
        conflicted |= {int(c) for c in np.flatnonzero(sizes > max_size)}
    if conflicted:
        next_label = int(labels.max()) + 1 if n else 0
        for comp in sorted(conflicted):
            nodes = np.flatnonzero(labels == comp)
            node_set = set(nodes.tolist())
            in_comp = np.isin(src, nodes)
            e_src, e_dst, e_pri, e_w = src[in_comp], dst[in_comp], priority[in_comp], weight[in_comp]
            # priority, then strength, then the record numbers: the same input always gives the
            # same clusters (polars/duckdb do not promise edge order)
            order = np.lexsort((e_dst, e_src, -e_w, e_pri))
            uf = _UnionFind(nodes.tolist(), {int(v): int(unit_of[v]) for v in nodes})
            for a, b in cannot_link:
                if a in node_set and b in node_set:
                    uf.forbid(a, b)
            for i in order:
                a, b = int(e_src[i]), int(e_dst[i])
                cap = None if e_pri[i] == PRIORITY_STEWARD else max_size
                if not uf.union(a, b, cap):
                    skipped.append((a, b, int(e_pri[i])))
            roots: dict[int, int] = {}
            for v in nodes.tolist():
                r = uf.find(v)
                if r not in roots:
                    # the part holding the component's smallest record keeps the old label
                    roots[r] = comp if not roots else next_label
                    if roots[r] == next_label:
                        next_label += 1
                labels[v] = roots[r]
    # relabel densely 0..k-1 in order of each cluster's smallest record
    if n:
        _, first_idx, inverse = np.unique(labels, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first_idx))
        labels = rank[inverse].astype(np.int64)
    return ClusterResult(labels=labels, skipped_edges=skipped, n_clusters=int(labels.max()) + 1 if n else 0)
