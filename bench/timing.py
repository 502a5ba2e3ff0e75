"""Shared timing helper of the benchmarks: best mean time of a callable over a few rounds."""
import time


def best_time(fn, repeat=5, min_time=1.0):
    """Seconds per call: each of `repeat` rounds runs fn until min_time/repeat has passed;
    the fastest round's mean wins (the least disturbed by the rest of the machine)."""
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed > min_time / repeat:
                break
        best = min(best, elapsed / n)
    return best
