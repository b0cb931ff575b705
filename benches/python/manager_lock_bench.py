"""Python's peer for backend-redis/benches/redis_lock.rs (same machine, same run).

A multiprocessing BaseManager serves a threading.Lock over TCP on 127.0.0.1; N client
processes each connect to it as remote clients (as programs on other machines would) and do
`lock.acquire(); counter += 1; lock.release()` in a loop, the counter a plain integer in a file
only the holder touches (as in the Rust bench). Prints, for each N asked:
  manager_lock_contended_<N>_ops_per_s
Run: python3 benches/python/manager_lock_bench.py [scale] [N ...]   (N defaults to 2 4)
"""

import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from multiprocessing.managers import BaseManager

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
NS = [int(a) for a in sys.argv[2:]] or [2, 4]
AUTHKEY = b"uniconc-bench"

_lock = threading.Lock()


class Server(BaseManager):
    pass


Server.register("get_lock", callable=lambda: _lock)


class Client(BaseManager):
    pass


Client.register("get_lock")


def serve(port_out):
    m = Server(address=("127.0.0.1", 0), authkey=AUTHKEY)
    s = m.get_server()
    port_out.put(s.address[1])
    s.serve_forever()


def increment(path):
    with open(path, "r+") as f:
        n = int(f.read().strip() or "0") + 1
        f.seek(0)
        f.truncate()
        f.write(str(n))


def contender(port, ops, path, ready, go):
    c = Client(address=("127.0.0.1", port), authkey=AUTHKEY)
    c.connect()
    lock = c.get_lock()
    ready.release()
    go.wait()
    for _ in range(ops):
        lock.acquire()
        increment(path)
        lock.release()


def main():
    ctx = mp.get_context("fork")
    port_q = ctx.Queue()
    srv = ctx.Process(target=serve, args=(port_q,), daemon=True)
    srv.start()
    port = port_q.get()
    ops = int(1_000 * SCALE)
    for n in NS:
        fd, path = tempfile.mkstemp()
        os.write(fd, b"0")
        os.close(fd)
        ready = ctx.Semaphore(0)
        go = ctx.Event()
        procs = [ctx.Process(target=contender, args=(port, ops, path, ready, go)) for _ in range(n)]
        for p in procs:
            p.start()
        for _ in range(n):
            ready.acquire()
        t = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        dt = time.perf_counter() - t
        with open(path) as f:
            assert int(f.read()) == n * ops, "increments lost"
        os.unlink(path)
        print(f"manager_lock_contended_{n}_ops_per_s {n * ops / dt:.0f}", flush=True)
    srv.terminate()


if __name__ == "__main__":
    main()
