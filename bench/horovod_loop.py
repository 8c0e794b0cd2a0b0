"""The baseline of bench_train.py: a minimal hand-written Horovod training loop.

What an engineer would write for data parallelism without llmc: hvd.init, the
optimizer wrapped in DistributedOptimizer (with the spec's gradient compression),
parameters broadcast, each rank taking
its shard of the batches, forward, backward, step. It uses the same model (the
runtime's zoo, built from the bundle's model.json) and the same batches as the
generated train.py, so that the ratio measures only what the generated loop adds
(schedule, metrics, checkpoint policy, accumulation, resume bookkeeping).

    horovodrun --gloo -np 2 -H localhost:2 python bench/horovod_loop.py BUNDLE/model.json \
        --data-root specs --steps 60 --warm 10

Prints one JSON line on rank 0: {"windows": [seconds of each --window steps after --warm]}.
"""

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_json")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warm", type=int, default=10, help="steps before the clock starts")
    ap.add_argument("--window", type=int, default=10, help="steps per timed window")
    args = ap.parse_args()

    import horovod.torch as hvd
    import torch

    from llmc.runtime.config import load_config
    from llmc.runtime.data import batches, epoch_order, load_split, shard
    from llmc.runtime.zoo_torch import batch_loss, build_model, make_optimizer, to_tensors

    hvd.init()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // hvd.local_size()))
    cfg = load_config(args.model_json, data_root=args.data_root)
    model_cfg, train = cfg["model"], cfg["train"]
    micro = int(train.get("micro_batch") or train["batch_size"] // hvd.size())

    model = build_model(model_cfg, seed=int(train["seed"]))
    # The spec's gradient compression: the same training, written by hand.
    compression = {"none": hvd.Compression.none, "fp16": hvd.Compression.fp16}[train["gradient_compression"]]
    optimizer = hvd.DistributedOptimizer(
        make_optimizer(model, train["optimizer"]),
        compression=compression,
        named_parameters=model.named_parameters(),
        op=hvd.Average,
    )
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)

    split = load_split(model_cfg, model_cfg["data"]["train"])
    order = shard(epoch_order(len(split), int(train["seed"]), 0), hvd.rank(), hvd.size())
    model.train()
    windows, started = [], None
    step = 0
    for batch in batches(split, order, micro):
        loss_sum, count, _ = batch_loss(model, to_tensors(batch))
        (loss_sum / count.clamp_min(1)).backward()
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if step >= args.warm and (step - args.warm) % args.window == 0:
            now = time.perf_counter()
            if started is not None:
                windows.append(now - started)
            started = now
        if step == args.steps:
            break
    if step < args.steps:
        raise SystemExit(f"horovod_loop.py: only {step} steps in one epoch; ask for fewer")
    if hvd.rank() == 0:
        print(json.dumps({"windows": windows}), flush=True)


if __name__ == "__main__":
    main()
