"""The scalars TensorBoard itself reads from a run folder's event files, as JSON:
{"tags": {tag: [[step, value], ...]}, "files": N}.

Usage: python3 tensorboard_scalars.py RUN_DIR   (needs the `tensorboard` package)
"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator

run = sys.argv[1]
acc = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
tags = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
files = sum("tfevents" in f for f in os.listdir(run))
print(json.dumps({"tags": tags, "files": files}))
