"""The all-gathers behind DDP training, in a real 2-process gloo group."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, port: int, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from clik.distributed import all_gather_with_grad
    from clik.heads import MemoryBank

    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    gathered = all_gather_with_grad(x)
    weights = torch.arange(12, dtype=torch.float32).view(4, 3)
    (gathered * weights).sum().backward()
    bank = MemoryBank(size=8, dim=3)
    torch.manual_seed(rank)  # different local embeddings on each rank
    bank.update(torch.randn(2, 3))
    out[rank] = {
        "shape": tuple(gathered.shape),
        "first": gathered[:, 0].tolist(),
        "grad": x.grad.tolist(),
        "bank": bank.bank[:4].tolist(),
        "ptr": int(bank.ptr),
    }
    dist.destroy_process_group()


def test_gather_keeps_own_gradient_and_banks_agree():
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(29541, out), nprocs=2, join=True)
    weights = torch.arange(12, dtype=torch.float32).view(4, 3)
    for rank in (0, 1):
        assert out[rank]["shape"] == (4, 3)
        assert out[rank]["first"] == [1.0, 1.0, 2.0, 2.0]
        # Each rank's gradient is the weights of its own slice only.
        assert out[rank]["grad"] == weights[2 * rank : 2 * rank + 2].tolist()
        assert out[rank]["ptr"] == 4
    assert out[0]["bank"] == out[1]["bank"]
