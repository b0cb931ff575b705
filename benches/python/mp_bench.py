"""Python multiprocessing peers for benches/benches/process_channel.rs (same machine, same run).

Prints one line per figure:
  queue_1to1_msgs_per_s, queue_ping_pong_round_trip_us, value_increment_two_procs_us
Run: python3 benches/python/mp_bench.py [scale]
"""

import multiprocessing as mp
import sys
import time

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


def producer(q, n):
    for i in range(n + 1):
        q.put(i)


def echo(ping, pong):
    while True:
        v = ping.get()
        if v is None:
            return
        pong.put(v)


def incr(v, n, go):
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def main():
    ctx = mp.get_context("fork")
    n = int(200_000 * SCALE)
    q = ctx.Queue()
    p = ctx.Process(target=producer, args=(q, n))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    print(f"queue_1to1_msgs_per_s {n / dt:.0f}")

    rounds = int(20_000 * SCALE)
    ping, pong = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo, args=(ping, pong))
    p.start()
    ping.put(0)
    pong.get()
    t = time.perf_counter()
    for i in range(rounds):
        ping.put(i)
        pong.get()
    dt = time.perf_counter() - t
    ping.put(None)
    p.join()
    print(f"queue_ping_pong_round_trip_us {dt / rounds * 1e6:.2f}")

    m = int(100_000 * SCALE)
    v = ctx.Value("q", 0)
    go = ctx.Event()
    ps = [ctx.Process(target=incr, args=(v, m, go)) for _ in range(2)]
    for p in ps:
        p.start()
    t = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t
    assert v.value == 2 * m
    print(f"value_increment_two_procs_us {dt / (2 * m) * 1e6:.3f}")


if __name__ == "__main__":
    main()
