#!/usr/bin/env python3
"""lstm-gpu checkpoints in PyTorch: load one as an `nn.Module` of PyTorch's own `nn.LSTM`,
`nn.Embedding` and `nn.Linear`, score text with it, predict the next word, and write a
model's weights back as an lstm-gpu checkpoint (`lstm-gpu eval`, `predict`, `generate`, the
browser page) or as initial weights (`lstm-gpu train --init`).

    import lstm_gpu_torch as lg
    model, vocab, config = lg.load("runs/NAME/last.safetensors")
    ids = lg.encode("the stock market", vocab, config)
    logits, state = model(torch.tensor([ids]))           # [1, 3, vocab], per layer (h, c)
    lg.save(model, vocab, config, "tuned.safetensors")    # back to lstm-gpu

Training it on in PyTorch as lstm-gpu trains (one epoch at a constant rate, no dropout
masks in common; `tests/interop.rs` checks that the weights come out as lstm-gpu's):

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=config["learning_rate"])
    state = None
    for x, y in lg.batches(train_ids, config["batch_size"], config["num_steps"]):
        logits, state = model(torch.from_numpy(x), state)
        state = [(h.detach(), c.detach()) for h, c in state]
        opt.zero_grad()
        lg.loss(logits, torch.from_numpy(y)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config["max_grad_norm"])
        opt.step()

From the command line (the same figures as `lstm-gpu eval` and `lstm-gpu predict`):

    python3 python/lstm_gpu_torch.py perplexity CHECKPOINT TEXT [--batch-size 1] [--num-steps N]
    python3 python/lstm_gpu_torch.py predict CHECKPOINT "the stock market" [--top-k 10] [--json]
    python3 python/lstm_gpu_torch.py generate CHECKPOINT "the stock market" [--words 50]
                                    [--temperature 1] [--top-k 0] [--seed 1]

The mapping (lstm-gpu's layout is README "Checkpoints"; its cell is TensorFlow's
BasicLSTMCell, `z = [x, h] @ W + b`, gate columns i, j, f, o, the forget gate's
pre-activation plus `forget_bias`; PyTorch's `nn.LSTM` computes `x @ W_ih^T + b_ih + h @
W_hh^T + b_hh`, gate rows i, f, g, o):

    lstm.{l}.weight [in + h, 4h]   ->  lstm.{l}.weight_ih_l0 [4h, in], weight_hh_l0 [4h, h]
                                       (W^T with its gate blocks reordered; j is PyTorch's g)
    lstm.{l}.bias [4h]             ->  lstm.{l}.bias_ih_l0 (reordered), bias_hh_l0 (zero but
                                       forget_bias in the forget block)
    embedding [vocab, emb]         ->  embedding.weight
    softmax.weight [h_top, vocab]  ->  softmax.weight [vocab, h_top] (nn.Linear's layout); with
                                       tied weights the module shares embedding.weight
    softmax.bias                   ->  softmax.bias

Each layer is an `nn.LSTM` of its own (lstm-gpu's layers may differ in width), batch first.
Dropout (`nn.Dropout(1 - keep_prob)`) is where lstm-gpu applies it: on the embedding output
and every layer's output; `model.eval()` turns it off. The conversion is exact both ways
(transposes and reordering; the forget bias sits alone in `bias_hh`, so that writing back
subtracts it from itself). Only NumPy and safetensors are needed for the conversion
(`to_torch`, `from_torch`); PyTorch for the module.
"""
import argparse
import json
import math
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

try:
    import torch
    from torch import nn
except ImportError:  # the NumPy conversion works without it
    torch = None

FORMAT = "lstm-gpu/1"
# PyTorch's gate block k (i, f, g, o) is lstm-gpu's gate block GATES[k] (i, j, f, o); the
# permutation is its own inverse, so it maps lstm-gpu's blocks from PyTorch's too.
GATES = (0, 2, 1, 3)


def _gate_rows(h):
    """The indices that reorder a [4h] gate axis between the two orders."""
    return np.concatenate([np.arange(g * h, (g + 1) * h) for g in GATES])


def read(path):
    """An lstm-gpu checkpoint's tensors (NumPy, F32) and its metadata: (weights, vocab,
    config, position). The carried state of a mid-epoch checkpoint, where there is one, is
    among the weights as `state.{l}.c` and `state.{l}.h` ([batch, h])."""
    try:
        with safe_open(path, "np") as f:
            meta = f.metadata() or {}
    except OSError:
        raise
    except Exception as e:  # safetensors' own error type varies between its versions
        raise ValueError(f"{path}: not a safetensors file ({e})") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an lstm-gpu checkpoint (its metadata has no format {FORMAT})")
    missing = [k for k in ("config", "vocab", "position") if k not in meta]
    if missing:
        raise ValueError(f"{path}: its metadata lacks {', '.join(missing)}")
    return (
        load_file(path),
        json.loads(meta["vocab"]),
        json.loads(meta["config"]),
        json.loads(meta["position"]),
    )


def to_torch(weights, config):
    """lstm-gpu's tensors as the state dict of `LanguageModel(config)` (NumPy arrays)."""
    out = {"embedding.weight": weights["embedding"]}
    width = config["embedding_size"]
    for l, h in enumerate(config["hidden"]):
        rows = _gate_rows(h)
        w = weights[f"lstm.{l}.weight"][:, rows].T  # [4h, in + h], PyTorch's gate order
        out[f"lstm.{l}.weight_ih_l0"] = np.ascontiguousarray(w[:, :width])
        out[f"lstm.{l}.weight_hh_l0"] = np.ascontiguousarray(w[:, width:])
        out[f"lstm.{l}.bias_ih_l0"] = weights[f"lstm.{l}.bias"][rows]
        bias_hh = np.zeros(4 * h, dtype=np.float32)
        bias_hh[h:2 * h] = config["forget_bias"]  # PyTorch's forget block
        out[f"lstm.{l}.bias_hh_l0"] = bias_hh
        width = h
    if config.get("tie_weights"):
        out["softmax.weight"] = weights["embedding"]
    else:
        out["softmax.weight"] = np.ascontiguousarray(weights["softmax.weight"].T)
    out["softmax.bias"] = weights["softmax.bias"]
    return out


def from_torch(state_dict, config):
    """A `LanguageModel`'s state dict (tensors or NumPy arrays) as lstm-gpu's tensors (F32
    NumPy arrays, the names of README "Checkpoints")."""
    s = {k: _numpy(v) for k, v in state_dict.items()}
    out = {"embedding": s["embedding.weight"]}
    for l, h in enumerate(config["hidden"]):
        rows = _gate_rows(h)
        w = np.concatenate([s[f"lstm.{l}.weight_ih_l0"], s[f"lstm.{l}.weight_hh_l0"]], axis=1)
        out[f"lstm.{l}.weight"] = np.ascontiguousarray(w[rows].T)
        forget = np.zeros(4 * h, dtype=np.float32)
        forget[h:2 * h] = config["forget_bias"]
        # bias_hh less the forget bias is exactly zero for weights that came from lstm-gpu.
        bias = s[f"lstm.{l}.bias_ih_l0"] + (s[f"lstm.{l}.bias_hh_l0"] - forget)
        out[f"lstm.{l}.bias"] = bias[rows]
    if config.get("tie_weights"):
        if not np.array_equal(s["softmax.weight"], s["embedding.weight"]):
            raise ValueError("config says tie_weights, but softmax.weight is not embedding.weight")
    else:
        out["softmax.weight"] = np.ascontiguousarray(s["softmax.weight"].T)
    out["softmax.bias"] = s["softmax.bias"]
    return out


def _numpy(v):
    if torch is not None and isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return np.ascontiguousarray(v, dtype=np.float32)


def _fnv1a(h, data):
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def checksum(tensors):
    """lstm-gpu's checkpoint checksum: FNV-1a 64 over every tensor's name and bytes in name
    order, as hex. Pure Python: about 0.15 s per MB (a few seconds for the seed model, half
    a minute for large)."""
    h = 0xCBF29CE484222325
    for name in sorted(tensors):
        h = _fnv1a(h, name.encode())
        h = _fnv1a(h, np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return f"{h:016x}"


def write(path, weights, vocab, config, position=None):
    """Write lstm-gpu tensors (NumPy) as a checkpoint `lstm-gpu eval`, `predict` and
    `generate` read. `position` defaults to a finished run (epoch = max_epoch), which
    `lstm-gpu train --resume` has nothing left to do for: to train it on, pass it as `--init`
    (weights only) or give the position of the run it came from."""
    if len(vocab) != config["vocab_size"]:
        raise ValueError(f"the vocabulary has {len(vocab)} words, the config {config['vocab_size']}")
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    if position is None:
        position = {
            "epoch": config["max_epoch"],
            "step_in_epoch": 0,
            "global_step": 0,
            "learning_rate": config["learning_rate"],
            "seed": 0,
            "epoch_loss_sum": 0.0,
            "train_seconds": 0.0,
        }
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config),
        "vocab": json.dumps(vocab, ensure_ascii=False),
        "position": json.dumps(position),
        "checksum": checksum(tensors),
    }
    save_file(tensors, path, metadata=metadata)


if torch is not None:

    class LanguageModel(nn.Module):
        """lstm-gpu's model in PyTorch: an embedding, one `nn.LSTM` per layer (batch first),
        dropout on the embedding output and each layer's output, and the softmax layer
        (`softmax.weight` shared with the embedding where `config["tie_weights"]`)."""

        def __init__(self, config):
            super().__init__()
            self.config = config
            self.embedding = nn.Embedding(config["vocab_size"], config["embedding_size"])
            widths = [config["embedding_size"], *config["hidden"]]
            self.lstm = nn.ModuleList(
                nn.LSTM(i, h, batch_first=True) for i, h in zip(widths, widths[1:])
            )
            # lstm-gpu's cell has one bias. PyTorch's second would learn the same gradient
            # as the first (moving their sum twice as fast, counted twice in a clipped
            # norm), so it holds the forget bias, constant: the model trains as lstm-gpu's.
            for layer in self.lstm:
                layer.bias_hh_l0.requires_grad_(False)
            self.dropout = nn.Dropout(1.0 - config["keep_prob"])
            self.softmax = nn.Linear(widths[-1], config["vocab_size"])
            if config.get("tie_weights"):
                self.softmax.weight = self.embedding.weight

        def zero_state(self, batch):
            """The state at an epoch's start: per layer (h, c), each [1, batch, h]."""
            p = self.embedding.weight
            return [
                (p.new_zeros(1, batch, h), p.new_zeros(1, batch, h)) for h in self.config["hidden"]
            ]

        def forward(self, ids, state=None):
            """Logits [batch, steps, vocab] of the next token after each of `ids` ([batch,
            steps]), and the state after the last step (`state`: from `zero_state`, or a
            previous call's; None: zero)."""
            if state is None:
                state = self.zero_state(ids.shape[0])
            x = self.dropout(self.embedding(ids))
            after = []
            for layer, s in zip(self.lstm, state):
                x, s = layer(x, s)
                x = self.dropout(x)
                after.append(s)
            return self.softmax(x), after

    def load(path, device="cpu"):
        """An lstm-gpu checkpoint as (LanguageModel in eval mode, vocab, config)."""
        weights, vocab, config, _ = read(path)
        model = LanguageModel(config)
        state = {k: torch.from_numpy(v) for k, v in to_torch(weights, config).items()}
        model.load_state_dict(state)
        return model.to(device).eval(), vocab, config

    def save(model, vocab, config, path, position=None):
        """Write a LanguageModel as an lstm-gpu checkpoint (see `write`)."""
        write(path, from_torch(model.state_dict(), config), vocab, config, position)

    def save_weights(model, config, path):
        """Write a LanguageModel's weights, without metadata, for `lstm-gpu train --init`."""
        save_file(from_torch(model.state_dict(), config), path)

    def loss(logits, targets):
        """lstm-gpu's (and the TensorFlow tutorial's) training loss: the cross-entropy summed
        over the time steps and averaged over the batch (`logits` [batch, steps, vocab],
        `targets` [batch, steps]). Its gradient is `steps` times that of PyTorch's default
        mean, which the learning rates of lstm-gpu's presets expect."""
        flat = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        )
        return flat / logits.shape[0]

    @torch.no_grad()
    def perplexity(model, ids, batch_size=1, num_steps=None):
        """Perplexity of `ids` as lstm-gpu and the TensorFlow tutorial score a split: the ids
        cut into `batch_size` rows (TensorFlow's `ptb_producer`), read `num_steps` columns at
        a time from a zero state carried to the end, every prediction of the steps read
        counted. `num_steps=None` reads every column (`lstm-gpu eval`'s test pass at one
        step per batch), in chunks."""
        ids = np.asarray(ids, dtype=np.int64)
        columns = len(ids) // batch_size
        data = torch.from_numpy(ids[: batch_size * columns].reshape(batch_size, columns))
        data = data.to(model.embedding.weight.device)
        if num_steps is None:
            chunk, end = 256, columns - 1
        else:
            chunk, end = num_steps, (columns - 1) // num_steps * num_steps
        if end < 1:
            raise ValueError(f"{len(ids)} tokens are too few for {batch_size} rows of {num_steps} steps")
        model.eval()
        state, total = None, 0.0
        for start in range(0, end, chunk):
            stop = min(start + chunk, end)
            logits, state = model(data[:, start:stop], state)
            target = data[:, start + 1:stop + 1]
            total += nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).double(), target.reshape(-1), reduction="sum"
            ).item()
        return math.exp(total / (batch_size * end))

    @torch.no_grad()
    def generate(model, vocab, config, prompt, n=50, temperature=1.0, top_k=0, seed=1, top_p=1.0):
        """`n` tokens after `prompt`, as `lstm-gpu generate` writes them (the same sampler
        and generator, so the same seed gives the same text wherever the two models'
        probabilities order and weigh the tokens alike): the prompt, then each token, words
        with a space between, characters as they come, `<eos>` a line break."""
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"the temperature must be a number above 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be above 0 and at most 1, got {top_p}")
        ids = encode(prompt, vocab, config)
        if not ids:
            raise ValueError("the prompt has no tokens")
        model.eval()
        device = model.embedding.weight.device
        chars = config.get("tokens", "words") == "chars"
        sep = "" if chars else " "
        text = prompt if chars else prompt.strip()
        at_line_start = chars and prompt.endswith("\n")
        rng = SplitMix64(seed)
        logits, state = model(torch.tensor([ids], device=device))
        for _ in range(n):
            probs = torch.softmax(logits[0, -1].float(), dim=0).cpu().numpy()
            token = sample(probs, temperature, top_k, rng.next_f64(), top_p)
            if vocab[token] == "<eos>":
                text += "\n"
                at_line_start = True
            else:
                text += ("" if at_line_start else sep) + vocab[token]
                at_line_start = False
            logits, state = model(torch.tensor([[token]], device=device), state)
        return text

    @torch.no_grad()
    def next_token(model, ids):
        """The distribution of the token after `ids` (a list), from a zero state, as
        `lstm-gpu predict` gives it."""
        if not ids:
            raise ValueError("the context has no tokens")
        model.eval()
        device = model.embedding.weight.device
        logits, _ = model(torch.tensor([ids], device=device))
        return torch.softmax(logits[0, -1].double(), dim=0)


class SplitMix64:
    """lstm-gpu's sampler's generator (src/rng.rs): the same seed, the same numbers."""

    MASK = 0xFFFFFFFFFFFFFFFF

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def next_f64(self):
        """Uniform in [0, 1) with 53 bits."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))


def _sum(values):
    """Added one after the other, as Rust's `Iterator::sum` adds (Python 3.12's `sum`
    compensates its rounding, which could move a draw that falls on a boundary)."""
    total = 0.0
    for v in values:
        total += v
    return total


def sample(probs, temperature, top_k, u, top_p=1.0):
    """lstm-gpu's choice of the next token (src/model/predict.rs): the tokens by
    probability (ties by id), the `top_k` first (0: all), weighted by p^(1/temperature),
    the fewest first whose weights together reach `top_p` of the whole (1: all), the one
    where `u` (uniform in [0, 1)) falls."""
    probs = np.asarray(probs, dtype=np.float32)
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    if top_k > 0:
        order = order[:top_k]
    weights = [max(float(probs[i]), 0.0) ** (1.0 / float(np.float32(temperature))) for i in order]
    top_p = float(np.float32(top_p))
    if top_p < 1.0:
        reach, total, n = top_p * _sum(weights), 0.0, len(weights)
        for k, w in enumerate(weights):
            total += w
            if total >= reach:
                n = k + 1
                break
        order, weights = order[:n], weights[:n]
    target = u * _sum(weights)
    for w, i in zip(weights, order):
        if target < w:
            return i
        target -= w
    return order[0]


def batches(ids, batch_size, num_steps):
    """An epoch's batches as lstm-gpu and TensorFlow's `ptb_producer` lay them out: the ids
    cut into `batch_size` rows, batch i the columns [i * num_steps, (i + 1) * num_steps) and
    its targets one column on. Yields (x, y), int64 arrays [batch_size, num_steps]; the state
    carries from one batch to the next."""
    ids = np.asarray(ids, dtype=np.int64)
    columns = len(ids) // batch_size
    data = ids[: batch_size * columns].reshape(batch_size, columns)
    for i in range((columns - 1) // num_steps):
        at = i * num_steps
        yield data[:, at:at + num_steps], data[:, at + 1:at + num_steps + 1]


def tokens(text, kind="words"):
    """`text` as lstm-gpu's tokens of `kind` (the checkpoint's `config["tokens"]`): `words`
    is TensorFlow's PTB reader (`text.replace("\\n", "<eos>").split()`, which glues a newline
    touching a word onto it), `words-eos` the same words with every newline its own `<eos>`,
    `chars` every character (a newline `<eos>`)."""
    if kind == "words":
        return text.replace("\n", "<eos>").split()
    if kind == "words-eos":
        lines = text.split("\n")
        out = []
        for n, line in enumerate(lines):
            out += line.split()
            if n + 1 < len(lines):
                out.append("<eos>")
        return out
    if kind == "chars":
        return ["<eos>" if c == "\n" else c for c in text]
    raise ValueError(f"unknown tokens {kind!r} (words, words-eos, chars)")


def read_text(path):
    """A text file as lstm-gpu reads it: UTF-8, line ends as they are (no universal-newline
    translation: `\r\n` is a blank and a newline, as for TensorFlow's reader)."""
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def encode(text, vocab, config, prompt=True):
    """`text` as ids of `vocab`, tokenised as the checkpoint's config says. A token outside
    the vocabulary is `<unk>` (a `prompt`'s is looked up lower-cased first, as `lstm-gpu
    predict` does: "The" is PTB's "the"); without `<unk>` it is an error."""
    index = {w: i for i, w in enumerate(vocab)}
    unk = index.get("<unk>")
    ids = []
    for t in tokens(text, config.get("tokens", "words")):
        i = index.get(t)
        if i is None and prompt:
            i = index.get(t.lower())
        if i is None:
            if unk is None:
                raise ValueError(f"{t!r} is not in the vocabulary, which has no <unk>")
            i = unk
        ids.append(i)
    return ids


def encode_text(text, vocab, config):
    """A text to score, as `lstm-gpu eval --text` reads it: the checkpoint's tokens, but every
    line end its own `<eos>` (`words` read as `words-eos`: the same tokens on PTB-like text,
    and the sentence ends plain text means), each token looked up lower-cased where the
    vocabulary lacks it, then `<unk>`."""
    kind = config.get("tokens", "words")
    return encode(text, vocab, dict(config, tokens="words-eos" if kind == "words" else kind))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("perplexity", help="perplexity of a text file, as `lstm-gpu eval --text` scores it")
    p.add_argument("checkpoint")
    p.add_argument("text")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--num-steps", type=int, default=None, help="default: every step (batch 1: every word)")
    p.add_argument("--device", default="cpu")
    g = sub.add_parser("generate", help="text after a prompt, as `lstm-gpu generate` writes it")
    g.add_argument("checkpoint")
    g.add_argument("prompt")
    g.add_argument("--words", "--chars", type=int, default=50)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--device", default="cpu")
    q = sub.add_parser("predict", help="the most probable next tokens, as `lstm-gpu predict`")
    q.add_argument("checkpoint")
    q.add_argument("context")
    q.add_argument("--top-k", type=int, default=10)
    q.add_argument("--json", action="store_true")
    q.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if torch is None:
        sys.exit("lstm_gpu_torch.py: PyTorch is not installed (python3 -m pip install torch)")
    model, vocab, config = load(args.checkpoint, args.device)
    if args.command == "perplexity":
        ids = encode_text(read_text(args.text), vocab, config)
        ppl = perplexity(model, ids, args.batch_size, args.num_steps)
        print(json.dumps({"perplexity": ppl}))
        return
    if args.command == "generate":
        text = generate(
            model, vocab, config, args.prompt, args.words, args.temperature, args.top_k, args.seed,
            args.top_p,
        )
        print(text)
        return
    probs = next_token(model, encode(args.context, vocab, config))
    top = torch.topk(probs, min(args.top_k, len(vocab)))
    rows = [
        {"id": int(i), "word": vocab[int(i)], "probability": float(p)}
        for p, i in zip(top.values, top.indices)
    ]
    if args.json:
        print(json.dumps({"context": args.context, "next": rows, "probabilities": probs.tolist()}))
    else:
        for r in rows:
            print(f"{r['probability']:8.4f}  {r['word']}")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError) as e:  # a bad path or file: one line, no traceback
        sys.exit(f"lstm_gpu_torch.py: {e}")
