"""Config loading: defaults < YAML < --set, and every kind of bad value fails at load time."""

from __future__ import annotations

import pytest

from cnnlab.config import ConfigError, RunConfig, build_config, dump_config, load_config


def test_defaults_are_valid():
    cfg = build_config()
    assert cfg == RunConfig()
    assert cfg.model.name == "cnn2" and cfg.optim.name == "adam" and cfg.optim.lr == 1e-3


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  name: cnn1\noptim:\n  lr: 0.01\ntrain:\n  epochs: 3\n")
    cfg = load_config(path, ["optim.lr=0.05"])
    assert (cfg.model.name, cfg.optim.lr, cfg.train.epochs) == ("cnn1", 0.05, 3)


def test_nested_params_override():
    cfg = build_config({}, ["model.name=cnn2", "model.params.dropout=0.1"])
    assert cfg.model.params == {"dropout": 0.1}


def test_yaml_11_exponent_string_becomes_float():
    # PyYAML reads "1e-3" as a string; a float field still accepts it.
    cfg = build_config({}, ["optim.lr=1e-3"])
    assert cfg.optim.lr == pytest.approx(1e-3)


def test_round_trip_through_yaml(tmp_path):
    cfg = build_config(
        {}, ["model.name=lenet5", "train.epochs=4", "optim.name=sgd", "optim.params.momentum=0.9"]
    )
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.epochs=abc", "train.epochs: expected an integer, found 'abc'"),
        ("train.epochs=0", "train.epochs: expected >= 1"),
        ("optim.lr=-0.1", "optim.lr: expected a learning rate > 0"),
        ("train.progres=true", "did you mean 'progress'"),
        ("trian.epochs=1", "unknown key 'trian'"),
        ("data.val_split=1.5", "data.val_split: expected a fraction in [0, 1)"),
        ("train.precision=fp8", "one of auto, fp32, bf16, fp16"),
        ("model.name=resnet21", "unknown model 'resnet21'"),
        ("model.params.nonsense=1", "has no option 'nonsense'"),
        ("model.params.num_classes=3", "cannot be set in a config"),
        ("optim.name=adamm", "Did you mean 'adam'"),
        ("optim.params.momentum=0.9", "optimizer 'adam' has no option 'momentum'"),
        ("train.compile=maybe", "train.compile: expected true or false"),
        ("schedule.name=cosine_restarts", None),
    ],
)
def test_bad_values_fail_at_load(override, fragment):
    if fragment is None:  # a valid line, to show the table is not all failures
        build_config({}, [override])
        return
    with pytest.raises(ConfigError) as err:
        build_config({}, [override])
    assert fragment in str(err.value)


def test_builder_value_checks_run_at_load():
    with pytest.raises(ConfigError, match="momentum"):
        build_config({}, ["optim.name=sgd", "optim.params.momentum=-0.5"])
    with pytest.raises(ConfigError, match="cycles"):
        build_config({}, ["schedule.name=cosine_restarts", "schedule.params.cycles=0"])
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_config({}, ["loss.params.label_smoothing=1.5"])


def test_model_option_type_is_checked():
    with pytest.raises(ConfigError, match="model.params.dropout: expected a number"):
        build_config({}, ["model.params.dropout=high"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(listy)
    unknown = tmp_path / "u.yaml"
    unknown.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"u\.yaml: unknown key 'optim.learning_rate'"):
        load_config(unknown)


def test_override_syntax():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        build_config({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="empty key"):
        build_config({}, ["train..epochs=1"])


@pytest.mark.parametrize("value", ["/tmp/elsewhere", "../../escape", "a/../../b"])
def test_config_cannot_write_outside_the_run(value):
    with pytest.raises(ConfigError, match="would write outside the run directory"):
        build_config({}, ["data.dataset=image_folder", f"data.params.cache_dir={value}"])


def test_merge_trees_layers_without_touching_inputs():
    from cnnlab.config import merge_trees

    base = {"optim": {"name": "adam", "lr": 0.001}, "data": {"augment": ["hflip"]}}
    top = {"optim": {"lr": 0.1}, "data": {"augment": []}, "train": {"epochs": 3}}
    out = merge_trees(base, top)
    assert out == {"optim": {"name": "adam", "lr": 0.1}, "data": {"augment": []},
                   "train": {"epochs": 3}}  # fmt: skip
    out["optim"]["name"] = "sgd"
    out["train"]["epochs"] = 9
    assert base["optim"]["name"] == "adam" and top["train"]["epochs"] == 3  # inputs untouched
