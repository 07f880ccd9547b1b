"""Inference and training throughput of every model (wraps `python -m eqhelpers bench`).

    python benchmarks/throughput.py --budget cpu --batch-sizes 64 256 \
        --out benchmarks/results/throughput_cpu
"""

import sys

from eqhelpers.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
