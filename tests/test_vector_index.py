"""Property tests of the vector index (`huedb.engine.vector_index`) and its snapshots.

Every result is compared with a brute-force reference model: a dict key -> float32 vector,
searched with numpy in float64 from the same float32 inputs. Distances follow Chroma
(l2 = squared L2, ip = 1 - dot, cosine = 1 - cosine similarity; a zero vector has cosine
similarity 0, as in `exact_distances`). Ties may reorder hits, so exact searches are
compared by their sorted distances, and by keys only where distances are distinct.

Covered: `FlatVectors` under random upserts/removals; `VectorIndex` in exact mode and in
graph mode (with and without attached `FlatVectors`, i.e. ranking through `fetch`),
filtered searches on both sides of `filtered_exact_max_floats`, recall on clustered data,
mutations of a graph index, `with_exact_matches`, `mismatched`, and the snapshot round trip
through `snapshot.write_snapshot` / `read_snapshot` / `VectorIndex.from_serialized`.

`HUEDB_HYPOTHESIS_EXAMPLES` scales the number of examples (default 150, as in the stateful
test; each property runs a fixed fraction of it).
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from huedb.engine import snapshot, vector_index
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    FlatVectors,
    HnswParams,
    Loan,
    Thresholds,
    VectorIndex,
    at_graph_precision,
    build_graph,
    top_k_exact,
)
from tests.knobs import knob

EXAMPLES = int(knob("HUEDB_HYPOTHESIS_EXAMPLES", "150"))
SPACES = ["l2", "ip", "cosine"]
RTOL = 1e-5  # float32 distances against the float64 reference
EXACT = Thresholds(exact_max_floats=10**12, filtered_exact_max_floats=10**12)

Ref = dict[int, np.ndarray]


def scaled(fraction: float) -> settings:
    """Hypothesis settings running `fraction` of HUEDB_HYPOTHESIS_EXAMPLES examples."""
    return settings(
        max_examples=max(3, int(EXAMPLES * fraction)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- reference


def ref_distances(space: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Chroma's distances from `query` to every row, in float64."""
    m = np.asarray(matrix, dtype=np.float32).astype(np.float64)
    q = np.asarray(query, dtype=np.float32).astype(np.float64)
    if space == "l2":
        return ((m - q) ** 2).sum(axis=1)
    dots = m @ q
    if space == "ip":
        return 1.0 - dots
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return 1.0 - cos


def ref_tolerance(space: str, matrix: np.ndarray, query: np.ndarray, dists: np.ndarray):
    """How far a float32 computation of each distance may be from the float64 one.

    Tight enough that distances computed from the half-precision graph vectors fail it.
    """
    m = np.asarray(matrix, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if space == "l2":  # differences first, then squares: accurate relative to the distance
        return RTOL * np.abs(dists) + 1e-9
    if space == "ip":  # a float32 dot product: accurate relative to |m| |q|
        return RTOL * (np.abs(dists) + np.linalg.norm(m, axis=1) * np.linalg.norm(q)) + 1e-7
    return RTOL * (np.abs(dists) + 1.0) + 1e-7


def ref_vectors(ref: Ref, keys) -> np.ndarray:
    return np.stack([ref[int(k)] for k in keys]).astype(np.float32)


def check_hits(
    hits,
    space: str,
    ref: Ref,
    query: np.ndarray,
    k: int,
    among=None,
    exact: bool = True,
    what: str = "",
) -> None:
    """Assert that `hits` are a valid answer for the k nearest to `query` in `ref`.

    Always: the right number of distinct hits, all from the pool (`among`, else every key),
    each with its exact float32 distance, sorted. With `exact`: the k smallest distances,
    and every key strictly closer than the k-th distance is among the hits.
    """
    keys, dists = hits
    pool = sorted(ref) if among is None else sorted({int(x) for x in among})
    want_n = max(0, min(k, len(pool)))
    got = [int(x) for x in keys]
    assert dists.dtype == np.float32, f"{what}: distances are {dists.dtype}, not float32"
    assert len(got) == len(dists) == want_n, f"{what}: {len(got)} hits, expected {want_n}"
    assert len(set(got)) == len(got), f"{what}: duplicate keys {got}"
    outside = set(got) - set(pool)
    assert not outside, f"{what}: keys {sorted(outside)} are not among the candidates"
    if want_n == 0:
        return
    matrix = ref_vectors(ref, pool)
    all_ref = ref_distances(space, matrix, query)
    all_tol = ref_tolerance(space, matrix, query, all_ref)
    position = {key: i for i, key in enumerate(pool)}
    for key, d in zip(got, dists, strict=True):
        i = position[key]
        assert abs(float(d) - all_ref[i]) <= all_tol[i], (
            f"{what}: key {key} has distance {float(d)!r}, exact is {all_ref[i]!r} ({space})"
        )
    assert np.all(np.diff(dists) >= 0), f"{what}: distances not sorted: {dists}"
    if not exact:
        return
    order = np.argsort(all_ref, kind="stable")
    best = all_ref[order[:want_n]]
    slack = all_tol[order[:want_n]] + all_tol.max()
    assert np.all(np.abs(np.sort(dists.astype(np.float64)) - best) <= slack), (
        f"{what}: distances {dists} are not the {want_n} smallest {best}"
    )
    kth = best[-1]
    must = {pool[i] for i in range(len(pool)) if all_ref[i] < kth - 2 * all_tol.max()}
    assert must <= set(got), f"{what}: missed strictly closer keys {sorted(must - set(got))}"


class Fetch:
    """The caller's vector lookup, backed by the reference (KeyError for an absent key)."""

    def __init__(self, ref: Ref, dim: int) -> None:
        self.ref = ref
        self.dim = dim
        self.calls = 0

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        self.calls += 1
        if len(keys) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return ref_vectors(self.ref, keys)


def forbidden_fetch(keys: np.ndarray) -> np.ndarray:
    raise AssertionError(f"fetch({len(keys)} keys) used although the index holds FlatVectors")


def make_vectors(rng: np.random.Generator, n: int, dim: int, clustered: bool) -> np.ndarray:
    if clustered:
        centers = rng.standard_normal((max(2, n // 40), dim)) * 3.0
        labels = rng.integers(0, len(centers), n)
        vectors = centers[labels] + 0.4 * rng.standard_normal((n, dim))
    else:
        vectors = rng.standard_normal((n, dim))
    return vectors.astype(np.float32)


def make_reference(rng: np.random.Generator, n: int, dim: int, clustered: bool) -> Ref:
    """n vectors under sparse, shuffled keys (so key != row), a few of them duplicated."""
    keys = rng.choice(4 * n, size=n, replace=False)
    vectors = make_vectors(rng, n, dim, clustered)
    for i in rng.choice(n, size=max(1, n // 25), replace=False):
        vectors[i] = vectors[rng.integers(n)]
    return {int(k): v for k, v in zip(keys, vectors, strict=True)}


def make_queries(rng: np.random.Generator, ref: Ref, dim: int) -> list[np.ndarray]:
    """A random vector, a stored vector, a perturbed and a scaled stored vector."""
    stored = ref_vectors(ref, rng.choice(sorted(ref), size=3))
    return [
        rng.standard_normal(dim).astype(np.float32),
        stored[0],
        (stored[1] + 0.05 * rng.standard_normal(dim)).astype(np.float32),
        (stored[2] * 2.5).astype(np.float32),
    ]


def graph_index(
    ref: Ref, dim: int, space: str, thresholds: Thresholds, with_flat: bool
) -> VectorIndex:
    """A graph-mode index over the reference's content, optionally with its FlatVectors."""
    params = HnswParams(space=space)
    keys = np.asarray(sorted(ref), dtype=np.uint64)
    vectors = ref_vectors(ref, keys)
    index = VectorIndex.from_graph(dim, params, thresholds, build_graph(dim, params, keys, vectors))
    if with_flat:
        flat = FlatVectors(dim)
        flat.upsert(keys, vectors)
        index.attach_vectors(flat)
    return index


def check_index_state(index: VectorIndex, ref: Ref) -> None:
    assert len(index) == len(ref)
    assert sorted(index.keys().tolist()) == sorted(ref)
    if index.flat is not None:
        keys = np.asarray(sorted(ref), dtype=np.uint64)
        assert np.array_equal(index.flat.gather(keys), ref_vectors(ref, keys))


# --------------------------------------------------------------------------- FlatVectors

flat_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("upsert"),
            st.lists(st.integers(0, 150), min_size=1, max_size=40),
            st.integers(0, 2**32 - 1),
        ),
        st.tuples(
            st.just("remove"),
            st.lists(st.integers(0, 170), max_size=40),
            st.just(0),
        ),
        st.tuples(st.just("lend"), st.just([]), st.just(0)),
        st.tuples(st.just("borrow"), st.just([]), st.just(0)),
        st.tuples(st.just("give_back"), st.just([]), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("reserve"), st.just([]), st.integers(0, 300)),
    ),
    min_size=1,
    max_size=12,
)


def check_flat(flat: FlatVectors, ref: Ref, dim: int, rng: np.random.Generator) -> None:
    """FlatVectors agrees with the reference on content, rows, gather and searches."""
    assert len(flat) == len(ref)
    keys = flat.keys()  # not contents(): that lends the arrays, changing later writes
    assert sorted(keys.tolist()) == sorted(ref)
    for key, vector in zip(keys.tolist(), flat.gather(keys), strict=True):
        assert np.array_equal(vector, ref[key]), f"gather: key {key} holds a stale vector"
    probe = np.arange(0, 100, dtype=np.uint64)  # present, absent and beyond the key map
    rows = flat.rows(probe)
    for key, row in zip(probe.tolist(), rows.tolist(), strict=True):
        assert (row >= 0) == (key in ref), f"rows: key {key} -> row {row}"
    present_rows = rows[rows >= 0]
    assert len(set(present_rows.tolist())) == len(present_rows), "two keys share a row"
    assert set(present_rows.tolist()) <= set(range(len(ref)))
    if ref:
        order = rng.permutation(sorted(ref)).astype(np.uint64)
        assert np.array_equal(flat.gather(order), ref_vectors(ref, order))
    absent = next(k for k in range(200) if k not in ref)
    with pytest.raises(KeyError):
        flat.gather(np.asarray([*list(ref)[:1], absent], dtype=np.uint64))
    for space in SPACES:
        for query in make_queries(rng, ref, dim) if ref else [rng.standard_normal(dim)]:
            query = np.asarray(query, dtype=np.float32)
            k = int(rng.integers(0, 12)) if rng.random() < 0.5 else 1
            what = f"FlatVectors.search({space}, k={k})"
            check_hits(flat.search(space, query, k), space, ref, query, k, what=what)
            if ref:
                size = int(rng.integers(1, len(ref) + 1))
                among = rng.choice(sorted(ref), size=size, replace=False).astype(np.uint64)
                what = f"FlatVectors.search_among({space}, k={k}, {size} keys)"
                hits = flat.search_among(space, query, k, among)
                check_hits(hits, space, ref, query, k, among=among, what=what)
        if ref:
            with pytest.raises(KeyError):
                flat.search_among(space, np.zeros(dim, np.float32), 3, np.asarray([absent]))
    # Stored vectors find themselves first: cosine shortlists with the norms kept per row.
    for key in rng.choice(sorted(ref), size=min(16, len(ref)), replace=False) if ref else []:
        query = ref[int(key)]
        for space in ("l2", "cosine"):
            hits = flat.search(space, query, 1)
            check_hits(hits, space, ref, query, 1, what=f"FlatVectors.search({space}) own")


@scaled(1.0)
@given(
    dim=st.integers(1, 6),
    grid=st.booleans(),
    initial=st.integers(0, 120),
    ops=flat_ops,
    seed=st.integers(0, 2**32 - 1),
)
def test_flat_vectors_follow_reference(dim: int, grid: bool, initial: int, ops, seed: int) -> None:
    """Random upserts (new, existing, repeated keys) and removals, checked after each step.

    `grid` draws small integer components: many ties and some zero vectors. `lend` takes
    `contents()`, whose arrays are lent without a copy: later changes must never alter them;
    `borrow` takes a loan, whose arrays must not change until `give_back` returns it.
    """
    rng = np.random.default_rng(seed)
    flat = FlatVectors(dim)
    ref: Ref = {}
    lent: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    loans: list[tuple[Loan, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    check_flat(flat, ref, dim, rng)
    # A bulk load first (in shuffled key order), so that searches shortlist with BLAS.
    loaded = [int(k) for k in rng.choice(151, size=initial, replace=False)]
    for op, keys, op_seed in [("upsert", loaded, seed), *ops] if loaded else ops:
        op_rng = np.random.default_rng(op_seed)
        if op == "lend":
            lent_keys, lent_vectors = flat.contents()
            assert sorted(lent_keys.tolist()) == sorted(ref)
            for key, vector in zip(lent_keys.tolist(), lent_vectors, strict=True):
                assert np.array_equal(vector, ref[key])
            lent.append((lent_keys, lent_vectors, lent_keys.copy(), lent_vectors.copy()))
        elif op == "borrow":
            loan = flat.borrow()
            loans.append((loan, loan.keys, loan.matrix, loan.keys.copy(), loan.matrix.copy()))
        elif op == "give_back":
            if loans:
                loans.pop(op_seed % len(loans))[0].give_back()
        elif op == "reserve":
            flat.reserve(op_seed)
        elif op == "upsert":
            if grid:
                vectors = op_rng.integers(-2, 3, (len(keys), dim)).astype(np.float32)
            else:
                vectors = op_rng.standard_normal((len(keys), dim))
                vectors *= np.exp(op_rng.uniform(-2, 2, (len(keys), 1)))  # varied norms
                vectors = vectors.astype(np.float32)
            flat.upsert(np.asarray(keys, dtype=np.uint64), vectors)
            for key, vector in zip(keys, vectors, strict=True):
                ref[key] = vector.copy()  # a key twice in one batch: the last wins
        else:
            flat.remove(np.asarray(keys, dtype=np.uint64))
            for key in keys:
                ref.pop(key, None)
        check_flat(flat, ref, dim, rng)
        held = lent + [loan[1:] for loan in loans]
        for lent_keys, lent_vectors, keys_then, vectors_then in held:
            assert np.array_equal(lent_keys, keys_then), f"lent keys changed by {op}"
            assert np.array_equal(lent_vectors, vectors_then), f"lent vectors changed by {op}"


@scaled(0.5)
@given(
    space=st.sampled_from(SPACES),
    n=st.integers(1, 120),
    dim=st.integers(1, 8),
    k=st.integers(0, 130),
    grid=st.booleans(),
    pass_norms=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_k_exact_matches_brute_force(
    space: str, n: int, dim: int, k: int, grid: bool, pass_norms: bool, seed: int
) -> None:
    """The BLAS shortlist never drops a true neighbour, with or without precomputed norms."""
    rng = np.random.default_rng(seed)
    if grid:
        matrix = rng.integers(-2, 3, (n, dim)).astype(np.float32)
    else:
        matrix = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(rng.uniform(0.1, 5))
    keys = rng.choice(10 * n, size=n, replace=False).astype(np.uint64)
    ref = {int(key): row for key, row in zip(keys, matrix, strict=True)}
    norms = np.linalg.norm(matrix, axis=1) if pass_norms else None
    for query in make_queries(rng, ref, dim):
        hits = top_k_exact(space, matrix, keys, query, k, norms)
        check_hits(hits, space, ref, query, k, what=f"top_k_exact({space}, k={k})")


# Regression: the l2 shortlist used to be |m|^2 - 2 m.q in float32, which cancels for vectors
# clustered far from the origin (here around (1, ..., 1)) and made "exact" search miss true
# nearest neighbours.
def test_exact_l2_search_on_offset_data() -> None:
    """Exact search stays exact for vectors clustered far from the origin."""
    rng = np.random.default_rng(3)
    n, dim, k = 2000, 16, 10
    matrix = (1.0 + 0.001 * rng.standard_normal((n, dim))).astype(np.float32)
    keys = np.arange(n, dtype=np.uint64)
    flat = FlatVectors(dim)
    flat.upsert(keys, matrix)
    failures = []
    for i in range(20):
        query = (1.0 + 0.001 * rng.standard_normal(dim)).astype(np.float32)
        best = np.sort(ref_distances("l2", matrix, query))[:k]
        for name, (_, dists) in [
            ("search", flat.search("l2", query, k)),
            ("search_among", flat.search_among("l2", query, k, rng.permutation(keys))),
        ]:
            if not np.allclose(dists, best, rtol=RTOL, atol=0):
                failures.append(f"{name} #{i}: k-th {dists[-1]:.6g}, true {best[-1]:.6g}")
    assert not failures, f"{len(failures)} of 40 searches not exact: {failures}"


def test_a_growing_matrix_never_moves_past_the_reserved_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past RESERVED_MIN_ROWS the matrix is room for as many rows as memory holds: appends
    never copy it again (a writer's copies of 0.7 and 1.4 GB stalled writes 2-5 s at 1M),
    rows lent to a build stay as they were, and an update while lent copies the rows held
    into new room (the lent ones unchanged)."""
    monkeypatch.setattr(vector_index, "RESERVED_MIN_ROWS", 256)
    dim, rng = 8, np.random.default_rng(9)
    flat = FlatVectors(dim)
    vectors = rng.standard_normal((6_000, dim)).astype(np.float32)
    flat.upsert(np.arange(200, dtype=np.uint64), vectors[:200])
    flat.upsert(np.arange(200, 300, dtype=np.uint64), vectors[200:300])  # past 256 rows
    room = flat._matrix
    owner = room
    while isinstance(owner, np.ndarray | memoryview):
        owner = owner.base if isinstance(owner, np.ndarray) else owner.obj
    assert isinstance(owner, mmap.mmap) and len(room) >= 6_000
    lent_keys, lent_rows = flat.contents()
    for lo in range(300, 6_000, 700):  # appends while lent
        hi = min(lo + 700, 6_000)
        flat.upsert(np.arange(lo, hi, dtype=np.uint64), vectors[lo:hi])
    assert flat._matrix is room and flat._loans, "the matrix moved or stopped being lent"
    assert np.array_equal(lent_rows, vectors[:300]) and np.array_equal(lent_keys, np.arange(300))
    flat.upsert(np.array([5], dtype=np.uint64), np.zeros((1, dim), dtype=np.float32))
    assert flat._matrix is not room and not flat._loans
    assert np.array_equal(lent_rows[5], vectors[5]), "a lent row was changed in place"
    expect = vectors.copy()
    expect[5] = 0
    assert np.array_equal(flat.gather(np.arange(6_000, dtype=np.uint64)), expect)
    flat.remove(np.arange(0, 6_000, 3, dtype=np.uint64))
    kept = np.setdiff1d(np.arange(6_000), np.arange(0, 6_000, 3))
    assert len(flat) == len(kept)
    assert np.array_equal(flat.gather(kept.astype(np.uint64)), expect[kept])


def test_rows_given_back_change_in_place_again() -> None:
    """While a loan is out a change copies the arrays (the loan's rows stay as they were);
    once every loan of the arrays as they are is given back, changes are made in place (a
    1M x 384 writer copied 1.5 GB at its first update after a build when loans were never
    returned); a loan of arrays that have since moved does not count when given back."""
    dim, rng = 4, np.random.default_rng(5)
    flat = FlatVectors(dim)
    vectors = rng.standard_normal((100, dim)).astype(np.float32)
    flat.upsert(np.arange(100, dtype=np.uint64), vectors)
    first, second = flat.borrow(), flat.borrow()
    room = flat._matrix
    first.give_back()
    flat.upsert(np.array([1], dtype=np.uint64), np.ones((1, dim), dtype=np.float32))
    assert flat._matrix is not room, "changed in place while a loan was out"
    assert np.array_equal(second.matrix, vectors), "a borrowed row was changed"
    old_loan, room = second, flat._matrix
    current = flat.borrow()
    old_loan.give_back()  # of arrays that have moved: `current` is still out
    old_loan.give_back()  # twice: no effect
    flat.remove(np.array([2], dtype=np.uint64))
    assert flat._matrix is not room and current.matrix[2].tolist() == vectors[2].tolist()
    current.give_back()  # of arrays that have moved too
    last = flat.borrow()
    last.give_back()
    room = flat._matrix
    flat.upsert(np.array([3], dtype=np.uint64), np.zeros((1, dim), dtype=np.float32))
    flat.remove(np.array([4], dtype=np.uint64))
    assert flat._matrix is room, "copied although every loan was given back"
    expect = {k: vectors[k] for k in range(100) if k not in (2, 4)}
    expect[1], expect[3] = np.ones(dim), np.zeros(dim)
    keys = np.array(sorted(expect), dtype=np.uint64)
    assert np.array_equal(flat.gather(keys), np.array([expect[k] for k in sorted(expect)]))


# --------------------------------------------------------------------------- VectorIndex


@scaled(1.0)
@given(
    space=st.sampled_from(SPACES),
    dim=st.integers(4, 16),
    n=st.integers(50, 400),
    mode=st.sampled_from(["exact", "graph+flat", "graph+fetch"]),
    clustered=st.booleans(),
    exact_allowed=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
)
def test_vector_index_searches(
    space: str, dim: int, n: int, mode: str, clustered: bool, exact_allowed: int, seed: int
) -> None:
    """Unfiltered and filtered searches in exact and graph mode, against brute force.

    Graph mode: every distance is the exact float32 one (the graph is f16); filtered
    searches with len(allowed) * dim <= filtered_exact_max_floats are exact, larger ones
    stay inside `allowed` and return min(k, len(allowed)) hits; `fetch` is used if and
    only if the index holds no FlatVectors.
    """
    rng = np.random.default_rng(seed)
    ref = make_reference(rng, n, dim, clustered)
    exact_allowed = min(exact_allowed, n)
    if mode == "exact":
        index = VectorIndex(dim, HnswParams(space=space), EXACT)
        keys = np.asarray(list(ref), dtype=np.uint64)
        for part in np.array_split(keys, 3):
            index.upsert(part, ref_vectors(ref, part))
        assert not index.uses_graph and index.has_vectors and not index.wants_graph
        contents = index.contents()
        assert sorted(contents[0].tolist()) == sorted(ref)
    else:
        thresholds = Thresholds(exact_max_floats=0, filtered_exact_max_floats=exact_allowed * dim)
        index = graph_index(ref, dim, space, thresholds, with_flat=mode == "graph+flat")
        assert index.uses_graph and index.has_vectors == (mode == "graph+flat")
    check_index_state(index, ref)
    fetch = Fetch(ref, dim) if mode == "graph+fetch" else forbidden_fetch
    graph = mode != "exact"
    all_keys = np.asarray(sorted(ref), dtype=np.uint64)
    for query in make_queries(rng, ref, dim):
        for k in (1, int(rng.integers(2, 25)), n + 3):
            what = f"{mode} search({space}, k={k})"
            hits = index.search(query, k, None, fetch)
            check_hits(hits, space, ref, query, k, exact=not graph, what=what)
        k = int(rng.integers(1, 25))
        sizes = {1, exact_allowed, min(n, exact_allowed + 1), int(rng.integers(1, n + 1)), n}
        for size in sorted(sizes):
            allowed = rng.choice(all_keys, size=size, replace=False)
            exact = not graph or size * dim <= index.thresholds.filtered_exact_max_floats
            what = f"{mode} search({space}, k={k}, {size} allowed, exact={exact})"
            hits = index.search(query, k, allowed, fetch)
            check_hits(hits, space, ref, query, k, among=allowed, exact=exact, what=what)
        # Allowed keys all far from the query: graph candidates hold too few of them.
        size = min(n, exact_allowed + 1 + int(rng.integers(0, n // 4)))
        far = all_keys[np.argsort(ref_distances(space, ref_vectors(ref, all_keys), query))]
        allowed = far[-size:]
        exact = not graph or size * dim <= index.thresholds.filtered_exact_max_floats
        hits = index.search(query, k, allowed, fetch)
        what = f"{mode} search({space}, k={k}, {size} far allowed, exact={exact})"
        check_hits(hits, space, ref, query, k, among=allowed, exact=exact, what=what)
        assert index.search(query, k, np.empty(0, dtype=np.uint64), fetch)[0].size == 0
    if mode == "graph+fetch":
        assert fetch.calls > 0, "graph candidates were never ranked through fetch"


@pytest.mark.parametrize("with_flat", [True, False], ids=["flat", "fetch"])
@pytest.mark.parametrize("space", SPACES)
def test_graph_recall_on_clustered_data(space: str, with_flat: bool) -> None:
    """A sanity bound: unfiltered graph search finds >= 90% of the true 10 nearest."""
    rng = np.random.default_rng(7)
    dim, n = 16, 400
    ref = make_reference(rng, n, dim, clustered=True)
    index = graph_index(ref, dim, space, Thresholds(0, 0), with_flat)
    fetch = forbidden_fetch if with_flat else Fetch(ref, dim)
    all_keys = np.asarray(sorted(ref), dtype=np.uint64)
    matrix = ref_vectors(ref, all_keys)
    recalls = []
    for i in range(50):
        base = matrix[rng.integers(n)] if i % 2 else rng.standard_normal(dim) * 3
        query = (base + 0.3 * rng.standard_normal(dim)).astype(np.float32)
        truth = set(all_keys[np.argsort(ref_distances(space, matrix, query))[:10]].tolist())
        hits = index.search(query, 10, None, fetch)
        check_hits(hits, space, ref, query, 10, exact=False, what="recall query")
        recalls.append(len(truth & set(hits[0].tolist())) / 10)
    assert np.mean(recalls) >= 0.9, f"mean recall@10 {np.mean(recalls):.3f}"


# --------------------------------------------------------------------------- mutations

mutation_ops = st.lists(
    st.tuples(
        st.sampled_from(["update", "insert", "remove", "mixed"]),
        st.integers(1, 40),
        st.integers(0, 2**32 - 1),
    ),
    min_size=1,
    max_size=6,
)


def mutate(index: VectorIndex, ref: Ref, op: str, count: int, seed: int, dim: int) -> list[int]:
    """Apply one random change to both the index and the reference; return updated keys."""
    rng = np.random.default_rng(seed)
    present = sorted(ref)
    fresh_base = max(present, default=0) + 1
    updated: list[int] = []
    if op in ("update", "mixed") and present:
        updated = [
            int(k) for k in rng.choice(present, size=min(count, len(present)), replace=False)
        ]
    inserted = list(range(fresh_base, fresh_base + count)) if op in ("insert", "mixed") else []
    if op == "remove":
        gone = [
            int(k) for k in rng.choice(present, size=min(count, len(present) - 1), replace=False)
        ]
        gone += [fresh_base + 1000, gone[0] if gone else 0]  # absent and repeated keys
        index.remove(np.asarray(gone, dtype=np.uint64))
        for key in gone:
            ref.pop(key, None)
        return []
    keys = updated + inserted
    order = rng.permutation(len(keys))
    keys = [keys[i] for i in order]
    vectors = rng.standard_normal((len(keys), dim)).astype(np.float32)
    index.upsert(np.asarray(keys, dtype=np.uint64), vectors)
    for key, vector in zip(keys, vectors, strict=True):
        ref[key] = vector
    return updated


def check_exact_match_merge(
    index: VectorIndex, ref: Ref, space: str, key: int, fetch, what: str
) -> None:
    """with_exact_matches puts a record holding the query vector where it belongs."""
    query = ref[key].copy()
    k = 5
    hits = index.search(query, k, None, fetch)
    same = [other for other, v in ref.items() if np.array_equal(v, query)]
    # Simulate a graph that missed the record: drop it from the hits, then merge it back.
    keep = ~np.isin(hits[0], np.asarray(same, dtype=np.uint64))
    missed = (hits[0][keep], hits[1][keep])
    merged = index.with_exact_matches(query, k, missed, same, fetch)
    check_hits(merged, space, ref, query, k, exact=False, what=f"{what} with_exact_matches")
    if space in ("l2", "cosine"):
        assert int(merged[0][0]) in same, f"{what}: own vector not at rank 0: {merged}"
        assert abs(float(merged[1][0])) <= 1e-5, f"{what}: own distance {merged[1][0]}"
    else:  # ip: the record's own vector is not necessarily the best match
        own = float(ref_distances(space, query[None, :], query)[0])
        if own < float(merged[1][-1]) - 1e-4:
            assert key in merged[0].tolist(), f"{what}: closer exact match left out"
    unchanged = index.with_exact_matches(query, k, hits, [int(x) for x in hits[0]], fetch)
    assert unchanged[0].tolist() == hits[0].tolist()


@scaled(0.6)
@given(
    space=st.sampled_from(SPACES),
    dim=st.integers(4, 12),
    n=st.integers(50, 200),
    with_flat=st.booleans(),
    ops=mutation_ops,
    seed=st.integers(0, 2**32 - 1),
)
def test_graph_mutations_follow_reference(
    space: str, dim: int, n: int, with_flat: bool, ops, seed: int
) -> None:
    """Upserts of existing and new keys and removals keep a graph index consistent."""
    rng = np.random.default_rng(seed)
    ref = make_reference(rng, n, dim, clustered=False)
    index = graph_index(ref, dim, space, Thresholds(0, 10 * dim), with_flat)
    fetch = forbidden_fetch if with_flat else Fetch(ref, dim)
    removed: set[int] = set()
    for step, (op, count, op_seed) in enumerate(ops):
        before = set(ref)
        updated = mutate(index, ref, op, count, op_seed, dim)
        removed = (removed | before) - set(ref)
        check_index_state(index, ref)
        keys = np.asarray(sorted(ref), dtype=np.uint64)
        assert index.mismatched(keys, ref_vectors(ref, keys)) == [], "graph holds stale vectors"
        what = f"step {step} ({op} {count}, {space}, flat={with_flat})"
        queries = make_queries(rng, ref, dim)
        if updated:
            queries.append(ref[updated[0]])
        for query in queries:
            k = int(rng.integers(1, 20))
            hits = index.search(query, k, None, fetch)
            assert not removed & set(hits[0].tolist()), f"{what}: removed key returned"
            check_hits(hits, space, ref, query, k, exact=False, what=what)
            for size in (min(5, len(ref)), max(1, len(ref) // 2)):  # below, above the threshold
                allowed = rng.choice(keys, size=size, replace=False)
                hits = index.search(query, k, allowed, fetch)
                exact = size * dim <= index.thresholds.filtered_exact_max_floats
                check_hits(hits, space, ref, query, k, allowed, exact, f"{what} filtered")
        for key in updated[:2] or [int(keys[0])]:
            check_exact_match_merge(index, ref, space, key, fetch, what)


# --------------------------------------------------------------------------- snapshots

OWNER = "store-1/collection-1"


def saved_graph(index: VectorIndex, directory: Path) -> bytes:
    """The index's graph as `save_graph` writes it for a snapshot."""
    path = directory / "graph.usearch"
    index.save_graph(path)
    try:
        return path.read_bytes()
    finally:
        path.unlink()


def write_and_read(path: Path, index: VectorIndex, dim: int, space: str, watermark: int):
    payload = saved_graph(index, path.parent)
    assert payload
    snapshot.write_snapshot_streamed(path, OWNER, watermark, dim, space, index.save_graph)
    snap = snapshot.read_snapshot(path, OWNER)
    assert snap is not None
    assert (snap.watermark, snap.dim, snap.space) == (watermark, dim, space)
    assert bytes(snap.payload) == payload
    return snap


@pytest.mark.parametrize("attach", [False, True], ids=["fetch", "flat"])
@pytest.mark.parametrize("space", SPACES)
def test_snapshot_round_trip(tmp_path: Path, space: str, attach: bool) -> None:
    """A mapped snapshot serves the same results; changing it copies it and follows the model."""
    rng = np.random.default_rng(11)
    dim, n = 12, 300
    ref = make_reference(rng, n, dim, clustered=True)
    thresholds = Thresholds(0, 20 * dim)
    original = graph_index(ref, dim, space, thresholds, with_flat=True)
    path = snapshot.snapshot_path(tmp_path, "collection-1")
    snap = write_and_read(path, original, dim, space, watermark=42)
    assert snapshot.read_snapshot(path, "store-1/collection-2") is None  # foreign owner
    params = HnswParams(space=space)
    view = VectorIndex.from_serialized(dim, params, thresholds, snap.payload, snap.mapping)
    assert view.uses_graph and not view.has_vectors
    check_index_state(view, ref)
    keys = np.asarray(sorted(ref), dtype=np.uint64)
    assert view.mismatched(keys, ref_vectors(ref, keys)) == []
    fetch = Fetch(ref, dim)
    if attach:
        flat = FlatVectors(dim)
        flat.upsert(keys, ref_vectors(ref, keys))
        view.attach_vectors(flat)
        fetch = forbidden_fetch
    # The graph the snapshot holds (linked in where no search reached a node), in memory.
    loaded = VectorIndex.from_serialized(dim, params, thresholds, bytes(snap.payload), None)
    queries = [q for _ in range(5) for q in make_queries(rng, ref, dim)]
    for query in queries:
        for allowed in (
            None,
            rng.choice(keys, 10, replace=False),
            rng.choice(keys, 200, replace=False),
        ):
            want = loaded.search(query, 10, allowed, Fetch(ref, dim))
            got = view.search(query, 10, allowed, fetch)
            assert got[0].tolist() == want[0].tolist()
            assert np.allclose(got[1], want[1], rtol=RTOL, atol=1e-6)

    # The first change copies the viewed graph; results then follow the reference.
    removed: set[int] = set()
    for op, count, seed in [("mixed", 30, 1), ("remove", 40, 2), ("update", 25, 3)]:
        before = set(ref)
        mutate(view, ref, op, count, seed, dim)
        removed = (removed | before) - set(ref)
        check_index_state(view, ref)
        live = np.asarray(sorted(ref), dtype=np.uint64)
        assert view.mismatched(live, ref_vectors(ref, live)) == []
        for query in make_queries(rng, ref, dim):
            hits = view.search(query, 10, None, fetch)
            assert not removed & set(hits[0].tolist())
            check_hits(hits, space, ref, query, 10, exact=False, what=f"view after {op}")
            allowed = rng.choice(live, size=8, replace=False)
            hits = view.search(query, 10, allowed, fetch)
            check_hits(hits, space, ref, query, 10, among=allowed, what=f"view after {op}")

    # The file on disk is untouched by the changes: a fresh view equals the graph it held.
    again = snapshot.read_snapshot(path, OWNER)
    assert again is not None
    fresh = VectorIndex.from_serialized(dim, params, thresholds, again.payload, again.mapping)
    assert len(fresh) == len(original)
    for query in queries[:8]:
        want = loaded.search(query, 10, None, original.flat.gather)
        got = fresh.search(query, 10, None, original.flat.gather)
        assert got[0].tolist() == want[0].tolist()


def test_from_serialized_refuses_what_does_not_fit(tmp_path: Path) -> None:
    """Another dimension or space, or a damaged payload, raises what the loader catches."""
    rng = np.random.default_rng(2)
    ref = make_reference(rng, 80, 6, clustered=False)
    payload = saved_graph(
        graph_index(ref, 6, "cosine", Thresholds(0, 0), with_flat=False), tmp_path
    )
    cosine = HnswParams(space="cosine")
    index = VectorIndex.from_serialized(6, cosine, EXACT, memoryview(payload), None)
    check_index_state(index, ref)
    with pytest.raises(ValueError):
        VectorIndex.from_serialized(7, cosine, EXACT, memoryview(payload), None)
    with pytest.raises(ValueError):
        VectorIndex.from_serialized(6, HnswParams(space="l2"), EXACT, memoryview(payload), None)
    for damaged in (bytes(payload[: len(payload) // 2]), bytes(len(payload)), b"x" * 1000):
        with pytest.raises((ValueError, RuntimeError)):
            VectorIndex.from_serialized(6, cosine, EXACT, memoryview(damaged), None)


@pytest.fixture
def snapshot_file(tmp_path: Path) -> tuple[Path, bytes]:
    rng = np.random.default_rng(5)
    ref = make_reference(rng, 60, 4, clustered=False)
    index = graph_index(ref, 4, "l2", Thresholds(0, 0), with_flat=False)
    path = snapshot.snapshot_path(tmp_path, "collection-1")
    write_and_read(path, index, 4, "l2", watermark=42)
    return path, path.read_bytes()


def test_snapshot_payload_bit_flips_and_truncation_are_refused(snapshot_file, caplog) -> None:
    """A flipped payload bit, a truncated or extended file is treated as absent."""
    caplog.set_level(logging.ERROR, logger="huedb.engine.snapshot")  # one warning per read
    path, raw = snapshot_file
    header_end = raw.index(b"\n", len(snapshot.MAGIC)) + 1
    rng = np.random.default_rng(0)
    positions = {0, len(snapshot.MAGIC) - 1, header_end, len(raw) - 1}
    positions |= set(rng.integers(header_end, len(raw), 60).tolist())
    for position in sorted(positions):
        for bit in (0, 7):
            damaged = bytearray(raw)
            damaged[position] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            assert snapshot.read_snapshot(path, OWNER) is None, f"flip {position}:{bit}"
    cuts = {0, 5, len(snapshot.MAGIC), header_end - 1, header_end, header_end + 100}
    cuts |= {len(raw) // 2, len(raw) - 1}
    for cut in sorted(cuts):
        path.write_bytes(raw[:cut])
        assert snapshot.read_snapshot(path, OWNER) is None, f"truncated to {cut} bytes"
    path.write_bytes(raw + b"\0")
    assert snapshot.read_snapshot(path, OWNER) is None, "trailing byte accepted"
    path.unlink()
    assert snapshot.read_snapshot(path, OWNER) is None
    path.write_bytes(raw)
    assert snapshot.read_snapshot(path, OWNER) is not None


# Regression: the header used to be outside every checksum, so "watermark": 42 could read
# back as 43 and the index would catch up from the wrong oplog seq.
def test_snapshot_header_bit_flips_are_refused(snapshot_file, caplog) -> None:
    """A single flipped bit in the magic, header or header checksum line is refused."""
    caplog.set_level(logging.ERROR, logger="huedb.engine.snapshot")  # one warning per read
    path, raw = snapshot_file
    header_end = raw.index(b"\n", raw.index(b"\n", len(snapshot.MAGIC)) + 1) + 1
    accepted = []
    for position in range(header_end):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[position] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            snap = snapshot.read_snapshot(path, OWNER)
            if snap is not None:
                accepted.append((position, bit, snap.watermark, snap.dim, snap.space))
    assert not accepted, f"damaged headers were accepted: {accepted}"


# --------------------------------------------------------------------------- mismatched


def below_graph_precision(x: np.float32) -> np.float32:
    """A different float32 that a graph stores as it stores `x` (at GRAPH_DTYPE)."""

    def rounded(value: np.float32) -> np.float32:
        return at_graph_precision(GRAPH_DTYPE, np.asarray([[value]], dtype=np.float32))[0, 0]

    h = rounded(x)
    toward = h if h != x else np.float32(np.inf)
    y = np.nextafter(x, toward, dtype=np.float32)
    assert y != x and rounded(y) == h
    return y


@scaled(0.5)
@given(
    space=st.sampled_from(SPACES),
    graph=st.booleans(),
    n=st.integers(20, 80),
    dim=st.integers(2, 8),
    changes=st.lists(st.tuples(st.integers(0, 79), st.booleans()), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
# Row 0 nudged twice in one column, the second nudge undoing the first.
@example(
    space="l2", graph=False, n=66, dim=8, changes=[(1, False), (0, False), (0, False)], seed=66
)
def test_mismatched_reports_changed_vectors(
    space: str, graph: bool, n: int, dim: int, changes, seed: int
) -> None:
    """Exactly the keys whose stored vector differs, at float32 (exact) or the graph's precision."""
    rng = np.random.default_rng(seed)
    ref = make_reference(rng, n, dim, clustered=False)
    if graph:
        index = graph_index(ref, dim, space, Thresholds(0, 0), with_flat=False)
    else:
        index = VectorIndex(dim, HnswParams(space=space), EXACT)
        keys = np.asarray(list(ref), dtype=np.uint64)
        index.upsert(keys, ref_vectors(ref, keys))
    keys = rng.permutation(sorted(ref)).astype(np.uint64)
    stored = ref_vectors(ref, keys)
    assert index.mismatched(keys, stored) == []
    original = stored.copy()
    expected = set()
    for row, big in changes:
        row %= n
        column = int(rng.integers(dim))
        if big:
            stored[row, column] += np.float32(0.5)
            expected.add(int(keys[row]))
        else:
            stored[row, column] = below_graph_precision(stored[row, column])
    if not graph:  # exact: any float32 difference, so two nudges that cancel are no change
        changed = (stored != original).any(axis=1)
        expected = {int(key) for key in keys[changed]}
    want = [int(key) for key in keys if int(key) in expected]  # in the order given
    assert index.mismatched(keys, stored) == want
    # After indexing the changed vectors, they are what is stored.
    index.upsert(keys, stored)
    assert index.mismatched(keys, stored) == []
    assert index.mismatched(keys[:1], stored[:1]) == []


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 40),
    block=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
    extreme=st.sampled_from([0.0, 1e25, 1e-25]),
)
def test_row_norms_a_block_at_a_time_are_numpys_bit_for_bit(
    rows: int, block: int, seed: int, extreme: float
) -> None:
    """`row_norms` of a matrix read a block of rows at a time (`NORM_BLOCK`, patched small
    here) equals np.linalg.norm's float32 result bit for bit, and rows whose squares leave
    float32's range (one scaled by `extreme`) get their true norm from float64."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((rows, 8)).astype(np.float32)
    if rows and extreme:
        matrix[rows // 2] *= np.float32(extreme)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vector_index, "NORM_BLOCK", block)
        got = vector_index.row_norms(matrix)
    assert got.dtype == np.float32 and got.shape == (rows,)
    wide = np.linalg.norm(matrix.astype(np.float64), axis=-1).astype(np.float32)
    with np.errstate(over="ignore", under="ignore"):
        plain = np.linalg.norm(matrix, axis=-1)
    usable = (plain >= vector_index.TINY_NORM) & (plain < np.inf)
    assert np.array_equal(got[usable], plain[usable])
    np.testing.assert_allclose(got[~usable], wide[~usable], rtol=1e-6)
