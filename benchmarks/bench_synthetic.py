"""Time the synthetic hair generator: 20,000 faces at 64 x 64, against a same-run baseline.

The baseline fills an array of the same shape with random bytes, so the ratio says how many
times more work a face is than writing its pixels once, independent of the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qbias_check.datasets.synthetic import make_hair


def main() -> None:
    """Print images per second for 1 thread and the default threads, and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    start = time.perf_counter()
    np.random.default_rng(0).integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    make_hair(args.n, seed=0, size=args.size)
    took = time.perf_counter() - start
    print(
        f"make_hair({args.n}, size={args.size}): {took:.1f} s "
        f"({args.n / took:,.0f} images/s); random-bytes baseline {baseline:.2f} s; "
        f"ratio {took / baseline:.0f}x"
    )


if __name__ == "__main__":
    main()
