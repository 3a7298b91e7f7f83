"""The search benchmark's corpus: seeded text and vectors, and its exact BM25 ranking.

Nothing is downloaded. The vocabulary is fixed by the seed: a few dozen common English words
(mostly stopwords, as in real text) at the top, then pronounceable made-up words, some with
an inflected twin (`-s`, `-ed`, `-ing`) that the stemmer folds together. Word frequencies
follow a Zipf-Mandelbrot law. Every document belongs to one of `topics` topics: a quarter
of its words come from its topic's own 40 mid-frequency words, the rest from the global
law; its vector is the topic's centre plus noise, so dense and sparse rankings agree
somewhat. A query picks a document, takes its topic's centre plus noise as its vector and
2-8 of that document's content words (distinct terms) as its text.

`Corpus.exact_top` is the brute-force BM25 scan the benchmark checks rankings against:
float64 sums over every stored entry, with huedb's IDF (`huedb/search/sparse_knn.py`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from huedb.bm25.embedding_function import DEFAULT_B, DEFAULT_K, DEFAULT_TOKEN_MAX_LENGTH
from huedb.bm25.stopwords import DEFAULT_CHROMA_BM25_STOPWORDS
from huedb.bm25.tokenizer import Bm25Tokenizer

_COMMON_TEXT = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "what will more if no out so said who up can time about into than them only some could "
    "new other these two may first then do any like my now over such our man me even most "
    "made after also did many before must through years where much way well down should "
    "because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under never day same another know"
)
COMMON_WORDS = list(dict.fromkeys(_COMMON_TEXT.split()))
ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w")
ONSETS += ("z", "br", "cl", "dr", "fl", "gr", "pl", "st", "tr", "sh", "ch", "th")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io")
CODAS = ["", "", "", "n", "r", "l", "s", "m", "t", "nd", "st", "rk"]
SUFFIXES = ("s", "ed", "ing")
SYLLABLES = (0.35, 0.5, 0.15)  # shares of 1-, 2- and 3-syllable words
ZIPF_S = 1.07
ZIPF_Q = 2.7
TOPIC_WORDS = 40
TOPIC_SHARE = 0.25
NOISE = 0.7
MIN_WORDS, MAX_WORDS = 20, 200
MIN_QUERY_WORDS, MAX_QUERY_WORDS = 2, 8
TIE_RELATIVE = 1e-5


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate (every part is a function of these)."""

    n: int
    dim: int = 384
    vocabulary: int = 50_000
    topics: int = 100
    queries: int = 200
    warmup: int = 10
    seed: int = 0


def make_vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    """`size` distinct lowercase words, the most frequent first."""
    words = list(COMMON_WORDS)
    seen = set(words)
    while len(words) < size:
        syllables = int(rng.choice(3, p=SYLLABLES)) + 1
        word = "".join(
            ONSETS[rng.integers(len(ONSETS))]
            + VOWELS[rng.integers(len(VOWELS))]
            + CODAS[rng.integers(len(CODAS))]
            for _ in range(syllables)
        )
        if word in seen or len(word) < 3:
            continue
        seen.add(word)
        words.append(word)
        if rng.random() < 0.15 and len(words) < size:
            twin = word + SUFFIXES[rng.integers(len(SUFFIXES))]
            if twin not in seen:
                seen.add(twin)
                words.append(twin)
    return words


def zipf_cdf(size: int) -> np.ndarray:
    """Cumulative Zipf-Mandelbrot probabilities of ranks 0..size-1."""
    weights = 1.0 / np.power(np.arange(size) + ZIPF_Q, ZIPF_S)
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


@dataclass
class Corpus:
    """Documents, vectors, queries and the BM25 terms of each (huedb's tokeniser)."""

    spec: CorpusSpec
    documents: list[str]
    embeddings: np.ndarray  # (n, dim) float32
    topics: np.ndarray  # (n,) topic of each document
    query_texts: list[str]  # warm-up queries first, then the measured ones
    query_embeddings: np.ndarray
    query_source: np.ndarray  # the document each query was drawn from
    doc_terms: list[list[int]] = field(default_factory=list)  # term indices, in order
    avg_doc_length: float = 0.0
    # The stored BM25 vectors, concatenated: entry j is (owner[j], term[j], value[j]).
    owner: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    term: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    value: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    doc_freq: dict[int, int] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Record ids, in insertion order."""
        return [doc_id(i) for i in range(len(self.documents))]


def doc_id(i: int) -> str:
    """The id of document `i`."""
    return f"d{i:07d}"


def doc_index(record_id: str) -> int:
    """Inverse of `doc_id`."""
    return int(record_id[1:])


def _texts(word_ids: np.ndarray, starts: np.ndarray, vocab: list[str], rng) -> list[str]:
    """Documents as sentences: capitalised first words, commas and full stops."""
    plain = np.asarray(vocab, dtype=object)
    capital = np.asarray([w.capitalize() for w in vocab], dtype=object)
    marks = rng.choice(3, size=len(word_ids), p=[0.86, 0.06, 0.08])  # none, comma, stop
    ends = np.append(starts[1:], len(word_ids))
    marks[ends - 1] = 2
    capitalised = np.zeros(len(word_ids), dtype=bool)
    capitalised[1:] = marks[:-1] == 2
    capitalised[starts] = True
    words = np.where(capitalised, capital[word_ids], plain[word_ids])
    words = words + np.asarray(["", ",", "."], dtype=object)[marks]
    return [" ".join(words[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def make_corpus(spec: CorpusSpec) -> Corpus:
    """The seeded corpus of `spec` (deterministic), tokenised with huedb's BM25 tokeniser."""
    rng = np.random.default_rng(spec.seed)
    vocab = make_vocabulary(spec.vocabulary, rng)
    cdf = zipf_cdf(len(vocab))
    first_content = len(COMMON_WORDS)
    topic_words = rng.integers(300, len(vocab), size=(spec.topics, TOPIC_WORDS))
    centres = rng.normal(size=(spec.topics, spec.dim)).astype(np.float32)

    lengths = rng.integers(MIN_WORDS, MAX_WORDS + 1, size=spec.n)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    topics = rng.integers(spec.topics, size=spec.n)
    word_ids = np.searchsorted(cdf, rng.random(int(lengths.sum())))
    from_topic = rng.random(len(word_ids)) < TOPIC_SHARE
    owner_topic = np.repeat(topics, lengths)
    word_ids[from_topic] = topic_words[
        owner_topic[from_topic], rng.integers(TOPIC_WORDS, size=int(from_topic.sum()))
    ]
    documents = _texts(word_ids, starts, vocab, rng)
    noise = rng.normal(size=(spec.n, spec.dim)).astype(np.float32)
    embeddings = centres[topics] + NOISE * noise

    tokenizer = Bm25Tokenizer(DEFAULT_CHROMA_BM25_STOPWORDS, DEFAULT_TOKEN_MAX_LENGTH)
    count = spec.warmup + spec.queries
    sources = rng.integers(spec.n, size=count)
    texts = []
    for source in sources.tolist():
        start, stop = int(starts[source]), int(starts[source]) + int(lengths[source])
        content = [w for w in dict.fromkeys(word_ids[start:stop].tolist()) if w >= first_content]
        rng.shuffle(content)
        wanted = int(rng.integers(MIN_QUERY_WORDS, MAX_QUERY_WORDS + 1))
        chosen, terms = [], set()
        for word in content:
            term = tokenizer.terms(vocab[word])
            if term and term[0][0] not in terms:
                terms.add(term[0][0])
                chosen.append(vocab[word])
            if len(chosen) == wanted:
                break
        texts.append(" ".join(chosen))
    query_noise = rng.normal(size=(count, spec.dim)).astype(np.float32)
    query_embeddings = centres[topics[sources]] + NOISE * query_noise

    corpus = Corpus(
        spec=spec,
        documents=documents,
        embeddings=embeddings,
        topics=topics,
        query_texts=texts,
        query_embeddings=query_embeddings,
        query_source=sources,
    )
    corpus.doc_terms = [[index for index, _ in tokenizer.terms(text)] for text in documents]
    corpus.avg_doc_length = float(np.mean([len(terms) for terms in corpus.doc_terms]))
    return corpus


def bm25_weights(terms: list[int], k: float, b: float, avg_doc_length: float) -> dict[int, float]:
    """BM25 term weights of one text's terms (Chroma's formula, float64)."""
    norm = k * (1 - b + b * len(terms) / avg_doc_length)
    return {t: tf * (k + 1) / (tf + norm) for t, tf in Counter(terms).items()}


def index_stored_vectors(corpus: Corpus, k: float = DEFAULT_K, b: float = DEFAULT_B) -> None:
    """Fill the concatenated stored vectors (values rounded to float32 as huedb stores them)
    and the document frequencies."""
    owners, terms, values = [], [], []
    for i, doc in enumerate(corpus.doc_terms):
        weights = bm25_weights(doc, k, b, corpus.avg_doc_length)
        owners.append(np.full(len(weights), i, dtype=np.int64))
        terms.append(np.fromiter(weights.keys(), dtype=np.int64, count=len(weights)))
        values.append(np.fromiter(weights.values(), dtype=np.float64, count=len(weights)))
    corpus.owner = np.concatenate(owners)
    corpus.term = np.concatenate(terms)
    corpus.value = np.concatenate(values).astype(np.float32).astype(np.float64)
    held, counts = np.unique(corpus.term, return_counts=True)
    corpus.doc_freq = dict(zip(held.tolist(), counts.tolist(), strict=True))


def idf(n_records: int, containing: int) -> float:
    """huedb's BM25 IDF: ln(1 + (N - n_t + 0.5) / (n_t + 0.5))."""
    return math.log(1.0 + (n_records - containing + 0.5) / (containing + 0.5))


@dataclass(frozen=True)
class ExactTop:
    """The exact BM25 ranking of one query: its top documents and every candidate's score."""

    top: list[int]
    scores: dict[int, float]

    def threshold(self, k: int) -> float:
        """The k-th best score (the last candidate's when there are fewer)."""
        return self.scores[self.top[min(k, len(self.top)) - 1]] if self.top else math.inf


def exact_top(corpus: Corpus, query: dict[int, float], k: int) -> ExactTop:
    """Brute-force scan: for every stored entry whose term is in the query, add
    `q_t * idf(t) * d_t` (float64) to its document's score; top `k` by (score desc, order)."""
    n = len(corpus.documents)
    terms = np.asarray(sorted(query), dtype=np.int64)
    weights = np.asarray(
        [query[t] * idf(n, corpus.doc_freq.get(t, 0)) for t in terms.tolist()], dtype=np.float64
    )
    mask = np.isin(corpus.term, terms)
    at = np.searchsorted(terms, corpus.term[mask])
    owners = corpus.owner[mask]
    dots = np.bincount(owners, weights[at] * corpus.value[mask], minlength=n)
    candidates = np.unique(owners)
    order = candidates[np.lexsort((candidates, -dots[candidates]))]
    return ExactTop(order[:k].tolist(), {int(c): float(dots[c]) for c in candidates.tolist()})


def agreement(found: list[int], exact: ExactTop, k: int) -> float:
    """Share of the exact top-k found: a document counts when its exact score reaches the
    k-th exact score (ties at the boundary are interchangeable); at most 1."""
    wanted = min(k, len(exact.top))
    if wanted == 0:
        return 1.0 if not found else 0.0
    bound = exact.threshold(k)
    tol = TIE_RELATIVE * max(1.0, abs(bound))
    hits = sum(1 for d in found[:k] if exact.scores.get(d, -math.inf) >= bound - tol)
    return min(hits, wanted) / wanted


def exact_dense_top(corpus: Corpus, k: int) -> list[set[int]]:
    """Exact cosine top-k of every query (numpy, float64 on normalised vectors)."""
    docs = corpus.embeddings.astype(np.float64)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = corpus.query_embeddings.astype(np.float64)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    out = []
    for start in range(0, len(queries), 64):
        sims = queries[start : start + 64] @ docs.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out.extend(set(row.tolist()) for row in top)
    return out
