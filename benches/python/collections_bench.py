#!/usr/bin/env python3
"""Python's multiprocessing Manager peers of benches/benches/collections.rs.

Prints one JSON object with seconds per operation (median of the repetitions):
  dict_op     one operation on a SyncManager dict (int -> 32-char str), two processes each
              alternating d[k] = v and d[k] over their own keys; wall time / all operations
  list_elem   one element of a Manager list traversal (`for x in l`: a round trip to the
              manager per element), eight processes each traversing the whole list of
              LIST_LEN ints; wall time / all elements read

Usage: python3 collections_bench.py [--quick]
"""
import json
import multiprocessing as mp
import statistics
import sys
import time

LIST_LEN = 2_000


def dict_worker(d, base, ops, start):
    value = "v" * 32
    start.wait()
    for i in range(ops // 2):
        k = base + i % 512
        d[k] = value
        d[k]


def list_worker(l, start, out):
    start.wait()
    total = 0
    for x in l:
        total += x
    out.put(total)


def run_dict(manager, ops):
    d = manager.dict()
    start = mp.Barrier(3)
    procs = [mp.Process(target=dict_worker, args=(d, t * 1_000_000, ops, start)) for t in range(2)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    return (time.perf_counter() - t0) / (2 * ops)


def run_list(manager, units):
    l = manager.list(range(LIST_LEN))
    start = mp.Barrier(units + 1)
    out = mp.Queue()
    procs = [mp.Process(target=list_worker, args=(l, start, out)) for _ in range(units)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    sums = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    assert all(s == LIST_LEN * (LIST_LEN - 1) // 2 for s in sums), sums
    return elapsed / (units * LIST_LEN)


def main():
    quick = "--quick" in sys.argv
    mp.set_start_method("fork")
    reps = 3 if quick else 5
    out = {"python": sys.version.split()[0], "list_len": LIST_LEN}
    with mp.Manager() as manager:
        ops = 2_000 if quick else 10_000
        out["dict_op"] = statistics.median(run_dict(manager, ops) for _ in range(reps))
        out["list_elem"] = statistics.median(run_list(manager, 8) for _ in range(reps))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
