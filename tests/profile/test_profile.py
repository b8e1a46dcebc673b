"""hotpatch.profile: hand-counted FLOPs, no side effects on the model, FPS/memory relations."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from hotpatch.errors import ConfigError, HotpatchError, InputShapeError
from hotpatch.profile import Comparison, Profile, compare, profile

FAST = dict(repeats=3, warmup=1)


class LinConvMatmul(nn.Module):
    """Linear(4→6), grouped Conv1d(6→8, k=3, groups=2) and two attention-style matmuls."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.conv = nn.Conv1d(6, 8, kernel_size=3, padding=1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (2, 5, 4)
        h = self.conv(self.lin(x).transpose(1, 2)).transpose(1, 2)  # (2, 5, 8)
        a = h @ h.transpose(1, 2)  # (2, 5, 5): 2·5·5·8 = 400 MACs, not a layer
        return a @ h  # (2, 5, 8): 400 MACs


# Hand counts for LinConvMatmul on a (2, 5, 4) input:
LIN_MACS = 2 * 5 * 6 * 4  # numel(out) × in_features = 240
CONV_MACS = 2 * 8 * 5 * (6 // 2) * 3  # numel(out) × in/groups × kernel = 720
MATMUL_MACS = 2 * 5 * 5 * 8 * 2  # 800


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyVPT(nn.Module):
    """(B, F, J, 2) → (B, F, J, 3), temporal attention over F, with dropout and a batch norm."""

    def __init__(self, frames: int = 9, dim: int = 16, depth: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.pos = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.drop = nn.Dropout(0.5)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.bn = nn.BatchNorm1d(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, j, _ = x.shape
        x = self.embed(x).permute(0, 2, 1, 3).reshape(b * j, f, -1) + self.pos
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.bn(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return self.head(x).reshape(b, j, f, 3).permute(0, 2, 1, 3)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _tiny_vpt_paper_flops(b: int = 2, f: int = 9, j: int = 5, c: int = 16, depth: int = 2) -> int:
    tokens = b * j * f
    per_block = tokens * (c * 3 * c + c * c + c * 2 * c + 2 * c * c)  # qkv, proj, fc1, fc2
    return 2 * (tokens * 2 * c + depth * per_block + tokens * c * 3)  # embed, blocks, head


# ----------------------------------------------------------------------------- counters


def test_paper_counts_linear_and_conv_only() -> None:
    p = profile(LinConvMatmul(), torch.randn(2, 5, 4), counters=("paper",), fps=False, memory=False)
    assert p.flops["paper"].value == 2 * (LIN_MACS + CONV_MACS)  # 1920: matmuls not counted
    assert p.flops["paper"].unit == "FLOPs"


def test_paper_counts_conv2d_and_conv3d() -> None:
    conv2 = nn.Conv2d(3, 4, 3, stride=2)
    p = profile(conv2, torch.randn(1, 3, 9, 9), counters="paper", fps=False, memory=False)
    assert p.flops["paper"].value == 2 * (1 * 4 * 4 * 4) * 3 * 9  # out (1,4,4,4), 3 in-ch, 3×3
    conv3 = nn.Conv3d(2, 2, (1, 2, 2), groups=2)
    p = profile(conv3, torch.randn(1, 2, 3, 4, 4), counters="paper", fps=False, memory=False)
    assert p.flops["paper"].value == 2 * (1 * 2 * 3 * 3 * 3) * 1 * 4


def test_fvcore_torch_thop_match_their_conventions() -> None:
    p = profile(LinConvMatmul(), torch.randn(2, 5, 4), counters=("paper", "fvcore", "torch", "thop"),
                fps=False, memory=False)
    layer_macs = LIN_MACS + CONV_MACS
    assert p.flops["fvcore"].unit == "MACs"
    assert p.flops["fvcore"].value == layer_macs + MATMUL_MACS  # 1 per MAC, matmuls included
    assert p.flops["torch"].value == 2 * (layer_macs + MATMUL_MACS)  # 2 per MAC
    assert p.flops["thop"].value == 2 * layer_macs  # thop has Linear/Conv rules, no matmul
    assert list(p.flops) == ["paper", "fvcore", "torch", "thop"]


def test_pure_linear_model_all_counters_agree() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    p = profile(model, torch.randn(3, 7, 8), counters=("paper", "fvcore", "torch"), fps=False, memory=False)
    macs = 3 * 7 * (16 * 8 + 4 * 16)
    assert p.flops["paper"].value == 2 * macs
    assert p.flops["fvcore"].value == macs == p.flops["paper"].value // 2
    assert p.flops["torch"].value == 2 * macs


class SDPA(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


def test_torch_counter_gives_sdpa_its_formula(caplog: pytest.LogCaptureFixture) -> None:
    b, h, lq, lk, d = 2, 3, 4, 6, 8
    args = (torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, d))
    with caplog.at_level(logging.WARNING):
        p = profile(SDPA(), args, counters=("torch", "paper", "fvcore"), fps=False, memory=False)
    assert p.flops["torch"].value == 4 * b * h * lq * lk * d  # 2 matmuls × 2 FLOPs per MAC
    assert p.flops["paper"].value == 0
    # fvcore does not know SDPA: summarised on the result, not logged as warnings
    assert p.flops["fvcore"].unsupported.get("aten::scaled_dot_product_attention") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_multihead_attention_fast_path_counted() -> None:
    class MHA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    b, n, e = 2, 5, 16
    p = profile(MHA(), torch.randn(b, n, e), counters=("paper", "torch"), fps=False, memory=False)
    projections = 4 * b * n * e * e  # q, k, v, out
    assert p.flops["paper"].value == 2 * projections
    assert p.flops["torch"].value == 2 * projections + 4 * b * n * n * e


def test_tiny_vpt_paper_flops_and_blocks() -> None:
    p = profile(TinyVPT(), torch.randn(2, 9, 5, 2), counters="paper", fps=False, memory=False, by_block=True)
    assert p.flops["paper"].value == _tiny_vpt_paper_flops()
    blocks = {b.name: b for b in p.blocks}
    assert [b.name for b in p.blocks] == ["embed", "blocks.0", "blocks.1", "head"]
    assert blocks["blocks.0"].is_block and not blocks["embed"].is_block
    assert blocks["blocks.0"].flops == blocks["blocks.1"].flops == 2 * 90 * (8 * 16 * 16)
    assert sum(b.flops for b in p.blocks) == p.flops["paper"].value


# ----------------------------------------------------------------------------- no side effects


def _hooks(model: nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]


def test_profile_leaves_model_unchanged() -> None:
    model = TinyVPT().train()
    model.blocks[0].register_forward_hook(lambda m, a, o: None)
    x = torch.randn(2, 9, 5, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    buffers = [n for n, _ in model.named_buffers()]
    hooks = _hooks(model)
    modes = [m.training for m in model.modules()]
    with torch.no_grad():
        out = model.eval()(x)
    model.train()

    p = profile(model, x, counters=("paper", "fvcore", "torch", "thop"), train=True, by_block=True, **FAST)

    assert p.flops["thop"].value is not None and p.memory.train_peak_bytes > 0
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert [n for n, _ in model.named_buffers()] == buffers  # no thop total_ops/total_params
    assert _hooks(model) == hooks
    assert [m.training for m in model.modules()] == modes
    assert all(p_.grad is None for p_ in model.parameters())
    with torch.no_grad():
        assert torch.equal(model.eval()(x), out)


def test_profile_restores_thread_count_and_rng() -> None:
    before = torch.get_num_threads()
    model, x = TinyVPT().train(), torch.randn(2, 9, 5, 2)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    p = profile(model, x, threads=1, train=True, **FAST)
    assert torch.get_num_threads() == before
    assert p.latency.threads == 1
    assert torch.equal(torch.rand(3), expected)


def test_works_on_graph_module() -> None:
    model = TinyVPT()
    gm = torch.fx.symbolic_trace(model.eval())
    x = torch.randn(2, 9, 5, 2)
    p = profile(gm, x, counters=("paper", "fvcore", "torch"), by_block=True, **FAST)
    ref = profile(model, x, counters=("paper", "fvcore", "torch"), fps=False, memory=False)
    assert isinstance(gm, torch.fx.GraphModule)
    assert {k: f.value for k, f in p.flops.items()} == {k: f.value for k, f in ref.flops.items()}
    # GraphModules turn ModuleLists into plain Modules: blocks are still found by name
    assert [b.name for b in p.blocks if b.is_block] == ["blocks.0", "blocks.1"]
    assert p.params == ref.params


# ----------------------------------------------------------------------------- speed, memory, results


def test_fps_relations_and_progress() -> None:
    calls: list[tuple[int, int]] = []
    x = torch.randn(3, 9, 5, 2)
    p = profile(TinyVPT(), x, counters=(), progress=lambda d, t: calls.append((d, t)), repeats=5, warmup=2)
    sec = p.latency.median_ms / 1e3
    assert p.batch == 3 and p.frames == 9
    assert p.fps_seq2seq == pytest.approx(3 * 9 / sec)
    assert p.fps_seq2frame == pytest.approx(3 / sec)
    assert p.fps == p.fps_seq2seq
    assert p.latency.min_ms <= p.latency.q25_ms <= p.latency.median_ms <= p.latency.q75_ms <= p.latency.max_ms
    assert len(p.latency.samples_ms) == 5
    assert calls == [(i, 7) for i in range(1, 8)]
    p2 = profile(TinyVPT(), x, counters=(), pipeline="seq2frame", frames=4, memory=False, **FAST)
    assert p2.fps == p2.fps_seq2frame and p2.fps_seq2seq == pytest.approx(4 * p2.fps_seq2frame)


class Allocates(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1000, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(2_000_000)  # 8 MB, freed before returning
        return self.lin(x) + big[:1000].sum()


def test_cpu_peak_memory_sees_a_large_tensor() -> None:
    p = profile(Allocates(), torch.randn(4, 1000), counters=(), fps=False, train=True)
    assert p.memory.forward_peak_bytes >= 2_000_000 * 4
    assert p.memory.forward_peak_bytes < 2 * 2_000_000 * 4  # the weights (4 MB) are not counted
    assert p.memory.train_peak_bytes >= 2_000_000 * 4
    assert p.memory.baseline_bytes >= 1000 * 1000 * 4


def test_cpu_train_step_memory_counts_gradients() -> None:
    p = profile(nn.Linear(1000, 1000), torch.randn(4, 1000), counters=(), fps=False, train=True)
    assert p.memory.forward_peak_bytes < 100_000  # the (4, 1000) output only
    assert p.memory.train_peak_bytes >= 1000 * 1000 * 4  # the weight's gradient


def test_to_dict_round_trips_through_json() -> None:
    x = torch.randn(2, 9, 5, 2)
    p = profile(TinyVPT(), x, counters=("paper", "fvcore", "torch"), by_block=True, train=True, **FAST)
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["flops"]["fvcore"]["unit"] == "MACs" and d["fps"] == p.fps_seq2seq
    assert {"params", "trainable_params", "latency", "memory", "blocks"} <= set(d)
    c = compare(TinyVPT(), TinyVPT(depth=1), x, counters="paper", by_block=True, **FAST)
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["change_pct"]["flops.paper"] < 0 and "blocks" in d


def test_compare_interleaves_and_reports_changes() -> None:
    class Extra(nn.Module):
        """The original with one more module after the blocks, like a recovering layer."""

        def __init__(self, base: TinyVPT) -> None:
            super().__init__()
            self.embed, self.pos, self.drop, self.blocks = base.embed, base.pos, base.drop, base.blocks
            self.norm, self.bn, self.head = base.norm, base.bn, base.head
            self.recover = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, f, j, _ = x.shape
            x = self.embed(x).permute(0, 2, 1, 3).reshape(b * j, f, -1) + self.pos
            for blk in list(self.blocks)[:1]:
                x = blk(x)
            x = self.recover(x)
            x = self.bn(self.norm(x).transpose(1, 2)).transpose(1, 2)
            return self.head(x).reshape(b, j, f, 3).permute(0, 2, 1, 3)

    base = TinyVPT()
    calls: list[int] = []
    c = compare(base, Extra(base), torch.randn(2, 9, 5, 2), counters=("paper",), by_block=True,
                progress=lambda d, t: calls.append(t), **FAST)
    assert isinstance(c, Comparison) and isinstance(c.before, Profile)
    assert calls == [8] * 8  # 2 models × (1 warm-up + 3 repeats)
    assert c.speedup == pytest.approx(c.before.latency.median_ms / c.after.latency.median_ms)
    rows = c.block_rows()
    # parts only the patched model has go right after the part that ran before them
    assert [r[0] for r in rows] == ["embed", "blocks.0", "recover", "blocks.1", "head"]
    assert rows[3][2] == 0  # blocks.1 is skipped by the "patched" model
    assert rows[2][1] is None and rows[2][2] == 2 * 90 * 16 * 16
    expected = 100 * (c.after.flops["paper"].value / c.before.flops["paper"].value - 1)
    assert c.change_pct()["flops.paper"] == pytest.approx(expected)
    text = str(c)
    assert "FLOPs (paper)" in text and "recover" in text and "speed-up" in text
    assert "FLOPs (paper)" in str(c.before)


# ----------------------------------------------------------------------------- errors


def test_bad_arguments_raise_config_errors() -> None:
    x = torch.randn(2, 5, 4)
    with pytest.raises(ConfigError, match="paper") as info:
        profile(LinConvMatmul(), x, counters=("paper", "flopz"))
    assert "fvcore" in str(info.value) and "torch" in str(info.value) and "thop" in str(info.value)
    with pytest.raises(ConfigError, match="seq2frame"):
        profile(LinConvMatmul(), x, pipeline="frame2seq")
    with pytest.raises(ConfigError):
        profile(LinConvMatmul(), x, repeats=0)
    with pytest.raises(ConfigError, match="not submodules"):
        profile(LinConvMatmul(), x, by_block=True, blocks=["nope"])
    with pytest.raises(HotpatchError):
        profile(LinConvMatmul(), "not a tensor")


def test_rejected_input_raises_input_shape_error() -> None:
    with pytest.raises(InputShapeError, match=r"\(2, 5, 3\)"):
        profile(LinConvMatmul(), torch.randn(2, 5, 3), fps=False)


def test_input_defaults_to_the_patch_config_and_torch_counts_patched_models():
    import hotpatch
    from hotpatch.models import mixste

    model = mixste.build(9, dim=16, depth=2)
    patched = hotpatch.apply(model, n=1, f=3)
    c = compare(model, patched, counters=("paper", "torch"), fps=False, memory=False)
    assert (c.before.batch, c.before.frames) == (1, 9)
    assert c.after.flops["torch"].error is None and 0 < c.after.flops["torch"].value < c.before.flops["torch"].value
    assert profile(patched, counters="paper", fps=False, memory=False).flops["paper"].value == \
        c.after.flops["paper"].value
    with pytest.raises(InputShapeError, match="example_input"):
        profile(model, counters="paper", fps=False, memory=False)
