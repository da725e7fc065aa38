"""``committee run --config best_configs.json``: a search's result fed back into a run — the
members' settings applied, the file's content in the run's identity, bad files refused in one
line (file, member, key, what was expected) before anything starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from committee.app import cli
from committee.app.options import RunOptions, TuneOptions, validate_tune
from committee.app.run import identity_of
from committee.rundir import folder as runfolder

BEST = {  # as committee tune writes it (render.write_search)
    "model1": {
        "learning_rate": 0.0023,
        "batch_size": 64,
        "optimizer": "adamw",
        "arch.filters": 64,
        "arch.dense_units": 256,
        "epochs": 10,
    },
    "model3": {"learning_rate": 0.004, "arch.dropout": 0.31, "optimizer": "adam"},
}


def _file(tmp_path: Path, content, name="best_configs.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_the_command_line_reads_config(tmp_path):
    path = _file(tmp_path, BEST)
    options = cli.options_from_args(cli.build_parser().parse_args(["run", "--config", str(path)]))
    assert isinstance(options, RunOptions) and options.config == str(path)
    assert RunOptions().config is None  # the default lives in the dataclass


def test_the_configured_members_train_with_their_settings(tmp_path):
    specs = RunOptions(config=str(_file(tmp_path, BEST))).specs()
    assert [s.name for s in specs] == ["model1", "model3"]  # the file's, in the preset's order
    model1, model3 = specs
    assert (model1.learning_rate, model1.batch_size, model1.optimizer, model1.epochs) == (
        0.0023,
        64,
        "adamw",
        10,
    )
    assert model1.arch_params == {"filters": 64, "dense_units": 256}
    assert model3.arch_params["dropout"] == 0.31 and model3.optimizer == "adam"


def test_members_and_overrides_with_config(tmp_path):
    path = str(_file(tmp_path, {"model1": {"learning_rate": 0.0023, "epochs": 10}}))
    specs = RunOptions(config=path, members=["model1", "model2"], epochs=3).specs()
    assert [s.name for s in specs] == ["model1", "model2"]
    assert specs[0].learning_rate == 0.0023 and specs[0].epochs == 3  # the command line wins
    default = RunOptions(members=["model2"]).specs()[0]
    assert specs[1].learning_rate == default.learning_rate  # not in the file: the preset's


def _identity(options: RunOptions) -> dict:
    options.backend = "tensorflow"
    dataset = SimpleNamespace(sha256={"train_images": "0" * 64})
    return identity_of(options, options.specs(), dataset, "run")


def test_the_config_content_is_part_of_the_identity(tmp_path):
    first = _identity(RunOptions(config=str(_file(tmp_path, BEST))))
    assert first["config"] == BEST
    assert first["members"]["model1"]["spec"]["learning_rate"] == 0.0023
    assert "config" not in _identity(RunOptions())  # older identities still match
    # the same content under another name is the same run
    moved = _identity(RunOptions(config=str(_file(tmp_path, BEST, "copy.json"))))
    assert moved == first

    run = tmp_path / "runs" / "tuned"
    runfolder.prepare(run, "new", {"identity": first})
    assert runfolder.check(run, moved) == "resume"
    other = {**BEST, "model1": {**BEST["model1"], "learning_rate": 0.01}}
    changed = _identity(RunOptions(config=str(_file(tmp_path, other, "other.json"))))
    with pytest.raises(runfolder.RunFolderError, match="other settings") as refused:
        runfolder.check(run, changed)
    assert "config.model1.learning_rate: 0.0023 -> 0.01" in str(refused.value)
    assert "model1.learning_rate: 0.0023 -> 0.01" in str(refused.value)


CONFIG_CASES = [  # (content, expected words after "--config FILE: ")
    ({"model7": {"learning_rate": 0.01}}, "member 'model7' is not in preset 'seed'"),
    (
        {"vgg": {"learning_rate": 0.001}},
        "member 'vgg' is not in preset 'seed'; expected one of model1, model2, model3 "
        "(member of preset 'strong': pass --preset strong)",
    ),
    ({"model1": {"lr": 0.01}}, "key 'lr' of member 'model1' is unknown; expected one of"),
    ({"model1": {"name": "x"}}, "key 'name' of member 'model1' is unknown"),
    (
        {"model1": {"batch_size": 0}},
        "key 'batch_size' of member 'model1': batch size 0 must be an integer in 1..60000",
    ),
    ({"model1": {"learning_rate": -1}}, "key 'learning_rate' of member 'model1': learning rate"),
    ({"model1": {"optimizer": "lion"}}, "key 'optimizer' of member 'model1': optimizer 'lion'"),
    (
        {"model1": {"arch.bogus": 1}},
        "key 'arch.bogus' of member 'model1': model1 has no parameter 'bogus'",
    ),
    ({"model1": {"batch_size": [64]}}, "has [64]; expected a number, a string or a boolean"),
    ({"model1": {}}, "member 'model1' has {}; expected an object of its settings"),
    ({}, "holds nothing; expected an object of member -> settings"),
    ([1], "holds list; expected an object of member -> settings"),
    ('{"model1": ', "not valid JSON (Expecting value, line 1 column 12)"),
]


@pytest.mark.parametrize(
    "content, expected", CONFIG_CASES, ids=[str(c[0])[:40] for c in CONFIG_CASES]
)
def test_a_bad_config_is_one_line_before_ray(content, expected, capsys, tmp_path):
    path = _file(tmp_path, content)
    out = tmp_path / "runs"
    code = cli.main(["run", "--output", str(out), "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert f"committee: error: --config {path}: " in err and expected in err, err
    assert not out.exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_missing_config_file(capsys, tmp_path):
    code = cli.main(["run", "--output", str(tmp_path), "--config", str(tmp_path / "no.json")])
    assert code == 2
    assert (
        "no.json: cannot be read (No such file or directory); expected the best_configs.json"
        in (capsys.readouterr().err)
    )


def test_an_unknown_preset_is_named_before_the_config(tmp_path):
    with pytest.raises(ValueError, match="preset 'huge' is unknown"):
        RunOptions(preset="huge", config=str(_file(tmp_path, BEST))).specs()


def test_config_with_other_members(tmp_path):
    path = str(_file(tmp_path, BEST))
    with pytest.raises(ValueError, match="member 'model3' is not among --members model1"):
        RunOptions(config=path, members=["model1"]).specs()


def test_a_search_takes_no_config(tmp_path):
    with pytest.raises(ValueError, match="applies to committee run"):
        validate_tune(TuneOptions(config=str(_file(tmp_path, BEST))))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["tune", "--config", "x.json"])
