"""Benchmark: a full gate run on the bundled example, cold and warm, against the model inferences
alone (plain Keras predict + a plain LiteRT interpreter loop) measured in the same run.

Each of the three is a fresh Python process, so each pays for its own imports:

- gate, cold: ``pytest thresholds.toml`` with an empty cache (generates the eval set, runs
  both models, 1,000 bootstrap replicates, judges every check, prints the summary);
- gate, warm: the same command again (eval set and predictions from the cache);
- inference alone: load both models and predict the same images, nothing else.

Run: .venv/bin/python benchmarks/bench_gate.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INFERENCE = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tf_keras
from ai_edge_litert.interpreter import Interpreter

x = np.load(sys.argv[1])["x"].astype(np.float32)
tf_keras.models.load_model("fixtures/hair/v3small_float.h5", compile=False).predict(
    x, batch_size=64, verbose=0
)
interpreter = Interpreter("fixtures/hair/v3small_int8.tflite")
detail = interpreter.get_input_details()[0]
scale, zero = detail["quantization"]
for start in range(0, len(x), 64):
    batch = x[start : start + 64]
    interpreter.resize_tensor_input(detail["index"], batch.shape)
    interpreter.allocate_tensors()
    q = np.clip(np.rint(batch / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], q)
    interpreter.invoke()
    interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
"""


def timed(command: list[str]) -> float:
    """Wall time of one command run from the repo root."""
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    from qbias_check.datasets import save_npz
    from qbias_check.datasets.synthetic import make_hair

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        evalset = make_hair(3000, seed=1, size=64)
        generation = time.perf_counter() - start
        data = Path(tmp) / "eval.npz"
        save_npz(evalset, data, compress=False)

        gate = [sys.executable, "-m", "pytest", "thresholds.toml", "-q", "-p", "no:cacheprovider"]
        gate.append(f"--qbias-cache-dir={Path(tmp) / 'cache'}")
        cold = timed(gate)
        warm = timed(gate)
        inference = timed([sys.executable, "-c", INFERENCE, str(data)])

    print("bundled example: 3,000 images at 64x64, MobileNetV3Small float (tf_keras) and int8")
    print(f"eval-set generation alone:          {generation:6.2f} s")
    print(f"model inferences alone (2 models):  {inference:6.2f} s")
    print(f"gate, cold cache:                   {cold:6.2f} s  ({cold / inference:.2f}x inference)")
    print(f"gate, warm cache:                   {warm:6.2f} s  ({warm / cold:.0%} of cold)")


if __name__ == "__main__":
    main()
