"""Where the cuts and the recovery go (hotpatch.engine.sites): before the first block after the
n-th temporal level (spatial or temporal), and after the last block plus the norm applied to it."""

from __future__ import annotations

import pytest

import author_vpts
import hotpatch
from hotpatch.engine.sites import stage_at


@pytest.mark.parametrize("name, n, cut, recover_after", [
    ("mixste", 1, "STEblocks.1", "temporal_norm_3"),   # the spatial block after temporal level 1
    ("mixste", 2, "STEblocks.2", "temporal_norm_3"),   # a norm shared by every block: its last call
    ("motionbert", 2, "blocks_st.2", "norm"),          # parallel ST / TS streams are one level
    ("encoder_layer", 1, "layers.1", "layers_3"),      # no norm after the last layer: the block itself
])
def test_cut_and_recovery_sites(name, n, cut, recover_after):
    model, x = author_vpts.build(name)
    sites = hotpatch.apply(model, n=n, f=9, example_input=x[:1], recover="linear").hotpatch_sites
    assert (sites.cut_block, sites.recover_after) == (cut, recover_after)


def test_each_stage_has_its_own_cut_in_order():
    model, x = author_vpts.build("mixste")
    sites = hotpatch.apply(model, n=[1, 3], f=[15, 7], example_input=x[:1], recover="linear").hotpatch_sites
    assert sites.cut_blocks == ["STEblocks.1", "STEblocks.3"]
    assert sites.cuts == sorted(sites.cuts) and sites.cuts[0] == sites.cut
    assert sites.tokens == {"STEblocks.0": 27, "TTEblocks.0": 27, "STEblocks.1": 15, "TTEblocks.1": 15,
                            "STEblocks.2": 15, "TTEblocks.2": 15, "STEblocks.3": 7, "TTEblocks.3": 7}


def test_seq2frame_has_no_recovery_site():
    model, x = author_vpts.build("mixste")
    sites = hotpatch.apply(model, n=1, f=9, example_input=x[:1], pipeline="seq2frame").hotpatch_sites
    assert sites.recover is None and sites.recover_after is None


@pytest.mark.parametrize("position, stage", [(0, 0), (4, 0), (5, 1), (9, 1), (10, 2), (50, 2)])
def test_stage_of_a_position(position, stage):
    assert stage_at(position, [5, 10]) == stage
