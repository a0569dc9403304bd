#!/usr/bin/env python3
"""The peer that lstm-gpu's speed is stated against: the same model in PyTorch (cuDNN's LSTM
on NVIDIA), timed the way `lstm-gpu profile --synthetic` times a step, so that the two
figures of one machine give a ratio (scripts/gpu-bench.sh runs it when PyTorch is there).

The model of each preset (src/config.rs): an embedding, one LSTM per layer (the seed's layers
differ in width), the softmax layer with cross-entropy summed over time steps and averaged
over the batch, plain SGD with the global gradient norm clipped, dropout where the preset has
it, state carried between steps. fp32 with TF32 off, as lstm-gpu computes. Ids are random:
the kernels' times do not depend on the words.

Where a preset's layers are as wide as its embedding (medium, large), they run as one
`nn.LSTM(num_layers=2)` with the preset's dropout between the layers, cuDNN's strongest form
(`--layers separate` keeps one LSTM per layer everywhere). `--matmuls "MxKxN[:NT] ..."` also
times `torch.matmul` on those products (the transposes of A and B as strided views, which
cuBLAS reads in place), fp32 with TF32 off, for the per-product ratios of
scripts/gpu-bench.sh.

`--precision mixed` is the peer of `lstm-gpu --precision mixed`: the step under
`torch.autocast(dtype=torch.float16)` (f16 matmuls and cuDNN LSTM on tensor cores, f32
master weights) with `torch.amp.GradScaler`'s dynamic loss scaling, and `--matmuls` in f16.

    python3 bench/torch_peer.py --out peer.json [--presets "seed medium large"]
                                [--steps 100] [--device auto|cuda|mps|cpu]
                                [--layers fused|separate] [--matmuls "4096x4096x4096 ..."]
                                [--precision f32|mixed]
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
    ap.add_argument("--layers", choices=["fused", "separate"], default="fused")
    ap.add_argument("--matmuls", default="")
    ap.add_argument("--precision", choices=["f32", "mixed"], default="f32")
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

    mixed = args.precision == "mixed"
    if mixed and device != "cuda":
        sys.exit("torch_peer.py: --precision mixed times autocast to f16 on CUDA only")
    out = {"torch": torch.__version__, "device": device, "precision": args.precision, "presets": {}}
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
        hidden = p["hidden"]
        fused = args.layers == "fused" and all(h == width for h in hidden)
        if fused:
            # Dropout between the layers inside cuDNN, as the preset applies it there.
            between = 1 - p["keep"] if p["keep"] < 1 else 0.0
            layers.append(torch.nn.LSTM(width, width, num_layers=len(hidden), dropout=between).to(device))
        else:
            for h in hidden:
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
        scaler = torch.amp.GradScaler("cuda", enabled=mixed)

        def step():
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=mixed):
                h = drop(emb(x))
                for i, layer in enumerate(layers):
                    h, s = layer(h, state[i])
                    state[i] = tuple(t.detach() for t in s)
                    h = drop(h)
                logits = soft(h).view(-1, VOCAB)
                loss = torch.nn.functional.cross_entropy(logits.float(), y.view(-1)) * steps
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, p["clip"])
            scaler.step(opt)
            scaler.update()

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
            "layers": f"one nn.LSTM(num_layers={len(hidden)})" if fused else "one nn.LSTM per layer",
        }
        print(f"torch {name}: {batch * steps / secs:,.0f} words/s, {secs * 1e3:.2f} ms/step",
              file=sys.stderr)
    if args.matmuls.split():
        dtype = torch.float16 if mixed else torch.float32
        out["matmuls"] = time_matmuls(torch, device, sync, args.matmuls.split(), dtype)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def time_matmuls(torch, device, sync, shapes, dtype):
    """torch.matmul on each "MxKxN[:XY]" (X, Y: N or T, the transposes of A and B, as views
    of row-major storage as lstm-gpu keeps them) in `dtype`: milliseconds and GFLOP/s, the
    median of enough runs to fill about 0.2 s."""
    out = {}
    for spec in shapes:
        dims, _, form = spec.partition(":")
        form = form or "NN"
        m, k, n = (int(v) for v in dims.lower().split("x"))
        a = torch.randn(k, m, device=device, dtype=dtype).t() if form[0] == "T" else torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(n, k, device=device, dtype=dtype).t() if form[1] == "T" else torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(3):
            torch.matmul(a, b)
        sync()
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        once = max(time.perf_counter() - t0, 1e-6)
        reps = max(3, min(1000, int(0.2 / once)))
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.matmul(a, b)
            sync()
            times.append((time.perf_counter() - t0) / reps)
        secs = sorted(times)[len(times) // 2]
        key = f"{m}x{k}x{n}:{form}"
        out[key] = {"ms": secs * 1e3, "gflops": 2 * m * k * n / secs / 1e9}
        print(f"torch.matmul {key}: {secs * 1e3:.3f} ms, {2 * m * k * n / secs / 1e9:,.0f} GFLOP/s",
              file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
