"""Python's remote-sharing peer for backend-redis/benches/redis_channel.rs (same machine, same run).

A multiprocessing BaseManager serves a queue.Queue over TCP on 127.0.0.1; a producer process
and the consumer (this process) each connect to it as remote clients, as two programs on two
machines would. Prints one line per figure:
  manager_queue_1to1_msgs_per_s, manager_lock_acquire_release_us,
  manager_dict_set_us, manager_dict_get_us (a dict served the same way: int -> 32-char str)
Run: python3 benches/python/manager_bench.py [scale]
"""

import multiprocessing as mp
import queue
import sys
import threading
import time
from multiprocessing.managers import BaseManager, DictProxy

SCALE = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
AUTHKEY = b"uniconc-bench"

_queue = queue.Queue()
_lock = threading.Lock()
_dict = {}


class Server(BaseManager):
    pass


Server.register("get_queue", callable=lambda: _queue)
Server.register("get_lock", callable=lambda: _lock)
Server.register("get_dict", callable=lambda: _dict, proxytype=DictProxy)


class Client(BaseManager):
    pass


Client.register("get_queue")
Client.register("get_lock")
Client.register("get_dict", proxytype=DictProxy)


def serve(port_out):
    m = Server(address=("127.0.0.1", 0), authkey=AUTHKEY)
    s = m.get_server()
    port_out.put(s.address[1])
    s.serve_forever()


def producer(port, n):
    c = Client(address=("127.0.0.1", port), authkey=AUTHKEY)
    c.connect()
    q = c.get_queue()
    for i in range(n + 1):
        q.put(i)


def main():
    ctx = mp.get_context("fork")
    port_q = ctx.Queue()
    srv = ctx.Process(target=serve, args=(port_q,), daemon=True)
    srv.start()
    port = port_q.get()

    n = int(20_000 * SCALE)
    c = Client(address=("127.0.0.1", port), authkey=AUTHKEY)
    c.connect()
    q = c.get_queue()
    p = ctx.Process(target=producer, args=(port, n))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t
    p.join()
    print(f"manager_queue_1to1_msgs_per_s {n / dt:.0f}")

    lock = c.get_lock()
    rounds = int(5_000 * SCALE)
    t = time.perf_counter()
    for _ in range(rounds):
        lock.acquire()
        lock.release()
    dt = time.perf_counter() - t
    print(f"manager_lock_acquire_release_us {dt / rounds * 1e6:.1f}")

    d = c.get_dict()
    ops = int(5_000 * SCALE)
    value = "x" * 32
    t = time.perf_counter()
    for i in range(ops):
        d[i % 1000] = value
    dt = time.perf_counter() - t
    print(f"manager_dict_set_us {dt / ops * 1e6:.1f}")
    t = time.perf_counter()
    for i in range(ops):
        d[i % 1000]
    dt = time.perf_counter() - t
    print(f"manager_dict_get_us {dt / ops * 1e6:.1f}")
    srv.terminate()


if __name__ == "__main__":
    main()
