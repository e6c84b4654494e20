"""The NAS-Bench-201 cell search space: arch strings, op codes, NB201 indices, isomorphism.

A cell is a DAG on 4 nodes (0 = input, 3 = output) with 6 edges, listed in the order of the arch
string ``|e0~0|+|e1~0|e2~1|+|e3~0|e4~1|e5~2|``::

    EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

Each edge carries one of 5 ops; op ids follow NAS-RobBench-201's ``ops.json``::

    OPS = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')

so a cell is also a 6-digit "op code" (``'421211'`` is NB201 index 0). The official NB201 index
order (0…15624) is not lexicographic; it is read from ``nb201_archs/meta.json`` of the data
directory by :class:`SearchSpace`.

Isomorphism (:func:`canonical_form`) is computed here from the graph, following the convention of
NAS-Bench-201 / NATS-Bench (``Structure.to_unique_str(consider_zero=True)`` of the reference
``genotypes.py``): ``skip_connect`` is the identity, a node is the *commutative* sum of its
incoming terms (a sum forwarded by a skip stays one term: sums are not re-associated), ``none`` gives a zero term, an op applied to a node that is a single zero term is
zero, and a dead node contributes a zero term. This reproduces the official isomorphism map
(15,625 cells → 6,466 classes) exactly. Quirk of that convention, kept for parity: a sum of two
or more zero terms is *not* simplified to zero, so the 225+4×29 disconnected cells fall into 5
classes (representatives 10, 12, 74, 172, 879) rather than one; :func:`is_connected` tells
whether the output depends on the input at all.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robntk.core import paths

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
OP_ID: dict[str, int] = {op: i for i, op in enumerate(OPS)}
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = 6
NUM_ARCHS = 5**NUM_EDGES  # 15,625
NUM_UNIQUE = 6466
#: Representatives of the isomorphism classes whose output does not depend on the input.
DISCONNECTED_REPRESENTATIVES = (10, 12, 74, 172, 879)

Arch = tuple[str, ...]  # 6 op names in EDGES order


def parse_arch_str(arch_str: str) -> Arch:
    """Parse an NB201 arch string into its 6 ops (in :data:`EDGES` order).

    Args:
        arch_str: e.g. ``'|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'``.

    Returns:
        Tuple of 6 op names.

    Raises:
        ValueError: malformed string (wrong number of nodes/edges, wrong source indices, missing
            ``|`` delimiters) or an op not in :data:`OPS`.
    """
    if not isinstance(arch_str, str):
        raise ValueError(f"arch_str must be a str, got {type(arch_str).__name__}: {arch_str!r}")
    s = arch_str.strip()
    groups = s.split("+")
    if len(groups) != 3:
        raise ValueError(
            f"malformed arch_str {arch_str!r}: expected 3 node groups separated by '+' "
            "(format |op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
        )
    ops: list[str] = []
    for node, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise ValueError(f"malformed arch_str {arch_str!r}: node group {group!r} must be delimited by '|'")
        entries = group[1:-1].split("|")
        if len(entries) != node:
            raise ValueError(
                f"malformed arch_str {arch_str!r}: node {node} must have {node} incoming edge(s), got {len(entries)}"
            )
        for j, entry in enumerate(entries):
            op, sep, src = entry.rpartition("~")
            if not sep or src != str(j):
                raise ValueError(f"malformed arch_str {arch_str!r}: entry {entry!r} of node {node} must be 'op~{j}'")
            if op not in OP_ID:
                raise ValueError(f"unknown op {op!r} in arch_str {arch_str!r}; allowed ops: {', '.join(OPS)}")
            ops.append(op)
    return tuple(ops)


def format_arch_str(ops: Sequence[str]) -> str:
    """Format 6 ops (in :data:`EDGES` order) as an NB201 arch string.

    Raises:
        ValueError: not 6 ops, or an op not in :data:`OPS`.
    """
    ops = check_ops(ops)
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)


def check_ops(ops: Sequence[str]) -> Arch:
    """Validate 6 op names; returns them as a tuple.

    Raises:
        ValueError: not 6 ops, or an op not in :data:`OPS`.
    """
    ops = tuple(ops)
    if len(ops) != NUM_EDGES:
        raise ValueError(f"a cell has {NUM_EDGES} edges, got {len(ops)} ops: {ops!r}")
    for op in ops:
        if op not in OP_ID:
            raise ValueError(f"unknown op {op!r}; allowed ops: {', '.join(OPS)}")
    return ops


def ops_to_code(ops: Sequence[str]) -> str:
    """6 ops → 6-digit op code of ``ops.json`` (0 none, 1 skip, 2 1×1, 3 3×3, 4 pool)."""
    return "".join(str(OP_ID[op]) for op in check_ops(ops))


def code_to_ops(code: str) -> Arch:
    """6-digit op code → 6 ops.

    Raises:
        ValueError: not 6 digits in 0–4.
    """
    if not (isinstance(code, str) and len(code) == NUM_EDGES and all(c in "01234" for c in code)):
        raise ValueError(f"op code must be 6 digits in 0-4 (e.g. '421211'), got {code!r}")
    return tuple(OPS[int(c)] for c in code)


def ops_to_ids(ops: Sequence[str]) -> tuple[int, ...]:
    """6 ops → 6 integer op ids (:data:`OP_ID`)."""
    return tuple(OP_ID[op] for op in check_ops(ops))


def all_archs_lexicographic() -> list[Arch]:
    """All 15,625 cells in op-code lexicographic order (NOT the official NB201 order)."""
    return [tuple(OPS[i] for i in t) for t in itertools.product(range(len(OPS)), repeat=NUM_EDGES)]


# --------------------------------------------------------------------------- graph reasoning
_ZERO = ("#",)  # a node that is a single zero term


def canonical_form(arch: str | Sequence[str]) -> str:
    """Canonical string of a cell's isomorphism class (NB201 / NATS-Bench convention).

    Two cells are isomorphic (compute the same function up to a permutation of parameters) iff
    their canonical forms are equal. Each node is the sorted (commutative) multiset of the terms
    arriving on its edges; ``skip_connect`` forwards the source node's term(s) unchanged (so
    a forwarded sum stays one term, as in the reference: no re-association), a parametric op wraps the source node as ``(node)@op``, ``none`` or a
    source that is a single zero term gives the zero term ``#``.

    Args:
        arch: arch string or 6 ops.

    Returns:
        The canonical string of node 3, e.g. ``'(0)@avg_pool_3x3+(0)@avg_pool_3x3+...'``.
    """
    ops = parse_arch_str(arch) if isinstance(arch, str) else check_ops(arch)
    nodes: list[tuple[str, ...]] = [("0",)]
    for dst in (1, 2, 3):
        terms: list[str] = []
        for e, (src, d) in enumerate(EDGES):
            if d != dst:
                continue
            op, node = ops[e], nodes[src]
            if op == "none" or node == _ZERO:
                terms.append("#")
            elif op == "skip_connect":
                terms.append("+".join(node))
            else:
                terms.append("(" + "+".join(node) + ")@" + op)
        nodes.append(tuple(sorted(terms)))
    return "+".join(nodes[3])


def is_connected(arch: str | Sequence[str]) -> bool:
    """True iff there is a path input→output through edges whose op is not ``none``.

    A disconnected cell makes the whole network's output independent of its input (the cell
    output is zero in every stage), so its NTK w.r.t. the input-dependent part is degenerate.
    """
    ops = parse_arch_str(arch) if isinstance(arch, str) else check_ops(arch)
    reach = {0}
    for dst in (1, 2, 3):
        if any(d == dst and s in reach and ops[e] != "none" for e, (s, d) in enumerate(EDGES)):
            reach.add(dst)
    return 3 in reach


def edge_params(op: str, C: int) -> int:
    """Trainable parameters of one cell edge of width ``C``: ``nor_conv_k×k`` is ReLU → conv
    (k²C², no bias) → BN (2C), so 9C²+2C and C²+2C; ``none``, ``skip_connect`` and
    ``avg_pool_3x3`` have none (AutoDL ``cell_operations.py`` ``ReLUConvBN``).

    Raises:
        ValueError: ``op`` not one of :data:`OPS`.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")
    k = {"nor_conv_3x3": 3, "nor_conv_1x1": 1}.get(op)
    return 0 if k is None else k * k * C * C + 2 * C


def num_cell_params(arch: str | Sequence[str], C: int) -> int:
    """Trainable parameters of one cell of width ``C`` (the sum of :func:`edge_params`)."""
    ops = parse_arch_str(arch) if isinstance(arch, str) else check_ops(arch)
    return sum(edge_params(op, C) for op in ops)


# --------------------------------------------------------------------------- official order
@dataclass(frozen=True)
class SearchSpace:
    """The 15,625 NB201 cells in official index order, with the isomorphism map.

    Attributes:
        arch_strs: tuple of 15,625 arch strings, position = NB201 index.
        isomorph: tuple of 15,625 ints, the representative index of each cell's class as stored
            in the official map (smallest index of the class).

    Build with :meth:`load` (reads ``nb201_archs/meta.json``).
    """

    arch_strs: tuple[str, ...]
    isomorph: tuple[int, ...]

    @classmethod
    def load(cls, data_dir: str | os.PathLike | None = None) -> SearchSpace:
        """Read ``nb201_archs/meta.json`` (layout ``{"ids": {"i": {"nb201-string", "isomorph"}}}``).

        Raises:
            FileNotFoundError: the file is missing; the message (:func:`robntk.core.paths.data_file`)
                names ``robntk data fetch nb201-archs``, ``--download`` (which fetches it instead)
                and its source.
            ValueError: the file is corrupt (not JSON, missing keys, not 15,625 valid cells).
        """
        return _load_space(str(paths.data_file("nb201_archs/meta.json", data_dir)))

    def __len__(self) -> int:
        return len(self.arch_strs)

    @functools.cached_property
    def _index(self) -> dict[Arch, int]:
        return {parse_arch_str(s): i for i, s in enumerate(self.arch_strs)}

    def index_of(self, arch: str | Sequence[str]) -> int:
        """NB201 index of a cell given as arch string or ops.

        Raises:
            ValueError: malformed arch.
        """
        ops = parse_arch_str(arch) if isinstance(arch, str) else check_ops(arch)
        return self._index[ops]

    def arch_str(self, index: int) -> str:
        """Arch string of an NB201 index.

        Raises:
            ValueError: index not an int in 0…15624.
        """
        return self.arch_strs[self.check_index(index)]

    def ops(self, index: int) -> Arch:
        """6 ops of an NB201 index."""
        return parse_arch_str(self.arch_str(index))

    def check_index(self, index) -> int:
        """Validate an NB201 index (accepts ints and digit strings).

        Raises:
            ValueError: not an integer in 0…15624.
        """
        try:
            i = int(index)
            if str(index).strip() != str(i) and not isinstance(index, int):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"NB201 index must be an integer in 0..{NUM_ARCHS - 1}, got {index!r}") from None
        if not 0 <= i < NUM_ARCHS:
            raise ValueError(f"NB201 index {i} out of range; allowed 0..{NUM_ARCHS - 1}")
        return i

    def resolve(self, arch: int | str | Sequence[str]) -> int:
        """NB201 index from an int, a digit string, an arch string or 6 op names — the one
        ``--arch`` resolver of every command.

        Raises:
            ValueError: an empty string, a bad index, or a malformed arch string (the message
                says which of the two forms was expected).
        """
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            return self.check_index(int(arch))
        if isinstance(arch, str):
            a = arch.strip()
            if not a:
                raise ValueError(
                    "empty architecture: give an NB201 index (0..15624) or an arch string like "
                    "'|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|'"
                )
            if a.lstrip("-").isdigit():
                return self.check_index(int(a))
            if "|" not in a and "~" not in a:
                raise ValueError(
                    f"{arch!r} is neither an NB201 index (0..{NUM_ARCHS - 1}) nor an arch string "
                    "(|op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
                )
            return self.index_of(a)
        if isinstance(arch, (tuple, list)):
            return self.index_of(arch)
        raise ValueError(f"architecture must be an NB201 index or an arch string, got {arch!r}")

    def representative(self, index: int) -> int:
        """Index of the isomorphism-class representative (smallest index of the class)."""
        return self.isomorph[self.check_index(index)]

    @functools.cached_property
    def representatives(self) -> tuple[int, ...]:
        """The 6,466 representative indices, ascending."""
        return tuple(i for i, r in enumerate(self.isomorph) if r == i)

    def computed_isomorph(self) -> list[int]:
        """Isomorphism map computed by :func:`canonical_form` (smallest index per class)."""
        first: dict[str, int] = {}
        out = []
        for i, s in enumerate(self.arch_strs):
            out.append(first.setdefault(canonical_form(s), i))
        return out


@functools.lru_cache(maxsize=4)
def _load_space(path: str) -> SearchSpace:
    try:
        with open(path) as fh:
            meta = json.load(fh)
        ids = meta["ids"]
        strs = tuple(ids[str(i)]["nb201-string"] for i in range(NUM_ARCHS))
        iso = tuple(int(ids[str(i)]["isomorph"]) for i in range(NUM_ARCHS))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"corrupt NB201 meta file {path}: expected {{'ids': {{'0'..'{NUM_ARCHS - 1}': "
            f"{{'nb201-string', 'isomorph'}}}}}} ({type(exc).__name__}: {exc})"
        ) from None
    for s in strs:
        parse_arch_str(s)
    bad = [(i, r) for i, r in enumerate(iso) if not 0 <= r < NUM_ARCHS or iso[r] != r or r > i]
    if bad:
        i, r = bad[0]
        raise ValueError(
            f"corrupt NB201 meta file {path}: cell {i} has isomorph {r}, which is not the index of a "
            f"class representative in 0..{NUM_ARCHS - 1} (smallest index of its class)"
        )
    return SearchSpace(strs, iso)


def sample_indices(space: SearchSpace, n: int, seed: int, unique: bool = True) -> list[int]:
    """Random sample of ``n`` NB201 indices (representatives only if ``unique``), sorted.

    Raises:
        ValueError: ``n`` < 1 or larger than the population.
    """
    import numpy as np

    pool = space.representatives if unique else tuple(range(NUM_ARCHS))
    if not 1 <= n <= len(pool):
        raise ValueError(f"sample size must be in 1..{len(pool)}, got {n}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pool, size=n, replace=False))
