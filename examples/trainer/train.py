#!/usr/bin/env python3
"""A small data-parallel trainer using only the Python standard library.

Each of WORLD_SIZE workers fits a linear-regression model to its shard (every
WORLD_SIZE-th sample, starting at RANK) of a data set: the file DATASET when set (one
sample per line, FEATURES inputs then the target, comma-separated), else a synthetic one
generated from SEED. `train.py --write-dataset PATH` writes the synthetic set to PATH
(what the example's dataset Job does on the shared dataset volume).
After every mini-batch the workers sum their gradients with an all-reduce over TCP:
rank 0 listens on MASTER_PORT as the hub, gathers, sums and sends the sum back, so
every rank applies the same update and the weights stay identical.

Environment (torchrun's PET_* names are accepted as fallbacks):
  RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT  the process group (default: one process)
  EPOCHS (20), STEP_DELAY (seconds slept per epoch, for demos), SEED (0)
  DATASET         the samples file to read (read-only is fine); unset: synthetic data
  CHECKPOINT_DIR  rank 0 writes checkpoint.json there after each epoch; on start
                  rank 0 loads it and sends it to every rank, which resume after it
  FAIL_AT_EPOCH, FAIL_RANK  for tests: that rank exits 1 at the start of that epoch,
                  unless CHECKPOINT_DIR/failed-once exists (it creates it first)
  CONNECT_TIMEOUT (120)  seconds to wait for peers to start and names to resolve
  PEER_TIMEOUT (300)     seconds to wait for one message from a peer
If RANK is unset, the trailing index of HOSTNAME (`job-worker-1` -> 1) is used.

Output: `rank R/W epoch E loss L` per epoch (the global loss over all shards), then
`result: loss=L epochs=N world_size=W`. Exit status 0 on success, 1 on any failure.
"""

import json
import os
import random
import socket
import sys
import time

FEATURES, SAMPLES, BATCHES, LEARNING_RATE = 8, 1024, 4, 0.05


class TrainError(Exception):
    """A failure with a message a person can act on."""


def env(name, fallback=None, default=None):
    value = os.environ.get(name) or (fallback and os.environ.get(fallback))
    return value if value else default


def env_int(name, fallback=None, default=None):
    value = env(name, fallback, default)
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise TrainError(f"{name}={value!r}: must be an integer") from None


def log(rank, world, message):
    print(f"rank {rank}/{world} {message}", flush=True)


def make_data(seed):
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(FEATURES)]
    true_b = rng.uniform(-1, 1)
    data = []
    for _ in range(SAMPLES):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)]
        y = sum(w * v for w, v in zip(true_w, x)) + true_b + rng.gauss(0, 0.1)
        data.append((x, y))
    return data


def write_dataset(path, seed):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        for x, y in make_data(seed):
            out.write(",".join(repr(v) for v in [*x, y]) + "\n")
    os.replace(tmp, path)
    print(f"dataset: wrote {SAMPLES} samples to {path}", flush=True)


def read_dataset(path):
    try:
        with open(path) as f:
            rows = [line.split(",") for line in f if line.strip()]
        data = [([float(v) for v in row[:FEATURES]], float(row[FEATURES])) for row in rows]
    except OSError as e:
        raise TrainError(f"DATASET={path}: {e.strerror}") from None
    except (ValueError, IndexError):
        raise TrainError(f"DATASET={path}: each line needs {FEATURES + 1} numbers") from None
    if not data:
        raise TrainError(f"DATASET={path}: no samples")
    return data


def gradient_sums(params, batch):
    """[d/dw..., d/db, squared error, count], summed (not averaged) over batch."""
    sums = [0.0] * (FEATURES + 3)
    for x, y in batch:
        err = sum(w * v for w, v in zip(params, x)) + params[FEATURES] - y
        for i, v in enumerate(x):
            sums[i] += 2 * err * v
        sums[FEATURES] += 2 * err
        sums[FEATURES + 1] += err * err
        sums[FEATURES + 2] += 1
    return sums


class Channel:
    """Newline-delimited JSON messages over one TCP connection."""

    def __init__(self, sock, peer):
        self.sock, self.peer, self.reader = sock, peer, sock.makefile("rb")

    def send(self, message):
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as e:
            raise TrainError(f"lost {self.peer}: {e} (did it exit?)") from None

    def receive(self):
        try:
            line = self.reader.readline()
        except OSError as e:
            raise TrainError(f"lost {self.peer}: {e} (did it exit?)") from None
        if not line:
            raise TrainError(f"lost {self.peer}: connection closed (did it exit?)")
        try:
            return json.loads(line)
        except ValueError:
            raise TrainError(f"{self.peer} sent a malformed message: {line[:80]!r}") from None


def serve(port, world, state, connect_timeout, peer_timeout):
    """Rank 0: accept one connection from every other rank, send them the start state."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("0.0.0.0", port))
    except OSError as e:
        raise TrainError(f"cannot listen on port {port}: {e}") from None
    server.listen(world)
    deadline = time.monotonic() + connect_timeout
    peers = {}
    while len(peers) < world - 1:
        server.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            sock, address = server.accept()
        except socket.timeout:
            missing = sorted(set(range(1, world)) - set(peers))
            raise TrainError(f"ranks {missing} did not connect to port {port} "
                             f"within {connect_timeout}s") from None
        sock.settimeout(peer_timeout)
        channel = Channel(sock, f"peer at {address[0]}")
        hello = channel.receive()
        rank = hello.get("rank")
        if hello.get("world_size") != world or rank not in range(1, world) or rank in peers:
            raise TrainError(f"peer at {address[0]} says rank {rank} of "
                             f"{hello.get('world_size')}; expected a new rank of {world}")
        channel.peer = f"rank {rank}"
        peers[rank] = channel
    server.close()
    for rank in sorted(peers):
        peers[rank].send(state)
    return [peers[r] for r in sorted(peers)]


def connect(address, port, rank, world, connect_timeout, peer_timeout):
    """Any other rank: connect to rank 0, retrying while it starts; get the start state."""
    deadline, last_error = time.monotonic() + connect_timeout, None
    while True:
        try:
            sock = socket.create_connection((address, port), timeout=5)
            break
        except OSError as e:  # refused, name not resolvable yet, unreachable
            if time.monotonic() > deadline:
                raise TrainError(f"cannot reach rank 0 at {address}:{port} within "
                                 f"{connect_timeout}s: {e}") from None
            if str(e) != last_error:
                log(rank, world, f"waiting for rank 0 at {address}:{port}: {e}")
                last_error = str(e)
            time.sleep(0.5)
    sock.settimeout(peer_timeout)
    hub = Channel(sock, f"rank 0 at {address}:{port}")
    hub.send({"rank": rank, "world_size": world})
    return hub, hub.receive()


def all_reduce(values, peers, hub):
    """The element-wise sum of `values` over all ranks (rank 0 adds in rank order)."""
    if hub is not None:
        hub.send(values)
        return hub.receive()
    total = list(values)
    for peer in peers:
        for i, v in enumerate(peer.receive()):
            total[i] += v
    for peer in peers:
        peer.send(total)
    return total


def save_checkpoint(directory, epoch, params, world):
    path = os.path.join(directory, "checkpoint.json")
    temp = f"{path}.tmp"
    with open(temp, "w") as f:
        json.dump({"epoch": epoch, "params": params, "world_size": world}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def load_checkpoint(directory):
    path = os.path.join(directory, "checkpoint.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        return saved["epoch"], [float(p) for p in saved["params"]]
    except FileNotFoundError:
        return 0, None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainError(f"checkpoint {path}: unreadable ({e}); delete it to start over") from None


def maybe_fail(rank, world, epoch, checkpoint_dir):
    if env_int("FAIL_AT_EPOCH") != epoch or env_int("FAIL_RANK", default=0) != rank:
        return
    if checkpoint_dir:
        marker = os.path.join(checkpoint_dir, "failed-once")
        if os.path.exists(marker):
            return
        open(marker, "w").close()
    log(rank, world, f"epoch {epoch} simulated failure (FAIL_AT_EPOCH)")
    sys.exit(1)


def train():
    world = env_int("WORLD_SIZE", "PET_NNODES", 1)
    rank = env_int("RANK", "PET_NODE_RANK")
    if rank is None:
        suffix = os.environ.get("HOSTNAME", "").rsplit("-", 1)[-1]
        rank = int(suffix) if suffix.isdigit() else 0
    if world < 1 or not 0 <= rank < world:
        raise TrainError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    address = env("MASTER_ADDR", "PET_MASTER_ADDR", "127.0.0.1")
    port = env_int("MASTER_PORT", "PET_MASTER_PORT", 29500)
    epochs, seed = env_int("EPOCHS", default=20), env_int("SEED", default=0)
    delay = float(env("STEP_DELAY", default="0"))
    checkpoint_dir = env("CHECKPOINT_DIR")
    connect_timeout = env_int("CONNECT_TIMEOUT", default=120)
    peer_timeout = env_int("PEER_TIMEOUT", default=300) + delay

    peers, hub = [], None
    if rank == 0:
        done, params = load_checkpoint(checkpoint_dir) if checkpoint_dir else (0, None)
        state = {"epoch": done, "params": params or [0.0] * (FEATURES + 1)}
        if world > 1:
            peers = serve(port, world, state, connect_timeout, peer_timeout)
    else:
        hub, state = connect(address, port, rank, world, connect_timeout, peer_timeout)
    done, params = state["epoch"], state["params"]
    if done:
        log(rank, world, f"resumed from epoch {done}")

    dataset = env("DATASET")
    if dataset:
        data = read_dataset(dataset)
        log(rank, world, f"dataset: {len(data)} samples from {dataset}")
    else:
        data = make_data(seed)
    shard = data[rank::world]
    batches = [shard[i::BATCHES] for i in range(BATCHES)]
    loss = None
    for epoch in range(done + 1, epochs + 1):
        maybe_fail(rank, world, epoch, checkpoint_dir)
        for batch in batches:
            sums = all_reduce(gradient_sums(params, batch), peers, hub)
            count = sums[FEATURES + 2]
            params = [p - LEARNING_RATE * g / count for p, g in zip(params, sums)]
        sums = all_reduce(gradient_sums(params, shard)[FEATURES + 1:], peers, hub)
        loss = sums[0] / sums[1]
        log(rank, world, f"epoch {epoch} loss {loss:.6f}")
        if rank == 0 and checkpoint_dir:
            save_checkpoint(checkpoint_dir, epoch, params, world)
        time.sleep(delay)
    if loss is None:  # resumed after the last epoch: report the saved model's loss
        sums = all_reduce(gradient_sums(params, shard)[FEATURES + 1:], peers, hub)
        loss = sums[0] / sums[1]
    print(f"result: loss={loss:.6f} epochs={max(done, epochs)} world_size={world}", flush=True)


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--write-dataset"] and len(sys.argv) == 3:
            write_dataset(sys.argv[2], env_int("SEED", default=0))
        else:
            train()
    except TrainError as e:
        print(f"error: rank {env('RANK', 'PET_NODE_RANK', '?')}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
