"""The tokens python/lstm_gpu_torch.py reads from a file, as JSON: {"tokens": [...]}.

Usage: python3 tokens.py KIND FILE   (KIND: words, words-eos or chars)
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import lstm_gpu_torch as lg  # noqa: E402

print(json.dumps({"tokens": lg.tokens(lg.read_text(sys.argv[2]), sys.argv[1])}))
