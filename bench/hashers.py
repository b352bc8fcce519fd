"""Scrypt beside a busy event loop: hashing threads against hashing processes.

`python -m bench.hashers` runs, for each duty cycle of the main thread (busy in pure Python that
share of every millisecond, the way the proxy's loop is under load), two hashers for a few seconds
and prints their combined rate:
- threads: `hashlib.scrypt` releases the GIL, but must take it back between hashes; while the main
  thread holds it, the hashing thread waits and its core idles;
- processes: no shared GIL; the two hashers lose only the CPU the main thread really uses.
The proxy hashes shares in processes because of this figure (proxy/hashers.py).

`--batch B` hashes B headers a call with `scrypt_many` (SIMD lanes), as the hashers do with what
they read (up to 64): a thread then takes the GIL back once a batch, not once a hash.
"""

import argparse
import multiprocessing
import multiprocessing.sharedctypes
import os
import threading
import time

from mining.hashing import scrypt_many


def _busy_main_thread(duty: float, seconds: float) -> None:
    """Pure Python for `duty` of every millisecond, asleep for the rest."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if duty > 0:
            busy_until = time.perf_counter() + 0.001 * duty
            while time.perf_counter() < busy_until:
                sum(range(50))
        if duty < 1:
            time.sleep(0.001 * (1 - duty))


def _hash_until(stop: threading.Event, counter: list[int], batch: int) -> None:
    headers = os.urandom(80) * batch
    while not stop.is_set():
        scrypt_many(headers)
        counter[0] += batch


def with_threads(duty: float, seconds: float, hashers: int, batch: int = 1) -> float:
    stop = threading.Event()
    counters = [[0] for _ in range(hashers)]
    threads = [threading.Thread(target=_hash_until, args=(stop, c, batch)) for c in counters]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    _busy_main_thread(duty, seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(c[0] for c in counters) / (time.perf_counter() - started)


def _hash_in_process(stop: "multiprocessing.synchronize.Event",
                     done: "multiprocessing.sharedctypes.Synchronized[int]",
                     ready: "multiprocessing.synchronize.Barrier", batch: int) -> None:
    headers = os.urandom(80) * batch
    count = 0
    ready.wait()
    while not stop.is_set():
        scrypt_many(headers)
        count += batch
    done.value = count


def with_processes(duty: float, seconds: float, hashers: int, batch: int = 1) -> float:
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    ready = spawn.Barrier(hashers + 1)
    counts = [spawn.Value("q", 0) for _ in range(hashers)]
    workers = [spawn.Process(target=_hash_in_process, args=(stop, c, ready, batch)) for c in counts]
    for worker in workers:
        worker.start()
    ready.wait()  # start the clock once every process is up
    started = time.perf_counter()
    _busy_main_thread(duty, seconds)
    stop.set()
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    return sum(c.value for c in counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hashers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--duty", type=float, nargs="*", default=[0.0, 0.2, 0.5])
    parser.add_argument("--batch", type=int, default=1, help="headers per scrypt_many call")
    args = parser.parse_args()
    print(f"{'main thread busy':>18} {'threads H/s':>12} {'processes H/s':>14}   (batches of {args.batch})")
    for duty in args.duty:
        threads = with_threads(duty, args.seconds, args.hashers, args.batch)
        processes = with_processes(duty, args.seconds, args.hashers, args.batch)
        print(f"{duty:>17.0%} {threads:>12.0f} {processes:>14.0f}")


if __name__ == "__main__":
    main()
