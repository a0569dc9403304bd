"""The draws of python/lstm_gpu_torch.py's sampler, as JSON: {"draws": [[...], ...]}.

Usage: python3 sample.py CASES.json, each case {"probs", "temperature", "top_k", "top_p",
"seed", "n"}: n draws from SplitMix64(seed).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import lstm_gpu_torch as lg  # noqa: E402

with open(sys.argv[1]) as f:
    cases = json.load(f)
draws = []
for c in cases:
    rng = lg.SplitMix64(c["seed"])
    draws.append(
        [lg.sample(c["probs"], c["temperature"], c["top_k"], rng.next_f64(), c["top_p"]) for _ in range(c["n"])]
    )
print(json.dumps({"draws": draws}))
