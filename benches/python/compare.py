#!/usr/bin/env python3
"""The Python side of `cargo run --example compare`.

The same workloads as examples/compare.rs, written with Python's three concurrency modules:
multiprocessing (processes), threading (threads) and asyncio (coroutines). It is started by
compare.rs with the same sizes, as `key=value` arguments, and prints one line per cell:

    <workload key> TAB <multiprocessing|threading|asyncio> TAB <value | n/a: why | failed: why>

in the unit of the Rust table (M msg/s, µs per round trip, ms, µs per unit, KiB per unit, ns per
increment, ns per dict operation). Progress goes to stderr. Run it alone with `python3 benches/python/compare.py`
(default sizes: compare's --quick ones). Standard library only.
"""

import asyncio
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

MASK = (1 << 64) - 1
CAP = 1024  # bounded queue capacity, as in compare.rs

SIZES = dict(
    messages=100_000,
    round_trips=2_000,
    pool_items=200,
    pool_work=20_000,
    units=10_000,
    units_process=200,
    lock_iters=50_000,
    dict_ops=50_000,
    dict_ops_process=1_000,
    spawns=200,
    spawns_process=50,
    workers=os.cpu_count() or 1,
    repeats=1,  # runs of each workload; the best is reported
)

HIGHER_IS_BETTER = {"chan_1to1", "chan_2to2"}


def cpu_work(x, rounds):
    """compare.rs's cpu_work: an LCG with a xorshift on 64-bit words."""
    h = x
    for _ in range(rounds):
        h = (h * 6364136223846793005 + 1442695040888963407) & MASK
        h ^= h >> 33
    return h


def _cpu_item(args):
    x, rounds = args
    return cpu_work(x, rounds)


def pss_kib(pid):
    """PSS of a process in KiB (RSS if smaps_rollup is missing); None off Linux."""
    for name, field in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                for line in f:
                    if line.startswith(field):
                        return int(line.split()[1])
        except OSError:
            pass
    return None


# --------------------------------------------------------------------------------------------
# multiprocessing
# --------------------------------------------------------------------------------------------


def _mp_producer(q, lo, hi):
    for i in range(lo, hi):
        q.put(i)


def _mp_consumer(q, out):
    count = total = 0
    while True:
        x = q.get()
        if x is None:
            break
        count += 1
        total += x
    out.put((count, total))


def _mp_echo(ping, pong):
    while True:
        x = ping.get()
        if x is None:
            return
        pong.put(x)


def _mp_waiter(ready, q, out):
    ready.put(os.getpid())
    out.put(q.get())


def _mp_locker(lock, value, iters, go):
    go.wait()
    for _ in range(iters):
        with lock:
            value.value += 1


def _noop():
    pass


DICT_KEYS = 512  # keys per unit in dict_ops, as in compare.rs


def _dict_unit(d, unit, ops, go):
    """ops operations on the shared dict: alternately d[k] = 32 chars and d[k]."""
    value = "v" * 32
    go.wait()
    found = 0
    for i in range(ops // 2):
        k = (unit << 32) | (i % DICT_KEYS)
        d[k] = value
        found += d.get(k) is not None
    return found


def _mp_dict_unit(d, unit, ops, go, out):
    out.put(_dict_unit(d, unit, ops, go))


class MP:
    name = "multiprocessing"

    @staticmethod
    def chan_1to1(n):
        q = mp.Queue(CAP)
        start = time.perf_counter()
        p = mp.Process(target=_mp_producer, args=(q, 0, n))
        p.start()
        total = sum(q.get() for _ in range(n))
        p.join()
        t = time.perf_counter() - start
        assert total == n * (n - 1) // 2, total
        return n / t / 1e6

    @staticmethod
    def chan_2to2(n):
        q, out = mp.Queue(CAP), mp.Queue()
        half = n // 2
        start = time.perf_counter()
        cons = [mp.Process(target=_mp_consumer, args=(q, out)) for _ in range(2)]
        prods = [mp.Process(target=_mp_producer, args=(q, p * half, (p + 1) * half)) for p in range(2)]
        for u in cons + prods:
            u.start()
        for p in prods:
            p.join()
        for _ in cons:
            q.put(None)  # one sentinel per consumer: Python's way to say "no more"
        results = [out.get() for _ in cons]
        for c in cons:
            c.join()
        t = time.perf_counter() - start
        total = 2 * half
        assert sum(c for c, _ in results) == total, results
        assert sum(s for _, s in results) == total * (total - 1) // 2, results
        return total / t / 1e6

    @staticmethod
    def ping_pong(rounds):
        ping, pong = mp.Queue(1), mp.Queue(1)
        p = mp.Process(target=_mp_echo, args=(ping, pong))
        p.start()
        ping.put(-1)
        assert pong.get() == -1
        start = time.perf_counter()
        for i in range(rounds):
            ping.put(i)
            assert pong.get() == i
        t = time.perf_counter() - start
        ping.put(None)
        p.join()
        return t * 1e6 / rounds

    @staticmethod
    def pool_map(items, work, workers):
        with mp.Pool(workers) as pool:
            start = time.perf_counter()
            out = pool.map(_cpu_item, [(x, work) for x in range(items)])
            t = time.perf_counter() - start
        assert len(out) == items and out[-1] == cpu_work(items - 1, work)
        return t * 1e3

    @staticmethod
    def waiting_units(n):
        before = pss_kib(os.getpid())
        ready, out = mp.Queue(), mp.Queue()
        qs = [mp.Queue(1) for _ in range(n)]
        start = time.perf_counter()
        procs = [mp.Process(target=_mp_waiter, args=(ready, q, out)) for q in qs]
        for p in procs:
            p.start()
        pids = {ready.get(timeout=120) for _ in range(n)}
        spawned = time.perf_counter() - start
        mem = None
        if before is not None:
            total = pss_kib(os.getpid()) - before
            total += sum(pss_kib(pid) or 0 for pid in pids)
            mem = max(total, 0) / n  # below a page per unit the delta is noise
        wake = time.perf_counter()
        for i, q in enumerate(qs):
            q.put(i)
        got = sum(out.get() for _ in range(n))
        for p in procs:
            p.join()
        t = spawned + time.perf_counter() - wake
        assert got == n * (n - 1) // 2
        return t * 1e6 / n, mem

    @staticmethod
    def lock_contention(iters):
        lock, value, go = mp.Lock(), mp.Value("q", 0, lock=False), mp.Barrier(5)
        procs = [mp.Process(target=_mp_locker, args=(lock, value, iters, go)) for _ in range(4)]
        for p in procs:
            p.start()
        start = time.perf_counter()  # before the barrier opens, so no unit starts before it
        go.wait()
        for p in procs:
            p.join()
        t = time.perf_counter() - start
        assert value.value == 4 * iters, value.value
        return t * 1e9 / (4 * iters)

    @staticmethod
    def dict_ops(ops):
        with mp.Manager() as manager:
            d, go, out = manager.dict(), mp.Barrier(3), mp.Queue()
            procs = [mp.Process(target=_mp_dict_unit, args=(d, u, ops, go, out)) for u in range(2)]
            for p in procs:
                p.start()
            start = time.perf_counter()  # before the barrier opens, as in compare.rs
            go.wait()
            found = sum(out.get() for _ in procs)
            for p in procs:
                p.join()
            t = time.perf_counter() - start
            assert found == 2 * (ops // 2), found
            return t * 1e9 / (2 * (ops // 2) * 2)

    @staticmethod
    def spawn(n):
        start = time.perf_counter()
        for _ in range(n):
            p = mp.Process(target=_noop)
            p.start()
            p.join()
        return (time.perf_counter() - start) * 1e6 / n


# --------------------------------------------------------------------------------------------
# threading
# --------------------------------------------------------------------------------------------


class TH:
    name = "threading"

    @staticmethod
    def chan_1to1(n):
        q = queue.Queue(CAP)
        start = time.perf_counter()
        t = threading.Thread(target=lambda: [q.put(i) for i in range(n)])
        t.start()
        total = sum(q.get() for _ in range(n))
        t.join()
        el = time.perf_counter() - start
        assert total == n * (n - 1) // 2
        return n / el / 1e6

    @staticmethod
    def chan_2to2(n):
        q = queue.Queue(CAP)
        half = n // 2
        results = []

        def consume():
            count = total = 0
            while True:
                x = q.get()
                if x is None:
                    break
                count += 1
                total += x
            results.append((count, total))

        def produce(p):
            for i in range(p * half, (p + 1) * half):
                q.put(i)

        start = time.perf_counter()
        cons = [threading.Thread(target=consume) for _ in range(2)]
        prods = [threading.Thread(target=produce, args=(p,)) for p in range(2)]
        for u in cons + prods:
            u.start()
        for p in prods:
            p.join()
        for _ in cons:
            q.put(None)
        for c in cons:
            c.join()
        el = time.perf_counter() - start
        total = 2 * half
        assert sum(c for c, _ in results) == total
        return total / el / 1e6

    @staticmethod
    def ping_pong(rounds):
        ping, pong = queue.Queue(1), queue.Queue(1)

        def echo():
            while (x := ping.get()) is not None:
                pong.put(x)

        t = threading.Thread(target=echo)
        t.start()
        ping.put(-1)
        assert pong.get() == -1
        start = time.perf_counter()
        for i in range(rounds):
            ping.put(i)
            assert pong.get() == i
        el = time.perf_counter() - start
        ping.put(None)
        t.join()
        return el * 1e6 / rounds

    @staticmethod
    def pool_map(items, work, workers):
        with ThreadPoolExecutor(workers) as ex:
            start = time.perf_counter()
            out = list(ex.map(_cpu_item, [(x, work) for x in range(items)]))
            el = time.perf_counter() - start
        assert len(out) == items
        return el * 1e3

    @staticmethod
    def waiting_units(n):
        before = pss_kib(os.getpid())
        ready = queue.Queue()
        results = queue.Queue()
        qs = [queue.Queue(1) for _ in range(n)]

        def waiter(q):
            ready.put(1)
            results.put(q.get())

        start = time.perf_counter()
        ths = [threading.Thread(target=waiter, args=(q,)) for q in qs]
        for t in ths:
            t.start()
        for _ in range(n):
            ready.get(timeout=120)
        spawned = time.perf_counter() - start
        mem = None if before is None else max(pss_kib(os.getpid()) - before, 0) / n
        wake = time.perf_counter()
        for i, q in enumerate(qs):
            q.put(i)
        for t in ths:
            t.join()
        el = spawned + time.perf_counter() - wake
        got = sum(results.get() for _ in range(n))
        assert got == n * (n - 1) // 2
        return el * 1e6 / n, mem

    @staticmethod
    def lock_contention(iters):
        lock = threading.Lock()
        box = [0]
        go = threading.Barrier(5)

        def add():
            go.wait()
            for _ in range(iters):
                with lock:
                    box[0] += 1

        ths = [threading.Thread(target=add) for _ in range(4)]
        for t in ths:
            t.start()
        start = time.perf_counter()  # before the barrier opens, so no unit starts before it
        go.wait()
        for t in ths:
            t.join()
        el = time.perf_counter() - start
        assert box[0] == 4 * iters
        return el * 1e9 / (4 * iters)

    @staticmethod
    def dict_ops(ops):
        d, go = {}, threading.Barrier(3)
        found = [0, 0]

        def unit(u):
            found[u] = _dict_unit(d, u, ops, go)

        ths = [threading.Thread(target=unit, args=(u,)) for u in range(2)]
        for t in ths:
            t.start()
        start = time.perf_counter()  # before the barrier opens, as in compare.rs
        go.wait()
        for t in ths:
            t.join()
        el = time.perf_counter() - start
        assert sum(found) == 2 * (ops // 2)
        return el * 1e9 / (2 * (ops // 2) * 2)

    @staticmethod
    def spawn(n):
        start = time.perf_counter()
        for _ in range(n):
            t = threading.Thread(target=_noop)
            t.start()
            t.join()
        return (time.perf_counter() - start) * 1e6 / n


# --------------------------------------------------------------------------------------------
# asyncio
# --------------------------------------------------------------------------------------------


class AIO:
    name = "asyncio"

    @staticmethod
    def chan_1to1(n):
        async def main():
            q = asyncio.Queue(CAP)

            async def produce():
                for i in range(n):
                    await q.put(i)

            start = time.perf_counter()
            task = asyncio.create_task(produce())
            total = 0
            for _ in range(n):
                total += await q.get()
            await task
            el = time.perf_counter() - start
            assert total == n * (n - 1) // 2
            return n / el / 1e6

        return asyncio.run(main())

    @staticmethod
    def chan_2to2(n):
        async def main():
            q = asyncio.Queue(CAP)
            half = n // 2

            async def produce(p):
                for i in range(p * half, (p + 1) * half):
                    await q.put(i)

            async def consume():
                count = total = 0
                while (x := await q.get()) is not None:
                    count += 1
                    total += x
                return count, total

            start = time.perf_counter()
            cons = [asyncio.create_task(consume()) for _ in range(2)]
            await asyncio.gather(*(produce(p) for p in range(2)))
            for _ in cons:
                await q.put(None)
            results = await asyncio.gather(*cons)
            el = time.perf_counter() - start
            assert sum(c for c, _ in results) == 2 * half
            return 2 * half / el / 1e6

        return asyncio.run(main())

    @staticmethod
    def ping_pong(rounds):
        async def main():
            ping, pong = asyncio.Queue(1), asyncio.Queue(1)

            async def echo():
                while (x := await ping.get()) is not None:
                    await pong.put(x)

            task = asyncio.create_task(echo())
            await ping.put(-1)
            assert await pong.get() == -1
            start = time.perf_counter()
            for i in range(rounds):
                await ping.put(i)
                assert await pong.get() == i
            el = time.perf_counter() - start
            await ping.put(None)
            await task
            return el * 1e6 / rounds

        return asyncio.run(main())

    @staticmethod
    def pool_map(items, work, workers):
        # asyncio has no CPU pool of its own: tasks share one thread, so they run one by one.
        async def main():
            async def one(x):
                return cpu_work(x, work)

            start = time.perf_counter()
            out = await asyncio.gather(*(one(x) for x in range(items)))
            el = time.perf_counter() - start
            assert len(out) == items
            return el * 1e3

        return asyncio.run(main())

    @staticmethod
    def waiting_units(n):
        async def main():
            before = pss_kib(os.getpid())
            qs = [asyncio.Queue(1) for _ in range(n)]
            ready = asyncio.Queue()

            async def waiter(q):
                await ready.put(1)
                return await q.get()

            start = time.perf_counter()
            tasks = [asyncio.create_task(waiter(q)) for q in qs]
            for _ in range(n):
                await ready.get()
            spawned = time.perf_counter() - start
            mem = None if before is None else max(pss_kib(os.getpid()) - before, 0) / n
            wake = time.perf_counter()
            for i, q in enumerate(qs):
                await q.put(i)
            got = sum(await asyncio.gather(*tasks))
            el = spawned + time.perf_counter() - wake
            assert got == n * (n - 1) // 2
            return el * 1e6 / n, mem

        return asyncio.run(main())

    @staticmethod
    def lock_contention(iters):
        async def main():
            lock = asyncio.Lock()
            box = [0]

            async def add():
                for _ in range(iters):
                    async with lock:
                        box[0] += 1
                    await asyncio.sleep(0)  # yield, or one task would run all its iterations

            start = time.perf_counter()
            await asyncio.gather(*(add() for _ in range(4)))
            el = time.perf_counter() - start
            assert box[0] == 4 * iters
            return el * 1e9 / (4 * iters)

        return asyncio.run(main())

    @staticmethod
    def dict_ops(ops):
        async def main():
            d = {}
            value = "v" * 32

            async def unit(u):
                found = 0
                for i in range(ops // 2):
                    k = (u << 32) | (i % DICT_KEYS)
                    d[k] = value
                    found += d.get(k) is not None
                    if i % 64 == 0:
                        await asyncio.sleep(0)  # let the other task in now and then
                return found

            start = time.perf_counter()
            found = await asyncio.gather(unit(0), unit(1))
            el = time.perf_counter() - start
            assert sum(found) == 2 * (ops // 2)
            return el * 1e9 / (2 * (ops // 2) * 2)

        return asyncio.run(main())

    @staticmethod
    def spawn(n):
        async def main():
            async def noop():
                return None

            start = time.perf_counter()
            for _ in range(n):
                await asyncio.create_task(noop())
            return (time.perf_counter() - start) * 1e6 / n

        return asyncio.run(main())


# --------------------------------------------------------------------------------------------


IMPLS = {"multiprocessing": MP, "threading": TH, "asyncio": AIO}


def units_in_fresh_process(impl, n):
    """Runs waiting_units in a fresh interpreter, so that memory freed by the workloads before
    it (and kept by the allocator) does not hide what the units take."""
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--waiting-units-worker", impl.name, str(n)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        lines = [l for l in out.stderr.splitlines() if l.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit status {out.returncode}")
    t, mem = out.stdout.split()
    return float(t), None if mem == "none" else float(mem)


def emit(key, module, value):
    print(f"{key}\t{module}\t{value}", flush=True)


def fmt(v):
    return f"{v:.6g}"


def main(argv):
    sizes = dict(SIZES)
    for arg in argv:
        k, _, v = arg.partition("=")
        if k not in sizes:
            sys.exit(f"unknown size {k!r}; known: {', '.join(sizes)}")
        sizes[k] = int(v)
    s = sizes
    for impl in (MP, TH, AIO):
        is_mp = impl is MP
        units = s["units_process"] if is_mp else s["units"]
        spawns = s["spawns_process"] if is_mp else s["spawns"]
        emit("note", impl.name, f"{units} waiting units, {spawns} spawns, best of {s['repeats']}")
        runs = [
            ("chan_1to1", lambda: impl.chan_1to1(s["messages"])),
            ("chan_2to2", lambda: impl.chan_2to2(s["messages"])),
            ("ping_pong", lambda: impl.ping_pong(s["round_trips"])),
            ("pool_map", lambda: impl.pool_map(s["pool_items"], s["pool_work"], s["workers"])),
            ("units", lambda: units_in_fresh_process(impl, units)),
            ("lock_contention", lambda: impl.lock_contention(s["lock_iters"])),
            ("dict_ops", lambda: impl.dict_ops(s["dict_ops_process" if is_mp else "dict_ops"])),
            ("spawn", lambda: impl.spawn(spawns)),
        ]
        for key, run in runs:
            try:
                results = [run() for _ in range(max(1, s["repeats"]))]
                if key == "units":
                    mems = [m for _, m in results if m is not None]
                    value = (min(t for t, _ in results), min(mems) if mems else None)
                else:
                    value = (max if key in HIGHER_IS_BETTER else min)(results)
            except Exception as e:  # a failed workload is reported, and the run goes on
                traceback.print_exc(file=sys.stderr)
                why = f"failed: {type(e).__name__}: {e}".replace("\t", " ").replace("\n", " ")
                if key == "units":
                    emit("units_time", impl.name, why)
                    emit("units_memory", impl.name, "failed: see the time row")
                else:
                    emit(key, impl.name, why)
                continue
            if key == "units":
                t, mem = value
                emit("units_time", impl.name, fmt(t))
                emit("units_memory", impl.name, "n/a: needs Linux /proc" if mem is None else fmt(mem))
                print(f"[{impl.name:>15}] {key:<16} {t:.3g} µs/unit, {mem} KiB/unit", file=sys.stderr)
            else:
                emit(key, impl.name, fmt(value))
                print(f"[{impl.name:>15}] {key:<16} {value:.4g}", file=sys.stderr)


if __name__ == "__main__":
    if sys.platform == "linux":
        mp.set_start_method("fork")  # the same model as uniconc's process backend
    if sys.argv[1:2] == ["--waiting-units-worker"]:
        t, mem = IMPLS[sys.argv[2]].waiting_units(int(sys.argv[3]))
        print(t, "none" if mem is None else mem)
    else:
        main(sys.argv[1:])
