import dataclasses
import json
import logging
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import hotpatch
from hotpatch.data import WindowDataset
from hotpatch.errors import CheckpointError, ConfigError, HotpatchError
from hotpatch.finetune import FinetuneConfig, _lr_factor, finetune, load_state, resume_conflict
from hotpatch.losses import mixste_loss
from tinypose import mixste, sequences


def _patched(seed=0, drop_path_rate=0.0, recover="tra"):
    model = mixste(9, seed=seed, drop_path_rate=drop_path_rate)
    torch.manual_seed(seed)
    return hotpatch.apply(model, 1, 3, recover=recover, prune_pos_embed=True)


def _loss(model, batch):
    model.eval()
    with torch.no_grad():
        return float(mixste_loss(model(batch["inputs"]), batch["targets"], batch["valid"]).total)


def test_two_steps_lower_the_loss_on_a_fixed_batch():
    model = _patched()
    data = WindowDataset(sequences((18, 18)), 9)  # exactly 4 windows: one batch
    batch = data.batch(range(4))
    before = _loss(model, batch)
    cfg = FinetuneConfig(epochs=1, batch_size=4, lr=1e-3, steps_per_epoch=2, schedule="constant")
    result = finetune(model, WindowDataset(sequences((18, 18)), 9), cfg)
    assert result.history[0]["steps"] == 1  # one full batch per epoch
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-3, schedule="constant")
    model = _patched()
    result = finetune(model, data, cfg)
    assert [h["steps"] for h in result.history] == [1, 1]
    assert _loss(model, batch) < before
    # the new TRA queries, zero-initialised, have been trained
    assert model.hotpatch_recover.recoverer.queries.abs().sum() > 0


def test_original_and_seq2frame_models_train_too():
    data = WindowDataset(sequences((18, 18)), 9)
    for model in (mixste(9), hotpatch.apply(mixste(9), 1, 3, pipeline="seq2frame")):
        before = [p.detach().clone() for p in model.parameters()]
        result = finetune(model, data, FinetuneConfig(epochs=1, batch_size=2, lr=1e-3))
        assert result.history[0]["steps"] == 2
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    data = lambda: WindowDataset(sequences((20, 13, 27)), 9, stride=3, flip_prob=0.5, seed=1)  # noqa: E731
    val = WindowDataset(sequences((9, 11), seed=3), 9)
    cfg = FinetuneConfig(epochs=3, batch_size=4, lr=1e-3, schedule="cosine", warmup_steps=2)

    full = finetune(_patched(drop_path_rate=0.2), data(), cfg, val_data=val)

    class Stop(Exception):
        pass

    def stop_after_first_epoch(event):
        if event.kind == "epoch" and event.epoch == 1:
            raise Stop

    state = tmp_path / "state.pt"
    with pytest.raises(Stop):
        finetune(_patched(drop_path_rate=0.2), data(), cfg, val_data=val, checkpoint=state,
                 progress=stop_after_first_epoch)
    saved = load_state(state)
    assert saved["epoch"] == 1 and set(saved) >= {"model", "optimizer", "scheduler", "rng", "history"}
    # a fresh model (other random init) resumed from the checkpoint
    resumed = finetune(_patched(seed=5, drop_path_rate=0.2), data(), cfg, val_data=val, checkpoint=state,
                       resume=True)
    assert resumed.resumed_from_epoch == 1
    timeless = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert timeless(resumed.history) == timeless(full.history)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_state(state)["epoch"] == 3
    # another epoch count would bend the cosine schedule the state was built with
    assert resume_conflict(state, 4, "cosine") == 3 and resume_conflict(state, 3, "cosine") is None
    with pytest.raises(ConfigError, match="epochs=3 with a cosine learning-rate schedule"):
        finetune(_patched(), data(), dataclasses.replace(cfg, epochs=4), checkpoint=state, resume=True)


def test_lr_schedules():
    cos = _lr_factor(FinetuneConfig(epochs=2, schedule="cosine", warmup_steps=2), steps_per_epoch=5)
    assert [round(cos(s), 4) for s in (0, 1, 5, 10)] == [0.5, 0.9755, 0.5, 0.0]  # warm-up × cosine
    step = _lr_factor(FinetuneConfig(epochs=3, schedule="step", gamma=0.5), steps_per_epoch=4)
    assert [step(s) for s in (0, 3, 4, 8)] == [1.0, 1.0, 0.5, 0.25]


def test_bad_settings_and_files_are_errors(tmp_path):
    data = WindowDataset(sequences((18,)), 9)
    with pytest.raises(ConfigError, match="schedule"):
        finetune(mixste(9), data, FinetuneConfig(schedule="linear"))
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        finetune(mixste(9), data, FinetuneConfig(batch_size=8))
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a hotpatch training checkpoint"):
        finetune(mixste(9), data, FinetuneConfig(batch_size=1), checkpoint=bad, resume=True)
    assert issubclass(CheckpointError, HotpatchError)


def test_a_step_schedule_extended_on_resume_is_the_longer_run_and_no_warning_says_otherwise(tmp_path, caplog):
    data = lambda: WindowDataset(sequences((20, 13, 27)), 9, stride=3, flip_prob=0.5, seed=1)  # noqa: E731
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-3, schedule="step", gamma=0.5)
    full = finetune(_patched(), data(), cfg)
    state = tmp_path / "state.pt"
    finetune(_patched(), data(), dataclasses.replace(cfg, epochs=1), checkpoint=state)
    with caplog.at_level(logging.WARNING, logger="hotpatch"):
        resumed = finetune(_patched(seed=5), data(), cfg, checkpoint=state, resume=True)
    assert resumed.resumed_from_epoch == 1 and "differ" not in caplog.text
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    with caplog.at_level(logging.WARNING, logger="hotpatch"):  # a setting that does change the run still warns
        finetune(_patched(), data(), dataclasses.replace(cfg, epochs=3, lr=2e-3), checkpoint=state, resume=True)
    assert "lr: 0.001 -> 0.002" in caplog.text and "results will differ" in caplog.text


# --------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    # what torchrun sets; finetune() joins the group from these variables by itself
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = _ddp_run(os.path.join(out_dir, "ddp_state.pt"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"history": result.history,
                   "params": _flat(result.model).tolist()}, fh)


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _ddp_run(checkpoint):
    data = WindowDataset(sequences((20, 13, 27, 18)), 9, stride=3, flip_prob=0.5, seed=2)
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-3, schedule="cosine")
    return finetune(_patched(), data, cfg, checkpoint=checkpoint)


def test_ddp_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    single = _ddp_run(tmp_path / "single_state.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert len(ranks[0]["history"]) == 2 and ranks[0]["history"][0]["steps"] == single.history[0]["steps"]
    # batch-2 and batch-4 forwards round differently; Adam amplifies that (see the weights below).
    # The loss and w-MPJPE agree to 1e-5; the small auxiliary terms measure frame-to-frame
    # differences and move more: over TRA initialisations we measured up to 1.1e-4 (velocity)
    # and 3% (tc, ~1e-6 in size) relative
    rel = {"loss": 1e-5, "wmpjpe": 1e-5, "velocity": 1e-3, "tc": 5e-2}
    for key in ("loss", "wmpjpe", "tc", "velocity"):
        for got, want in zip(ranks[0]["history"], single.history):
            assert got[key] == pytest.approx(want[key], rel=rel[key], abs=1e-9), key
    # Adam turns float-rounding differences of near-zero gradients into lr-sized steps, so
    # weights agree closely as a whole rather than to the last digit one by one
    want = _flat(single.model)
    for r in range(2):
        got = torch.tensor(ranks[r]["params"])
        assert float((got - want).norm() / want.norm()) < 5e-4
    assert (tmp_path / "ddp_state.pt").is_file()  # written by rank 0
