#!/usr/bin/env python3
"""Python's multiprocessing peers of benches/benches/process_pool.rs.

Prints one JSON object with seconds per operation (median of the repetitions):
  map_1m         Pool(2).map(double, range(1_000_000))   (pool started beforehand)
  map_1m_list    Pool(2).map(double, a list of the same 1_000_000 ints)
  apply_async    one apply_async(double, (i,)).get() round trip
  process        Process(target=noop).start() + join()

Usage: python3 pool_bench.py [--quick]
"""
import json
import multiprocessing as mp
import statistics
import sys
import time


def double(x):
    return x * 2


def noop():
    pass


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    quick = "--quick" in sys.argv
    mp.set_start_method("fork")
    n = 1_000_000
    out = {"python": sys.version.split()[0]}
    with mp.Pool(2) as pool:
        pool.map(double, range(1000))  # warm the workers
        out["map_1m"] = median_time(lambda: pool.map(double, range(n)), 2 if quick else 5)
        items = list(range(n))
        out["map_1m_list"] = median_time(lambda: pool.map(double, items), 2 if quick else 5)
        rounds = 500 if quick else 2000

        def round_trips():
            for i in range(rounds):
                pool.apply_async(double, (i,)).get()

        out["apply_async"] = median_time(round_trips, 3) / rounds

    def start_join():
        p = mp.Process(target=noop)
        p.start()
        p.join()

    start_join()
    out["process"] = median_time(start_join, 20 if quick else 50)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
