#!/usr/bin/env python3
"""The example trainer's PyTorch twin: the same synthetic linear regression, trained with
torch.distributed (DistributedDataParallel) on NCCL when GPUs are present, gloo otherwise.

FOR GPU MACHINES: it needs PyTorch installed, which coxswain's CI does not have, so CI
runs only the standard-library trainer (train.py, tested by cli/tests/example_trainer.rs).
This script is not run in CI.

Launch it the way Kubeflow and torchrun do: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
(and LOCAL_RANK under torchrun) come from the environment, e.g.
  torchrun --nnodes=1 --nproc-per-node=2 examples/trainer/train_torch.py
or in a PyTorchJob whose `pytorch` container runs `python3 train_torch.py`.

Environment, as for train.py: EPOCHS (20), STEP_DELAY, SEED (0), CHECKPOINT_DIR
(rank 0 writes checkpoint.pt each epoch and resumes from it; the others follow), FAIL_AT_EPOCH and
FAIL_RANK (that rank exits 1 once, marked by CHECKPOINT_DIR/failed-once).
Output: `rank R/W epoch E loss L`, then `result: loss=L epochs=N world_size=W`.
"""

import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

FEATURES, SAMPLES, BATCHES, LEARNING_RATE = 8, 1024, 4, 0.05


def env_int(name, default):
    value = os.environ.get(name) or os.environ.get(f"PET_{name}")
    return int(value) if value else default


def make_data(seed, device):
    generator = torch.Generator().manual_seed(seed)
    true_w = torch.rand(FEATURES, generator=generator) * 4 - 2
    true_b = torch.rand(1, generator=generator) * 2 - 1
    x = torch.randn(SAMPLES, FEATURES, generator=generator)
    y = x @ true_w + true_b + 0.1 * torch.randn(SAMPLES, generator=generator)
    return x.to(device), y.to(device)


def main():
    rank, world = env_int("RANK", 0), env_int("WORLD_SIZE", 1)
    local_rank = env_int("LOCAL_RANK", 0)
    epochs, seed = env_int("EPOCHS", 20), env_int("SEED", 0)
    delay = float(os.environ.get("STEP_DELAY") or 0)
    checkpoint_dir = os.environ.get("CHECKPOINT_DIR")

    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    # MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE are read from the environment.
    dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)

    model = torch.nn.Linear(FEATURES, 1).to(device)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    done = 0
    path = os.path.join(checkpoint_dir, "checkpoint.pt") if checkpoint_dir else None
    if rank == 0 and path and os.path.exists(path):
        saved = torch.load(path, map_location=device)
        model.load_state_dict(saved["model"])
        done = saved["epoch"]
    # Rank 0's checkpoint is the truth: its epoch is broadcast here, and DDP broadcasts its
    # weights when it wraps the model, so the other ranks need no shared storage.
    epoch_tensor = torch.tensor([done], device=device)
    dist.broadcast(epoch_tensor, src=0)
    done = int(epoch_tensor.item())
    if done:
        print(f"rank {rank}/{world} resumed from epoch {done}", flush=True)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LEARNING_RATE)

    x, y = make_data(seed, device)
    shard_x, shard_y = x[rank::world], y[rank::world]
    loss_value = float("nan")
    for epoch in range(done + 1, epochs + 1):
        if env_int("FAIL_AT_EPOCH", -1) == epoch and env_int("FAIL_RANK", 0) == rank:
            marker = os.path.join(checkpoint_dir or ".", "failed-once")
            if not os.path.exists(marker):
                open(marker, "w").close()
                print(f"rank {rank}/{world} epoch {epoch} simulated failure", flush=True)
                sys.exit(1)
        for b in range(BATCHES):
            optimizer.zero_grad()
            prediction = ddp(shard_x[b::BATCHES]).squeeze(1)
            loss = torch.nn.functional.mse_loss(prediction, shard_y[b::BATCHES])
            loss.backward()  # DDP all-reduces (averages) the gradients here
            optimizer.step()
        with torch.no_grad():
            sums = torch.stack([
                ((model(shard_x).squeeze(1) - shard_y) ** 2).sum(),
                torch.tensor(float(len(shard_y)), device=device),
            ])
        dist.all_reduce(sums)
        loss_value = (sums[0] / sums[1]).item()
        print(f"rank {rank}/{world} epoch {epoch} loss {loss_value:.6f}", flush=True)
        if rank == 0 and path:
            torch.save({"epoch": epoch, "model": model.state_dict()}, f"{path}.tmp")
            os.replace(f"{path}.tmp", path)
        dist.barrier()  # the checkpoint is complete before any rank may fail next epoch
        time.sleep(delay)
    print(f"result: loss={loss_value:.6f} epochs={max(done, epochs)} world_size={world}",
          flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
