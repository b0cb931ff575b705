"""Python peer for benches/benches/process_payload.rs (same machine, same run).

Streams 64 KiB `bytes` messages 1->1 from a forked process through `multiprocessing.Queue` and
prints `queue_64k_bytes_gb_per_s <GB/s>` (payload bytes received per second).
Run: python3 benches/python/payload_bench.py [scale]
"""

import multiprocessing as mp
import sys
import time

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
SIZE = 64 * 1024


def producer(q, n):
    payload = bytes(range(256)) * (SIZE // 256)
    for _ in range(n + 1):
        q.put(payload)


def main():
    ctx = mp.get_context("fork")
    n = int(20_000 * SCALE)
    q = ctx.Queue(maxsize=64)
    p = ctx.Process(target=producer, args=(q, n))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    print(f"queue_64k_bytes_gb_per_s {n * SIZE / dt / 1e9:.3f}")


if __name__ == "__main__":
    main()
