"""Independent NumPy training steps, written from the TensorFlow PTB tutorial's semantics
(ptb_word_lm.py, reader.py) and lstm-gpu's documented checkpoint names and layouts only
(README, "Checkpoints"), in f64.

From the weights of INIT, it trains STEPS steps on TEXT as a fresh `lstm-gpu train` run
does. The words of TEXT (every newline the token `<eos>`, as TensorFlow's reader reads PTB)
are mapped to ids by the vocabulary of the program's checkpoint FINAL (a word outside it is
`<unk>`) and laid out as TensorFlow's `ptb_producer` lays them: the id stream cut into
`batch_size` rows; step i of an epoch reads columns [i * num_steps, (i + 1) * num_steps)
and predicts the next column; each epoch starts at the text's start from a zero state, and
the state is carried from step to step. Dropout where the tutorial applies it (the
embedding output and every layer's output, the recurrent connections untouched:
`tf.nn.dropout` and `DropoutWrapper(output_keep_prob)`), inverted (kept values times
1 / keep_prob), the same mask on the gradient, drawn with the program's documented mask
generator (README, "What it computes") so that both drop the same elements. The loss of a
step is the cross-entropy summed over its time steps and averaged over the batch; gradients
by backpropagation through the step's time steps; the global norm of every gradient
clipped to `max_grad_norm`; plain SGD at `learning_rate`, decayed by `decay` each epoch from
epoch `max_epoch_decay_lr` on (counted from 0). The hyperparameters are FINAL's config.

Writes the weights after the last step to OUT (safetensors, F64) and prints JSON: per step
the loss, the global gradient norm, the epoch, the rate and the epoch's perplexity so far
(exp of its losses' sum over the time steps run), as the program's log reports it.

Usage: python3 train_steps.py INIT FINAL TEXT STEPS OUT
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hash_u32(x):
    """"lowbias32" (Chris Wellons) on uint32 arrays, multiplies wrapping."""
    x = x.copy()
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def dropout_scale(seed32, stream, shape, keep, inv_keep):
    """The inverted-dropout factor of every element of a tensor of `shape` (its elements
    numbered row-major: time-major rows, as the program lays activations out): 1 / keep where
    the element's uniform number is below keep, else 0."""
    with np.errstate(over="ignore"):
        s = np.array([(stream + 0x9E3779B9) & 0xFFFFFFFF], dtype=np.uint32)
        key = hash_u32(np.uint32(seed32) ^ hash_u32(s))
        index = np.arange(int(np.prod(shape)), dtype=np.uint32)
        h = hash_u32(index ^ key)
    u = (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return np.where(u < keep, inv_keep, 0.0).reshape(shape)


def read_ids(text, vocab):
    """The words of the file `text` (every newline the token `<eos>`, as TensorFlow's reader
    reads PTB) as ids of `vocab`, a word outside it `<unk>`."""
    index = {w: i for i, w in enumerate(vocab)}
    words = open(text, encoding="utf-8").read().replace("\n", "<eos>").split()
    return np.array([index.get(w, index.get("<unk>")) for w in words], dtype=np.int64)


def producer(ids, batch):
    """TensorFlow's `ptb_producer` layout: the stream cut into `batch` rows; step i reads
    columns [i * num_steps, (i + 1) * num_steps) and predicts the next column."""
    batch_len = len(ids) // batch
    return ids[: batch * batch_len].reshape(batch, batch_len)


def forward(p, cfg, x, y, state, drop):
    """One step's forward pass from the carried `state` (lists of c and h, updated) with
    the dropout factors `drop` per site (None: none): the loss (cross-entropy summed over
    time steps, averaged over the batch), the top layer's outputs after dropout, the logits,
    their log-sum-exp, and per layer the tape of every time step for the backward pass."""
    hidden, fb = cfg["hidden"], cfg["forget_bias"]
    num_steps, batch = x.shape[1], x.shape[0]
    c_state, h_state = state
    layer_in = p["embedding"][x.T]  # [time, batch, embedding]
    if drop[0] is not None:
        layer_in = layer_in * drop[0]
    saved = []
    for l, units in enumerate(hidden):
        w, b = p[f"lstm.{l}.weight"], p[f"lstm.{l}.bias"]
        c, h = c_state[l], h_state[l]
        tape, outputs = [], []
        for t in range(num_steps):
            xh = np.concatenate([layer_in[t], h], axis=1)
            z = xh @ w + b
            i = sigmoid(z[:, :units])
            j = np.tanh(z[:, units:2 * units])
            f = sigmoid(z[:, 2 * units:3 * units] + fb)
            o = sigmoid(z[:, 3 * units:])
            c_prev = c
            c = c_prev * f + i * j
            h = np.tanh(c) * o
            tape.append((xh, i, j, f, o, c_prev, c))
            outputs.append(h)
        c_state[l], h_state[l] = c, h
        saved.append(tape)
        layer_in = np.stack(outputs)
        if drop[l + 1] is not None:
            layer_in = layer_in * drop[l + 1]
    top = layer_in.reshape(num_steps * batch, hidden[-1])
    soft_w = p["embedding"].T if cfg["tie_weights"] else p["softmax.weight"]
    logits = top @ soft_w + p["softmax.bias"]
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    targets = y.T.reshape(-1)
    loss = (lse - logits[np.arange(num_steps * batch), targets]).sum() / batch
    return loss, top, logits, lse, saved


def main():
    init, final, text, steps, out = sys.argv[1:6]
    steps = int(steps)
    with safe_open(final, "np") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    vocab = json.loads(meta["vocab"])
    position = json.loads(meta["position"])
    seed = position["seed"]
    seed32 = (seed ^ (seed >> 32)) & 0xFFFFFFFF
    keep = np.float32(cfg["keep_prob"])
    inv_keep = float(np.float32(1.0) / keep)
    sites = len(cfg["hidden"]) + 1
    batch, num_steps = cfg["batch_size"], cfg["num_steps"]
    data = producer(read_ids(text, vocab), batch)
    epoch_size = (data.shape[1] - 1) // num_steps
    assert epoch_size >= 1, "the text is too short for one step"

    p = {k: v.astype(np.float64) for k, v in load_file(init).items()}
    hidden, tied = cfg["hidden"], cfg["tie_weights"]
    inputs = [cfg["embedding_size"]] + hidden[:-1]
    report = []
    for s in range(steps):
        # Epoch `epoch`, its step `at`: each epoch starts from a zero state at the text's start, at
        # the rate of the tutorial's schedule (decayed from epoch max_epoch_decay_lr on,
        # counted from 0, as lstm-gpu's config names TensorFlow's max_epoch - 1).
        epoch, at = divmod(s, epoch_size)
        if at == 0:
            state = ([np.zeros((batch, h)) for h in hidden], [np.zeros((batch, h)) for h in hidden])
            loss_sum = 0.0
        lr = cfg["learning_rate"] * cfg["decay"] ** max(epoch - cfg["max_epoch_decay_lr"], 0)
        x = data[:, at * num_steps:(at + 1) * num_steps]
        y = data[:, at * num_steps + 1:(at + 1) * num_steps + 1]
        # Dropout at site 0 (the embedding output) and l + 1 (layer l's output); the
        # step's streams are numbered global step * sites + site.
        drop = [None] * sites
        if keep < 1.0:
            widths = [cfg["embedding_size"]] + hidden
            drop = [dropout_scale(seed32, s * sites + site, (num_steps, batch, widths[site]),
                                  keep, inv_keep) for site in range(sites)]
        loss, top, logits, lse, saved = forward(p, cfg, x, y, state, drop)
        soft_w = p["embedding"].T if tied else p["softmax.weight"]
        targets = y.T.reshape(-1)
        rows = np.arange(num_steps * batch)

        g = {k: np.zeros_like(v) for k, v in p.items()}
        d_logits = np.exp(logits - lse[:, None])
        d_logits[rows, targets] -= 1.0
        d_logits /= batch
        if tied:
            g["embedding"] += d_logits.T @ top
        else:
            g["softmax.weight"] = top.T @ d_logits
        g["softmax.bias"] = d_logits.sum(axis=0)
        d_out = (d_logits @ soft_w.T).reshape(num_steps, batch, hidden[-1])
        for l in reversed(range(len(hidden))):
            if drop[l + 1] is not None:
                d_out = d_out * drop[l + 1]
            units, w = hidden[l], p[f"lstm.{l}.weight"]
            dh_next = np.zeros((batch, units))
            dc_next = np.zeros((batch, units))
            d_in = np.zeros((num_steps, batch, inputs[l]))
            for t in reversed(range(num_steps)):
                xh, i, j, f, o, c_prev, c = saved[l][t]
                dh = d_out[t] + dh_next
                tc = np.tanh(c)
                dc = dc_next + dh * o * (1.0 - tc * tc)
                dz = np.concatenate(
                    [dc * j * i * (1.0 - i), dc * i * (1.0 - j * j),
                     dc * c_prev * f * (1.0 - f), dh * tc * o * (1.0 - o)],
                    axis=1,
                )
                g[f"lstm.{l}.weight"] += xh.T @ dz
                g[f"lstm.{l}.bias"] += dz.sum(axis=0)
                dxh = dz @ w.T
                d_in[t] = dxh[:, :inputs[l]]
                dh_next = dxh[:, inputs[l]:]
                dc_next = dc * f
            d_out = d_in
        if drop[0] is not None:
            d_out = d_out * drop[0]
        np.add.at(g["embedding"], x.T.reshape(-1), d_out.reshape(num_steps * batch, -1))

        norm = float(np.sqrt(sum((v * v).sum() for v in g.values())))
        scale = min(1.0, cfg["max_grad_norm"] / norm)
        for k in p:
            p[k] -= lr * scale * g[k]
        loss_sum += loss
        report.append({
            "loss": loss,
            "grad_norm": norm,
            "epoch": epoch + 1,
            "learning_rate": lr,
            "perplexity": float(np.exp(loss_sum / ((at + 1) * num_steps))),
        })
    save_file(p, out)
    print(json.dumps({"steps": report}))


if __name__ == "__main__":
    main()
