"""Scrypt beside a busy event loop: hashing threads against hashing processes.

`python -m bench.hashers` runs, for each duty cycle of the main thread (busy in pure Python that
share of every millisecond, the way the proxy's loop is under load), two hashers for a few seconds
and prints their combined rate:
- threads: `hashlib.scrypt` releases the GIL, but must take it back between hashes; while the main
  thread holds it, the hashing thread waits and its core idles;
- processes: no shared GIL; the two hashers lose only the CPU the main thread really uses.
The proxy hashes shares in processes because of this figure (proxy/hashers.py).
"""

import argparse
import multiprocessing
import multiprocessing.sharedctypes
import os
import threading
import time

from mining.hashing import scrypt_pow


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


def _hash_until(stop: threading.Event, counter: list[int]) -> None:
    header = os.urandom(80)
    while not stop.is_set():
        scrypt_pow(header)
        counter[0] += 1


def with_threads(duty: float, seconds: float, hashers: int) -> float:
    stop = threading.Event()
    counters = [[0] for _ in range(hashers)]
    threads = [threading.Thread(target=_hash_until, args=(stop, c)) for c in counters]
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
                     ready: "multiprocessing.synchronize.Barrier") -> None:
    header = os.urandom(80)
    count = 0
    ready.wait()
    while not stop.is_set():
        scrypt_pow(header)
        count += 1
    done.value = count


def with_processes(duty: float, seconds: float, hashers: int) -> float:
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    ready = spawn.Barrier(hashers + 1)
    counts = [spawn.Value("q", 0) for _ in range(hashers)]
    workers = [spawn.Process(target=_hash_in_process, args=(stop, c, ready)) for c in counts]
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
    args = parser.parse_args()
    print(f"{'main thread busy':>18} {'threads H/s':>12} {'processes H/s':>14}")
    for duty in args.duty:
        threads = with_threads(duty, args.seconds, args.hashers)
        processes = with_processes(duty, args.seconds, args.hashers)
        print(f"{duty:>17.0%} {threads:>12.0f} {processes:>14.0f}")


if __name__ == "__main__":
    main()
