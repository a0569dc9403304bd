#!/usr/bin/env python3
"""The peer that lstm-gpu's speed is stated against: the same model in PyTorch (cuDNN's LSTM
on NVIDIA), timed the way `lstm-gpu profile --synthetic` times a step, so that the two
figures of one machine give a ratio (scripts/gpu-bench.sh runs it when PyTorch is there).

The model of each preset (src/config.rs): an embedding, one LSTM per layer (the seed's layers
differ in width), the softmax layer with cross-entropy summed over time steps and averaged
over the batch, plain SGD with the global gradient norm clipped, dropout where the preset has
it, state carried between steps. fp32 with TF32 off, as lstm-gpu computes. Ids are random:
the kernels' times do not depend on the words.

    python3 bench/torch_peer.py --out peer.json [--presets "seed medium large"]
                                [--steps 100] [--device auto|cuda|mps|cpu]
"""
import argparse
import json
import sys
import time

PRESETS = {
    "seed": dict(emb=200, hidden=[256, 128], batch=60, steps=20, keep=1.0, clip=5.0),
    "medium": dict(emb=650, hidden=[650, 650], batch=20, steps=35, keep=0.5, clip=5.0),
    "large": dict(emb=1500, hidden=[1500, 1500], batch=20, steps=35, keep=0.35, clip=10.0),
}
VOCAB = 10000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--presets", default="seed medium large")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("torch_peer.py: PyTorch is not installed")
    device = args.device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
        elif device == "mps":
            torch.mps.synchronize()

    out = {"torch": torch.__version__, "device": device, "presets": {}}
    if device == "cuda":
        out["device_name"] = torch.cuda.get_device_name()
    for name in args.presets.split():
        if name not in PRESETS:
            sys.exit(f"torch_peer.py: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        p = PRESETS[name]
        torch.manual_seed(0)
        emb = torch.nn.Embedding(VOCAB, p["emb"]).to(device)
        layers = torch.nn.ModuleList()
        width = p["emb"]
        for h in p["hidden"]:
            layers.append(torch.nn.LSTM(width, h).to(device))
            width = h
        soft = torch.nn.Linear(width, VOCAB).to(device)
        drop = torch.nn.Dropout(1 - p["keep"]) if p["keep"] < 1 else torch.nn.Identity()
        params = [*emb.parameters(), *layers.parameters(), *soft.parameters()]
        opt = torch.optim.SGD(params, lr=1.0)
        batch, steps = p["batch"], p["steps"]
        x = torch.randint(0, VOCAB, (steps, batch), device=device)
        y = torch.randint(0, VOCAB, (steps, batch), device=device)
        state = [None] * len(layers)

        def step():
            h = drop(emb(x))
            for i, layer in enumerate(layers):
                h, s = layer(h, state[i])
                state[i] = tuple(t.detach() for t in s)
                h = drop(h)
            logits = soft(h).view(-1, VOCAB)
            loss = torch.nn.functional.cross_entropy(logits, y.view(-1)) * steps
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, p["clip"])
            opt.step()

        for _ in range(10):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        secs = (time.perf_counter() - t0) / args.steps
        out["presets"][name] = {
            "words_per_second": batch * steps / secs,
            "ms_per_step": secs * 1e3,
        }
        print(f"torch {name}: {batch * steps / secs:,.0f} words/s, {secs * 1e3:.2f} ms/step",
              file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
