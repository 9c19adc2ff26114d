"""``summary`` on the extra zoo: grouped/depthwise MACs, concatenated branches, receptive fields.

Receptive fields are checked against ``receptive_field_of`` chains (the recurrence of Handbook
§3.1.1) and MACs against hand counts; a concatenation takes the largest field of its branches.
"""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.inspect import receptive_field_of, summary
from cnnlab.models import create_model

EXTRA = ["nin", "googlenet", "inception_small", "mobilenet_v1", "squeezenet1_0", "plain20"]
SMALL = {"googlenet": {"width": 0.25}, "inception_small": {"width": 0.5}}
LRN_NOTE = "LocalResponseNorm: inner reshapes not followed"


def meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, num_classes=1000, in_chans=3, **kw)


def row(info, name):
    return next(r for r in info.layers if r.name == name)


@pytest.mark.parametrize("name", EXTRA)
@pytest.mark.parametrize(("c", "size"), [(1, 28), (3, 32)])
def test_summaries_are_consistent(name, c, size):
    model = create_model(name, num_classes=10, in_chans=c, input_size=size, **SMALL.get(name, {}))
    info = summary(model, (c, size, size))
    assert sum(r.macs for r in info.layers) == info.macs
    assert info.params == sum(p.numel() for p in model.parameters())
    assert info.output_shape == (10,) and info.receptive_field == size
    assert all(LRN_NOTE in note for note in info.notes)  # nothing else left unmodelled


def test_googlenet_receptive_fields_through_concatenation():
    info = summary(meta("googlenet"), (3, 224, 224))
    stem = [(7, 2), (3, 2), (1, 1), (3, 1), (3, 2)]  # conv1, pool1, 1x1, 3x3, pool2
    assert (row(info, "stem.pool2").receptive_field, row(info, "stem.pool2").jump) == (27, 8)
    assert receptive_field_of(stem) == (27, 8)
    # inception 3a: the 5x5 branch is the widest: 27 + 4 * 8 = 59; 3x3 and pool: 27 + 2 * 8
    assert receptive_field_of([*stem, (5, 1)]) == (59, 8)
    assert row(info, "inception3a.branch3.conv.conv").receptive_field == 59
    assert row(info, "inception3a.branch2.conv.conv").receptive_field == 43
    assert row(info, "inception3a.branch4.pool").receptive_field == 43
    # 3b's 1x1 branch sees the concatenation: the largest field of 3a's branches
    assert row(info, "inception3b.branch1.conv").receptive_field == 59
    assert row(info, "pool").receptive_field == 224  # global average pooling


def test_mobilenet_depthwise_rows_and_receptive_field():
    info = summary(meta("mobilenet_v1"), (3, 224, 224))
    dws = [r for r in info.layers if r.name.endswith("dw.conv")]
    pws = [r for r in info.layers if r.name.endswith("pw.conv")]
    assert len(dws) == len(pws) == 13
    for dw, pw in zip(dws, pws, strict=True):
        c, h, w = dw.output_shape
        assert dw.params == 9 * c and dw.macs == 9 * c * h * w  # one 3x3 filter per channel
        assert pw.macs == c * pw.output_shape[0] * h * w
    strides = [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]  # conv1 then the 13 depthwise convs
    chain = [(3, s) for s in strides]
    assert (dws[-1].receptive_field, dws[-1].jump) == receptive_field_of(chain)


def test_squeezenet_fire_concat_and_class_maps():
    info = summary(meta("squeezenet1_0"), (3, 227, 227))
    sq = row(info, "features.fire2.squeeze")
    e3 = row(info, "features.fire2.expand3x3")
    assert (sq.receptive_field, sq.jump) == receptive_field_of([(7, 2), (3, 2)])  # 11, 4
    assert e3.receptive_field == 11 + 2 * 4
    assert e3.macs == 9 * 16 * 64 * 55 * 55
    assert row(info, "features.conv10").output_shape == (1000, 13, 13)
    assert row(info, "features.fire3.squeeze").receptive_field == 19  # concat: max of branches


def test_summary_cli_handles_the_extra_zoo(capsys):
    assert main(["summary", "mobilenet_v1", "--input", "3x32x32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 4,231,976 at 1000 classes - FC 1,025,000 + FC 1024 x 10 + 10 (params do not depend on size)
    assert out["params"] == 4_231_976 - 1_025_000 + 10_250 == 3_217_226
    assert out["output_shape"] == [10]
