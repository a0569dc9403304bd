"""Independent NumPy forward pass of an lstm-gpu checkpoint, from the documented tensor
names and layouts only (README, "Checkpoints"). Prints the next-word distribution after a
context as JSON: {"probabilities": [...]} over the whole vocabulary.

Usage: python3 forward.py CHECKPOINT WORD [WORD ...]
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def main():
    path, words = sys.argv[1], sys.argv[2:]
    w = {k: v.astype(np.float64) for k, v in load_file(path).items()}
    with safe_open(path, "np") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    vocab = json.loads(meta["vocab"])
    index = {word: i for i, word in enumerate(vocab)}
    unk = index.get("<unk>")
    hidden = config["hidden"]
    forget_bias = config["forget_bias"]
    c = [np.zeros(h) for h in hidden]
    h = [np.zeros(n) for n in hidden]
    logits = None
    for word in words:
        x = w["embedding"][index.get(word, unk)]
        for l, units in enumerate(hidden):
            z = np.concatenate([x, h[l]]) @ w[f"lstm.{l}.weight"] + w[f"lstm.{l}.bias"]
            i, j, f, o = (z[k * units:(k + 1) * units] for k in range(4))
            c[l] = c[l] * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
            h[l] = np.tanh(c[l]) * sigmoid(o)
            x = h[l]
        # Tied weights: no softmax.weight; the softmax weight is the embedding transposed.
        weight = w["embedding"].T if config.get("tie_weights") else w["softmax.weight"]
        logits = x @ weight + w["softmax.bias"]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    print(json.dumps({"probabilities": p.tolist()}))


if __name__ == "__main__":
    main()
