"""The PyTorch mapping of python/lstm_gpu_torch.py, checked without PyTorch: its `to_torch`
tensors run through PyTorch's documented equations, written here in NumPy (f64):

    nn.Embedding:  weight[ids]
    nn.LSTM:       i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
                   f = sigmoid(W_if x + b_if + W_hf h + b_hf)
                   g = tanh(W_ig x + b_ig + W_hg h + b_hg)
                   o = sigmoid(W_io x + b_io + W_ho h + b_ho)
                   c' = f * c + i * g,  h' = o * tanh(c')
                   (weight_ih_l0 = [W_ii; W_if; W_ig; W_io], [4h, in]; likewise the rest)
    nn.Linear:     x @ weight.T + bias

give the next-token distribution after a context (from a zero state); and `from_torch`
of `to_torch` written back with `write` (lstm-gpu's checkpoint format, checksum included)
gives the original tensors bit for bit. Prints JSON: {"probabilities": [...],
"round_trip_exact": bool}.

Usage: python3 torch_layout.py CHECKPOINT OUT WORD [WORD ...]
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import lstm_gpu_torch as lg  # noqa: E402


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def main():
    path, out, words = sys.argv[1], sys.argv[2], sys.argv[3:]
    weights, vocab, config, position = lg.read(path)
    s = {k: v.astype(np.float64) for k, v in lg.to_torch(weights, config).items()}
    ids = lg.encode(" ".join(words), vocab, config)
    x = s["embedding.weight"][ids]  # [steps, embedding]
    for l, units in enumerate(config["hidden"]):
        w_ih, w_hh = s[f"lstm.{l}.weight_ih_l0"], s[f"lstm.{l}.weight_hh_l0"]
        b_ih, b_hh = s[f"lstm.{l}.bias_ih_l0"], s[f"lstm.{l}.bias_hh_l0"]
        h, c = np.zeros(units), np.zeros(units)
        outputs = []
        for xt in x:
            z = w_ih @ xt + b_ih + w_hh @ h + b_hh
            i, f, g, o = (z[k * units:(k + 1) * units] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            outputs.append(h)
        x = np.stack(outputs)
    logits = x[-1] @ s["softmax.weight"].T + s["softmax.bias"]
    p = np.exp(logits - logits.max())
    p /= p.sum()

    lg.write(out, lg.from_torch(lg.to_torch(weights, config), config), vocab, config, position)
    back = lg.read(out)[0]
    exact = sorted(back) == sorted(weights) and all(
        back[k].dtype == weights[k].dtype and np.array_equal(back[k], weights[k]) for k in weights
    )
    print(json.dumps({"probabilities": p.tolist(), "round_trip_exact": exact}))


if __name__ == "__main__":
    main()
