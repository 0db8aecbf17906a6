"""The config loader: YAML + key=value overrides -> validated pydantic, with clear errors."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from merl.core.config import ConfigError, StrictModel, apply_overrides, load_config


class Optim(StrictModel):
    lr: float = Field(1e-3, gt=0)
    schedule: Literal["cosine", "constant"] = "cosine"


class Cfg(StrictModel):
    name: str = "x"
    workers: int = Field(1, ge=1)
    optim: Optim = Field(default_factory=Optim)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\noptim:\n  lr: 0.01\n")
    cfg = load_config(Cfg, p, ["workers=4", "optim.schedule=constant"])
    assert (cfg.name, cfg.workers, cfg.optim.lr, cfg.optim.schedule) == ("run", 4, 0.01, "constant")


def test_override_types_parsed_as_yaml():
    out = apply_overrides({}, ["a.b=3", "a.c=[1, 2]", "d=true", "e=hello"])
    assert out == {"a": {"b": 3, "c": [1, 2]}, "d": True, "e": "hello"}


@pytest.mark.parametrize(
    "override, must_contain",
    [
        ("workers=0", ["workers", "0", "greater than or equal to 1"]),
        ("optim.schedule=linear", ["optim.schedule", "linear", "cosine"]),
        ("optim.lrr=1", ["optim.lrr", "unknown field"]),
        ("workers=many", ["workers", "many"]),
    ],
)
def test_invalid_field_names_value_and_allowed(override, must_contain):
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, None, [override])
    msg = str(e.value)
    for part in must_contain:
        assert part in msg, msg


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Cfg, None, ["workers"])


def test_list_values_with_nested_brackets():
    """A list of overrides as one value: YAML cannot read `[a=[x], b=1]` as a flow sequence."""
    out = apply_overrides({}, ["base_overrides=[eval.tasks=[a, b], eval.shards={a: d}, train.epochs=2]",
                               'quoted=["x=[1]", "y, z"]', "plain=[1, 2]", "broken=[a=[1, b]"])
    assert out["base_overrides"] == ["eval.tasks=[a, b]", "eval.shards={a: d}", "train.epochs=2"]
    assert out["quoted"] == ["x=[1]", "y, z"] and out["plain"] == [1, 2]
    assert out["broken"] == "[a=[1, b]"  # unbalanced: kept as typed, for validation to report


def test_dotted_keys_of_a_mapping():
    """Mappings keyed by dotted names (a search space) take overrides aimed inside an entry."""
    data = {"search": {"loss.temperature": {"low": 0.1}}}
    out = apply_overrides(data, ["search.loss.temperature.low=0.01", "search.optim.lr.low=1e-4"])
    assert out["search"]["loss.temperature"] == {"low": 0.01}
    assert out["search"]["optim"] == {"lr": {"low": 1e-4}}  # new keys nest; the schema flattens them
    assert data["search"]["loss.temperature"] == {"low": 0.1}  # the input is not modified
