"""Independent NumPy perplexity of a checkpoint on a text, as the TensorFlow PTB tutorial
scores a split (its `run_epoch` without training), with the reader, batch layout and
forward pass of train_steps.py: the words of TEXT as ids of the checkpoint's vocabulary, cut
into BATCH rows, read NUM_STEPS columns at a time with the state carried from the first
step (zero) to the last; perplexity = exp(the losses' sum over every time step / (steps *
NUM_STEPS)), each step's loss the cross-entropy summed over its time steps and averaged
over the batch. Prints JSON: {"perplexity": ..., "steps": ...}.

Usage: python3 perplexity.py CHECKPOINT TEXT BATCH NUM_STEPS
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from train_steps import forward, producer, read_ids


def main():
    path, text, batch, num_steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with safe_open(path, "np") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    p = {k: v.astype(np.float64) for k, v in load_file(path).items() if not k.startswith("state.")}
    data = producer(read_ids(text, json.loads(meta["vocab"])), batch)
    steps = (data.shape[1] - 1) // num_steps
    if steps < 1:
        sys.exit(f"perplexity.py: {text} is too short for {batch} rows of {num_steps} steps")
    hidden = cfg["hidden"]
    state = ([np.zeros((batch, h)) for h in hidden], [np.zeros((batch, h)) for h in hidden])
    no_dropout = [None] * (len(hidden) + 1)
    total = 0.0
    for s in range(steps):
        x = data[:, s * num_steps:(s + 1) * num_steps]
        y = data[:, s * num_steps + 1:(s + 1) * num_steps + 1]
        total += forward(p, cfg, x, y, state, no_dropout)[0]
    print(json.dumps({"perplexity": float(np.exp(total / (steps * num_steps))), "steps": steps}))


if __name__ == "__main__":
    main()
