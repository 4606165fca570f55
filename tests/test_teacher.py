"""The teacher: --teacher parsing, training once and caching, checkpoints."""

from __future__ import annotations

import re

import pytest
import torch

from gkd_search.errors import UsageError
from gkd_search.teacher import (
    TeacherConfig,
    cache_key,
    get_teacher,
    read_checkpoint_config,
    save_teacher_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = "gcn:2:16:epochs=20:patience=20"


def teacher(registry, dataset, spec, cache_dir, seed=0, **kwargs):
    config = TeacherConfig.parse(spec)
    return get_teacher(dataset, config, registry.get("family", config.family), seed=seed, cache_dir=cache_dir,
                       **kwargs)


# ------------------------------------------------------------------------------ parse


def test_parse_plain():
    c = TeacherConfig.parse("gcn:2:64")
    assert (c.family, c.num_layers, c.hidden_channels, dict(c.family_params)) == ("gcn", 2, 64, {})
    assert (c.dropout, c.lr, c.weight_decay, c.epochs, c.patience) == (0.5, 0.01, 5e-4, 500, 100)
    assert c.spec == "gcn:2:64"


def test_parse_family_param():
    c = TeacherConfig.parse("gat:2:64:heads=4")
    assert c.family == "gat" and dict(c.family_params) == {"heads": 4}
    assert isinstance(c.family_params["heads"], int)
    assert c.spec == "gat:2:64:heads=4"


def test_parse_training_settings():
    c = TeacherConfig.parse("gcn:2:256:dropout=0.8")
    assert c.dropout == 0.8 and dict(c.family_params) == {}
    assert c.spec == "gcn:2:256:dropout=0.8"
    c = TeacherConfig.parse("GCN:3:32:weight_decay=0.001:epochs=40:patience=7:lr=0.05")
    assert (c.family, c.num_layers, c.weight_decay, c.epochs, c.patience, c.lr) == ("gcn", 3, 0.001, 40, 7, 0.05)
    assert isinstance(c.epochs, int)
    assert TeacherConfig.parse(c.spec) == c  # the spec round-trips


@pytest.mark.parametrize("text", ["gcn:x:1", "gcn:2", "gcn", "gcn:2:16:heads", "gcn:2:16:epochs=ten", "gcn:2.5:16"])
def test_parse_rejects_malformed(text):
    with pytest.raises(UsageError, match=re.escape(f"--teacher {text!r} is not FAMILY:LAYERS:HIDDEN")):
        TeacherConfig.parse(text)


@pytest.mark.parametrize("text", ["gcn:0:16", "gcn:2:0", "gcn:-1:16"])
def test_parse_rejects_non_positive(text):
    with pytest.raises(UsageError, match="LAYERS and HIDDEN must be >= 1"):
        TeacherConfig.parse(text)


# ------------------------------------------------------------------------------ cache


def test_trains_once_then_cache(gkd_registry, small_synthetic, tmp_path):
    model1, out1 = teacher(gkd_registry, small_synthetic, QUICK, tmp_path)
    assert out1.from_cache is False
    assert out1.logits.shape == (small_synthetic.num_nodes, small_synthetic.num_classes)
    assert len(out1.hidden) == 2 and out1.hidden[0].shape == (small_synthetic.num_nodes, 16)
    assert torch.equal(out1.hidden[-1], out1.logits)
    assert 0.0 <= out1.val_acc <= 1.0 and 0.0 <= out1.test_acc <= 1.0
    assert out1.val_acc > 0.6  # an easy graph: the teacher learned something
    assert out1.num_params == (16 * 16 + 16) + (16 * 3 + 3)
    assert out1.spec == "gcn:2:16:epochs=20:patience=20"
    files = list((tmp_path / "teachers").glob("*.pt"))
    assert [str(f) for f in files] == [out1.cache_path]

    model2, out2 = teacher(gkd_registry, small_synthetic, QUICK, tmp_path)
    assert out2.from_cache is True
    assert out2.cache_path == out1.cache_path
    assert torch.equal(out2.logits, out1.logits)
    assert all(torch.equal(a, b) for a, b in zip(out2.hidden, out1.hidden))
    assert (out2.val_acc, out2.test_acc, out2.num_params) == (out1.val_acc, out1.test_acc, out1.num_params)
    s1, s2 = model1.state_dict(), model2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    # the restored model computes the cached logits
    model2.eval()
    with torch.no_grad():
        torch.testing.assert_close(model2(small_synthetic.data.x, small_synthetic.data.edge_index).logits, out1.logits)
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 1


def test_seed_and_config_change_cache_file(gkd_registry, small_synthetic, tmp_path):
    _, base = teacher(gkd_registry, small_synthetic, QUICK, tmp_path, seed=0)
    _, other_seed = teacher(gkd_registry, small_synthetic, QUICK, tmp_path, seed=1)
    _, other_width = teacher(gkd_registry, small_synthetic, "gcn:2:8:epochs=20:patience=20", tmp_path)
    _, other_dropout = teacher(gkd_registry, small_synthetic, QUICK + ":dropout=0.2", tmp_path)
    outs = [base, other_seed, other_width, other_dropout]
    assert not any(o.from_cache for o in outs)
    assert len({o.cache_path for o in outs}) == 4
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 4
    assert not torch.equal(base.logits, other_seed.logits)


def test_cache_key_depends_on_dataset(gkd_registry, small_synthetic, tmp_path):
    config = TeacherConfig.parse(QUICK)
    other = gkd_registry.get("dataset", "synthetic").load(None, tmp_path, seed=1, nodes=600, edges=3000,
                                                          features=16, classes=3)
    assert cache_key(small_synthetic, config, 0) == cache_key(small_synthetic, config, 0)
    assert cache_key(small_synthetic, config, 0) != cache_key(other, config, 0)
    assert cache_key(small_synthetic, config, 0) != cache_key(small_synthetic, config, 1)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_reproduces_logits(gkd_registry, small_synthetic, small_teacher, tmp_path):
    model, outputs = small_teacher
    config = TeacherConfig.parse("gcn:2:16:epochs=30:patience=30")
    path = tmp_path / "teacher.pt"
    save_teacher_checkpoint(model, config, path)
    assert read_checkpoint_config(path) == config
    loaded, out = get_teacher(small_synthetic, config, gkd_registry.get("family", "gcn"), seed=123,
                              cache_dir=tmp_path / "cache", checkpoint=path)
    torch.testing.assert_close(out.logits, outputs.logits)
    assert out.val_acc == outputs.val_acc and out.test_acc == outputs.test_acc
    assert out.num_params == outputs.num_params
    assert out.cache_path == str(path)
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing cached


def test_checkpoint_with_wrong_shapes(gkd_registry, small_synthetic, tmp_path):
    # a teacher trained on a graph with 8 features does not fit one with 16
    other = gkd_registry.get("dataset", "synthetic").load(None, tmp_path, seed=0, nodes=300, edges=900,
                                                          features=8, classes=3)
    model, _ = teacher(gkd_registry, other, QUICK, tmp_path)
    path = tmp_path / "wrong.pt"
    save_teacher_checkpoint(model, TeacherConfig.parse(QUICK), path)
    with pytest.raises(UsageError, match=re.escape(f"--teacher-checkpoint {path}: weights do not fit gcn:2:16")):
        get_teacher(small_synthetic, TeacherConfig.parse(QUICK), gkd_registry.get("family", "gcn"), seed=0,
                    cache_dir=tmp_path, checkpoint=path)


def test_checkpoint_config_disagrees_with_weights(gkd_registry, small_synthetic, small_teacher, tmp_path):
    model, _ = small_teacher  # hidden 16
    path = tmp_path / "lying.pt"
    save_teacher_checkpoint(model, TeacherConfig.parse("gcn:2:32"), path)
    with pytest.raises(UsageError, match="weights do not fit gcn:2:32 on synthetic"):
        get_teacher(small_synthetic, TeacherConfig.parse("gcn:2:32"), gkd_registry.get("family", "gcn"), seed=0,
                    cache_dir=tmp_path, checkpoint=path)


def test_checkpoint_missing_or_not_a_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_checkpoint_config(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(UsageError, match="not a gkd-search teacher checkpoint"):
        read_checkpoint_config(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(UsageError, match="not a gkd-search teacher checkpoint"):
        read_checkpoint_config(plain)


# ------------------------------------------------------------------------------ device


def test_teacher_device_is_cuda_only_where_this_process_sees_a_gpu():
    from gkd_search.teacher import teacher_device

    assert teacher_device("cpu") == "cpu"
    expected = "cuda:1" if torch.cuda.is_available() else "cpu"
    assert teacher_device("cuda:1") == expected  # a driver without a GPU trains its teacher on its CPU


def test_teacher_trained_for_a_cuda_search_is_cached_on_the_cpu_under_the_same_key(gkd_registry, small_synthetic,
                                                                                  tmp_path):
    model_cpu, out_cpu = teacher(gkd_registry, small_synthetic, QUICK, tmp_path / "a")
    model_gpu, out_gpu = teacher(gkd_registry, small_synthetic, QUICK, tmp_path / "b", device="cuda")
    assert out_gpu.cache_key == out_cpu.cache_key  # the device is not part of what was trained
    assert out_gpu.logits.device.type == "cpu" and all(h.device.type == "cpu" for h in out_gpu.hidden)
    assert all(p.device.type == "cpu" for p in model_gpu.parameters())
    if torch.cuda.is_available():  # CUDA kernels are not bitwise the CPU's: the same model, not the same floats
        assert abs(out_gpu.val_acc - out_cpu.val_acc) <= 0.05
    else:  # both trained on the CPU: identical
        assert torch.equal(out_gpu.logits, out_cpu.logits)
    _, again = teacher(gkd_registry, small_synthetic, QUICK, tmp_path / "b")  # the CPU reads the CUDA-trained entry
    assert again.from_cache and torch.equal(again.logits, out_gpu.logits)
