"""seqmix.train.data.resumable: seeded epoch orders, DistributedSampler-style sharding, and mid-epoch resume of the loader."""

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from seqmix.train.data import TokenDataset
from seqmix.train.data.mqar import MQARDataModule
from seqmix.train.data.resumable import EpochSampler, ResumableLoader, train_loader

N = 21  # not a multiple of the batch nor of the process count: padding and a short last batch


def dataset(n: int = N) -> TokenDataset:
    ids = torch.arange(n).unsqueeze(1).repeat(1, 3)
    return TokenDataset(ids, ids)


def loader(batch_size: int = 4, replicas: int = 1, rank: int = 0, seed: int = 5, **kwargs) -> ResumableLoader:
    data = dataset()
    sampler = EpochSampler(data, seed=seed, num_replicas=replicas, rank=rank, **kwargs)
    return ResumableLoader(data, batch_size=batch_size, sampler=sampler)


def ids(batches) -> list[int]:
    return [int(i) for b in batches for i in b["input_ids"][:, 0]]


def test_epoch_zero_is_the_order_random_sampler_gave_with_the_same_seed():
    data = dataset()
    assert list(EpochSampler(data, seed=5)) == list(RandomSampler(data, generator=torch.Generator().manual_seed(5)))
    drawn = RandomSampler(data, replacement=True, num_samples=50, generator=torch.Generator().manual_seed(5))
    assert list(EpochSampler(data, seed=5, num_samples=50)) == list(drawn)


def test_each_epoch_is_a_fixed_permutation_of_its_own():
    sampler = EpochSampler(dataset(), seed=5)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] == orders[2] != orders[1] and sorted(orders[1]) == list(range(N))


@pytest.mark.parametrize("replicas", [2, 3])
def test_processes_together_see_the_single_process_batches(replicas):
    width = 2 * replicas  # the global batch: 2 per process
    single = [b["input_ids"][:, 0].tolist() for b in loader(batch_size=width)]
    shards = [[b["input_ids"][:, 0].tolist() for b in loader(batch_size=2, replicas=replicas, rank=r)]
              for r in range(replicas)]
    assert all(len(s) == len(single) for s in shards)
    padded = EpochSampler(dataset(), seed=5, num_replicas=replicas).global_order()  # wraps around to a multiple
    assert padded[:N] == EpochSampler(dataset(), seed=5).global_order()
    for step, batch in enumerate(single):
        together = sorted(i for s in shards for i in s[step])
        assert together == sorted(padded[step * width:(step + 1) * width])
        if step < len(single) - 1:
            assert together == sorted(batch)  # only the epoch's last step can differ: by the padding


def test_a_loader_resumes_mid_epoch_from_its_state():
    first = loader()
    first.sampler.set_epoch(1)
    full = ids(first)
    it = iter(first)
    seen = ids([next(it), next(it)])
    state = first.state_dict()
    assert state["epoch"] == 1 and state["position"] == 8
    second = loader()
    it = iter(second)  # iter() before the state and the epoch arrive, as Lightning does: both still apply
    second.load_state_dict(state)
    second.sampler.set_epoch(1)
    assert seen + ids(it) == full
    assert ids(second) == full  # the resume position is used once; the next pass is the whole epoch
    other = loader()
    other.load_state_dict(state)
    other.sampler.set_epoch(2)  # a state of another epoch does not apply
    assert sorted(ids(other)) == list(range(N))


def test_a_single_process_state_resumes_on_two_processes():
    whole = loader(batch_size=4)
    it = iter(whole)
    seen = ids([next(it), next(it)])
    state = whole.state_dict()
    rest = []
    for rank in (0, 1):
        shard = loader(batch_size=2, replicas=2, rank=rank)
        shard.load_state_dict(state)
        rest += ids(shard)
    order = EpochSampler(dataset(), seed=5).global_order()
    padded = EpochSampler(dataset(), seed=5, num_replicas=2).global_order()  # 22: the first example once more
    assert seen == order[:8] and sorted(rest) == sorted(padded[8:]) and set(seen + rest) == set(range(N))


def test_a_state_from_different_data_restarts_the_epoch_with_a_warning():
    first = loader()
    it = iter(first)
    next(it)
    state = first.state_dict()
    changed = loader(seed=6)
    changed.load_state_dict(state)
    with pytest.warns(UserWarning, match="training data changed"):
        assert len(ids(changed)) == N


def test_worker_processes_count_only_batches_handed_out():
    data = dataset()
    workers = ResumableLoader(data, batch_size=4, sampler=EpochSampler(data, seed=5), num_workers=1)
    it = iter(workers)
    next(it)  # the worker has prefetched more batches by now
    assert workers.state_dict()["position"] == 4
    del it


def test_data_modules_give_resumable_training_loaders():
    data = MQARDataModule(vocab_size=32, seq_len=16, num_kv_pairs=2, num_train_examples=40, num_val_examples=8,
                          batch_size=8)
    train = data.train_dataloader()
    assert isinstance(train, ResumableLoader) and isinstance(train.sampler, EpochSampler)
    assert len(train) == 5 and train.sampler.seed == 0
    assert type(data.val_dataloader()) is DataLoader  # evaluation loaders are plain, in order
    assert isinstance(train_loader(data, dataset(), 4, seed=1, num_samples=7).sampler, EpochSampler)
