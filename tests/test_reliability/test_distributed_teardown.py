"""teardown_distributed: what a rank does after its run so that it exits cleanly (a gloo worker thread still
releasing a collective's tensors while the interpreter finalises aborts the rank)."""
import torch.distributed as dist

import mmbus.utils.distributed as mdist


def _one_rank_gloo_group(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)


def _record(monkeypatch):
    calls = []
    barrier = dist.barrier
    monkeypatch.setattr(mdist.dist, 'barrier', lambda *a, **k: (calls.append('barrier'), barrier(*a, **k))[1])
    monkeypatch.setattr(mdist.time, 'sleep', lambda s: calls.append(('sleep', s)))
    destroy = dist.destroy_process_group
    monkeypatch.setattr(mdist.dist, 'destroy_process_group',
                        lambda *a, **k: (calls.append('destroy'), destroy(*a, **k))[1])
    return calls


def test_not_distributed_is_a_no_op(monkeypatch):
    assert not dist.is_initialized()
    calls = _record(monkeypatch)
    mdist.teardown_distributed()
    mdist.teardown_distributed(finished=False)
    assert calls == []


def test_a_finished_run_meets_the_other_ranks_lets_gloo_settle_then_destroys(tmp_path, monkeypatch):
    _one_rank_gloo_group(tmp_path)
    calls = _record(monkeypatch)
    try:
        mdist.teardown_distributed(settle_s=0.25)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # the order matters: the sleep (GIL released) comes after every rank is past its last collective
    assert calls == ['barrier', ('sleep', 0.25), 'destroy']
    assert not dist.is_initialized()


def test_a_failed_run_does_not_wait_for_the_other_ranks(tmp_path, monkeypatch):
    _one_rank_gloo_group(tmp_path)
    calls = _record(monkeypatch)
    monkeypatch.setattr(mdist.dist, 'barrier', lambda *a, **k: (_ for _ in ()).throw(AssertionError('barrier')))
    try:
        mdist.teardown_distributed(finished=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert calls == [('sleep', 0.5), 'destroy']
    assert not dist.is_initialized()
