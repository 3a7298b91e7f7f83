"""huedb's own bounds on one search request (Chroma Cloud's quotas are undocumented numbers:
shared/chroma-search-api.md, open question 8). Beyond them: 422 `QuotaError`."""

from __future__ import annotations

from huedb.errors import RequestLimitError
from huedb.search.plan import SearchRequest, SparseQuery, knn_leaves

MAX_SEARCHES = 100  # searches (payloads) of one request
MAX_KNN_LIMIT = 10_000  # `limit` of one `$knn`
MAX_KNN_PER_SEARCH = 32  # `$knn` leaves of one rank expression
MAX_KNN_PER_REQUEST = 256  # `$knn` leaves of all the searches of one request
# Indices of one sparse `$knn` query (BM25 queries hold tens, learned sparse ones hundreds);
# each costs ~0.5 us of lookups under the engine lock, besides its postings.
MAX_SPARSE_QUERY_INDICES = 100_000


def check_bounds(request: SearchRequest) -> None:
    """Refuse a request asking for more work than huedb serves in one call."""
    if len(request.searches) > MAX_SEARCHES:
        raise RequestLimitError(
            f"A search request holds {len(request.searches)} searches; "
            f"at most {MAX_SEARCHES} are served per request"
        )
    total = 0
    for i, plan in enumerate(request.searches):
        leaves = knn_leaves(plan.rank)
        if len(leaves) > MAX_KNN_PER_SEARCH:
            raise RequestLimitError(
                f"searches[{i}].rank holds {len(leaves)} $knn; at most {MAX_KNN_PER_SEARCH} "
                "are served per search"
            )
        total += len(leaves)
        if total > MAX_KNN_PER_REQUEST:
            raise RequestLimitError(
                f"A search request holds more than {MAX_KNN_PER_REQUEST} $knn in all; "
                "split it into several requests"
            )
        for leaf in leaves:
            if leaf.limit > MAX_KNN_LIMIT:
                raise RequestLimitError(
                    f"searches[{i}].rank: $knn limit {leaf.limit} is more than the "
                    f"{MAX_KNN_LIMIT:,} huedb serves"
                )
            if (
                isinstance(leaf.query, SparseQuery)
                and len(leaf.query.indices) > MAX_SPARSE_QUERY_INDICES
            ):
                raise RequestLimitError(
                    f"searches[{i}].rank: a sparse $knn query holds {len(leaf.query.indices):,} "
                    f"indices; at most {MAX_SPARSE_QUERY_INDICES:,} are served"
                )
