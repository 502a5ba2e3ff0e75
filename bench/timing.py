"""Shared timing helper of the benchmarks: best mean time per call over interleaved rounds."""
import time


def best_times(fns, setups=None, repeat=5, min_time=1.0):
    """Seconds per call of each callable in `fns`.

    Each of `repeat` rounds runs every callable in turn (after its optional setup, e.g.
    setting a thread count) until min_time/repeat has passed, so a slow phase of a noisy
    machine falls on all of them alike; each callable's fastest round mean wins."""
    setups = setups or [None] * len(fns)
    for setup, fn in zip(setups, fns):  # warm up
        if setup:
            setup()
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, (setup, fn) in enumerate(zip(setups, fns)):
            if setup:
                setup()
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed > min_time / repeat:
                    break
            best[i] = min(best[i], elapsed / n)
    return best


def best_time(fn, repeat=5, min_time=1.0):
    """Seconds per call of one callable (see best_times)."""
    return best_times([fn], repeat=repeat, min_time=min_time)[0]


class StealMeter:
    """Share of CPU time the hypervisor took from this VM (the "steal" column of
    /proc/stat) between construction and report(): above a few percent, timings are
    disturbed by other tenants of the host. None where /proc/stat has no steal column."""

    def __init__(self):
        self.start = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return (fields[7], sum(fields)) if len(fields) > 7 else None

    def report(self):
        end = self._read()
        if self.start is None or end is None or end[1] == self.start[1]:
            return "CPU steal: unknown"
        share = (end[0] - self.start[0]) / (end[1] - self.start[1])
        return f"CPU steal during the run: {share:.0%} (time the host gave to other VMs)"
