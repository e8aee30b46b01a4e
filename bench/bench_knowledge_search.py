"""Knowledge-base vector search: exact NumPy vs sqlite-vec vs HNSW (usearch, hnswlib) at 100k x 384.

Synthetic, clustered, normalized vectors (so nearest neighbours are meaningful and recall can be
lost), 200 queries drawn from the same distribution. Prints build time, per-query latency p50/p99,
the p50 ratio against exact NumPy search measured in the same run, and recall@10 against exact.

    python bench/bench_knowledge_search.py [--n 100000] [--queries 200] [--threads 2]

Candidates whose package is not installed (``sqlite-vec``, ``usearch``, ``hnswlib``) are skipped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from botfactory.memory.index import ExactIndex

DIM = 384
K = 10

Matrix = npt.NDArray[np.float32]
SearchFn = Callable[[Matrix], list[int]]


@dataclass
class Result:
    name: str
    build_s: float
    latencies_ms: list[float]
    recall: float


def clustered_vectors(n: int, queries: int, clusters: int, noise: float, seed: int = 7) -> tuple[Matrix, Matrix]:
    """Points around random centroids, normalized; queries from the same mixture.

    With ``noise`` 0.08 a point's cosine to its cluster's centroid is about 0.5 and to another
    point of its cluster about 0.3, close to what MiniLM gives related passages.
    """
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    def sample(count: int) -> Matrix:
        labels = rng.integers(0, clusters, count)
        points = centroids[labels] + rng.standard_normal((count, DIM)).astype(np.float32) * noise
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        return points.astype(np.float32)

    return sample(n), sample(queries)


def measure(name: str, build: Callable[[], SearchFn], queries: Matrix, truth: list[set[int]]) -> Result:
    started = time.perf_counter()
    search = build()
    build_s = time.perf_counter() - started
    search(queries[0])  # warm-up
    latencies, hits = [], 0
    for query, expected in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        found = search(query)
        latencies.append((time.perf_counter() - t0) * 1000)
        hits += len(expected.intersection(found[:K]))
    return Result(name, build_s, latencies, hits / (K * len(queries)))


def build_exact(data: Matrix) -> SearchFn:
    index = ExactIndex(DIM)
    index.add(range(len(data)), data)
    return lambda q: [i for i, _ in index.search(q, K)]


def build_sqlite_vec(data: Matrix) -> SearchFn:
    import apsw
    import sqlite_vec

    db = apsw.Connection(":memory:")
    db.enable_load_extension(True)
    db.load_extension(sqlite_vec.loadable_path())
    db.execute(f"create virtual table v using vec0(embedding float[{DIM}] distance_metric=cosine)")
    with db:
        db.executemany("insert into v(rowid, embedding) values (?, ?)", ((i, v.tobytes()) for i, v in enumerate(data)))
    sql = f"select rowid from v where embedding match ? and k = {K} order by distance"
    return lambda q: [row[0] for row in db.execute(sql, (q.tobytes(),))]


def build_usearch(data: Matrix, threads: int) -> SearchFn:
    from usearch.index import Index

    index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)
    index.add(np.arange(len(data)), data, threads=threads)
    return lambda q: [int(key) for key in index.search(q, K).keys]


def build_hnswlib(data: Matrix, threads: int) -> SearchFn:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=len(data), M=16, ef_construction=128)
    index.add_items(data, np.arange(len(data)), num_threads=threads)
    index.set_ef(64)
    index.set_num_threads(1)
    return lambda q: [int(label) for label in index.knn_query(q, k=K)[0][0]]


def available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.08, help="per-dimension spread around a centroid")
    parser.add_argument("--threads", type=int, default=2, help="build threads for the HNSW indexes")
    args = parser.parse_args()

    data, queries = clustered_vectors(args.n, args.queries, args.clusters, args.noise)
    scores = queries @ data.T
    truth = [set(np.argsort(-row)[:K].tolist()) for row in scores]

    candidates: list[tuple[str, str, Callable[[], SearchFn]]] = [
        ("numpy exact (ExactIndex)", "numpy", lambda: build_exact(data)),
        ("sqlite-vec vec0 (apsw)", "sqlite_vec", lambda: build_sqlite_vec(data)),
        ("usearch HNSW M=16 ef=64", "usearch", lambda: build_usearch(data, args.threads)),
        ("hnswlib HNSW M=16 ef=64", "hnswlib", lambda: build_hnswlib(data, args.threads)),
    ]
    results = []
    for name, module, build in candidates:
        if not available(module):
            print(f"skipped {name}: {module} is not installed")
            continue
        results.append(measure(name, build, queries, truth))

    baseline = float(np.percentile(results[0].latencies_ms, 50))
    print(f"\n{args.n} x {DIM} float32, {args.clusters} clusters, noise {args.noise}, {args.queries} queries, k={K}")
    print(f"{'index':<26} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs exact':>13} {'recall@10':>10}")
    for r in results:
        p50, p99 = np.percentile(r.latencies_ms, [50, 99])
        print(f"{r.name:<26} {r.build_s:>8.2f} {p50:>8.2f} {p99:>8.2f} {p50 / baseline:>12.3f}x {r.recall:>10.3f}")


if __name__ == "__main__":
    main()
