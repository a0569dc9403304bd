"""Training in PyTorch with python/lstm_gpu_torch.py as its documentation says (its module,
`batches`, `loss`, `clip_grad_norm_`, `optim.SGD`), from the weights of INIT with the
config and vocabulary of the program's checkpoint FINAL: STEPS steps of the first epoch on
TEXT, no dropout. Writes the weights after the last step to OUT (lstm-gpu's names, F32)
and prints JSON: {"steps": [{"perplexity": ..., "grad_norm": ...}, ...]}, the epoch's
perplexity so far after each step, as the program logs it, and the gradient's global norm
before clipping.

Usage: python3 torch_train.py INIT FINAL TEXT STEPS OUT
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import lstm_gpu_torch as lg  # noqa: E402


def main():
    init, final, text, steps, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    _, vocab, config, _ = lg.read(final)
    weights = lg.read(init)[0]
    assert config["keep_prob"] == 1.0, "dropout masks are not shared with the program"
    torch.manual_seed(0)
    model = lg.LanguageModel(config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in lg.to_torch(weights, config).items()})
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=config["learning_rate"])
    ids = lg.encode(lg.read_text(text), vocab, config, prompt=False)
    state, total, log = None, 0.0, []
    for n, (x, y) in enumerate(lg.batches(ids, config["batch_size"], config["num_steps"])):
        if n == steps:
            break
        logits, state = model(torch.from_numpy(x), state)
        state = [(h.detach(), c.detach()) for h, c in state]
        opt.zero_grad()
        loss = lg.loss(logits, torch.from_numpy(y))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config["max_grad_norm"])
        opt.step()
        total += loss.item()
        log.append({
            "perplexity": math.exp(total / ((n + 1) * config["num_steps"])),
            "grad_norm": norm.item(),
        })
    assert len(log) == steps, f"the epoch has only {len(log)} steps"
    from safetensors.numpy import save_file

    save_file(lg.from_torch(model.state_dict(), config), out)
    print(json.dumps({"steps": log}))


if __name__ == "__main__":
    main()
