"""Independent NumPy forward pass of an lstm-gpu checkpoint, from the documented tensor
names and layouts only (README, "Checkpoints"), on train_steps.py's LSTM. Prints the
next-word distribution after a context as JSON: {"probabilities": [...]} over the whole
vocabulary.

Usage: python3 forward.py CHECKPOINT WORD [WORD ...]
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from train_steps import forward


def main():
    path, words = sys.argv[1], sys.argv[2:]
    w = {k: v.astype(np.float64) for k, v in load_file(path).items() if not k.startswith("state.")}
    with safe_open(path, "np") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    vocab = json.loads(meta["vocab"])
    index = {word: i for i, word in enumerate(vocab)}
    unk = index.get("<unk>")
    # The context as one row of len(words) time steps from a zero state, no dropout; the
    # distribution after it is the softmax of the last time step's logits.
    x = np.array([[index.get(word, unk) for word in words]], dtype=np.int64)
    hidden = config["hidden"]
    state = ([np.zeros((1, h)) for h in hidden], [np.zeros((1, h)) for h in hidden])
    logits = forward(w, config, x, np.zeros_like(x), state, [None] * (len(hidden) + 1))[2][-1]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    print(json.dumps({"probabilities": p.tolist()}))


if __name__ == "__main__":
    main()
