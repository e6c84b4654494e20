"""Flags generated from configuration dataclasses (robntk.commands._flags, robntk.core.config.flag):
one source of defaults per command, validation in ``__post_init__`` reported as one line (exit 2)
before any work, one ε parser, and the command layer's structure (no command imports another,
one writer of tables and JSON files)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from robntk.cli import COMMANDS, build_parser, main
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.registry import parse_eps

REPO = Path(__file__).resolve().parents[1]
COMMANDS_DIR = REPO / "robntk" / "commands"


# --------------------------------------------------------------------------- the generator
@dataclass(frozen=True, kw_only=True)
class Toy:
    inputs: tuple[str, ...] = field(metadata=flag("input files", flag="inputs"))
    out: str = field(metadata=flag("output"))
    eps: tuple[float, ...] = field(default=(3 / 255, 8 / 255), metadata=flag("radii", parse=parse_eps))
    arch: tuple[str, ...] = field(default=(), metadata=flag("an arch (repeatable)", action="append"))
    target: tuple[str, ...] = field(
        default=("cifar10", "val_acc"), metadata=flag("target", nargs=2, metavar=("DATASET", "METRIC"))
    )
    mode: str = field(default="a", metadata=flag("mode", choices=("a", "b")))
    rate: float = field(default=0.5, metadata=flag("rate (50%% of it)"))
    all: bool = field(default=False, metadata=flag("everything"))
    full: bool = field(default=True, metadata=flag("first improvement", flag="--first", action="store_false"))
    unroll: bool = field(default=True, metadata=flag("unroll"))
    hidden: int = 3

    def __post_init__(self):
        if self.rate < 0:
            raise ValueError(f"--rate must be >= 0, got {self.rate!r}")


def _toy_parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_dataclass_flags(p, Toy, **kw)
    return p


def test_generated_flags_parse_into_the_dataclass():
    p = _toy_parser()
    a = p.parse_args(
        [
            "x",
            "y",
            "--out",
            "o",
            "--eps",
            "2/255",
            "--arch",
            "1",
            "--arch",
            "2",
            "--target",
            "c",
            "m",
            "--mode",
            "b",
            "--rate",
            "0.25",
            "--all",
            "--first",
            "--no-unroll",
        ]
    )
    t = config_from_args(Toy, a)
    assert t == Toy(
        inputs=("x", "y"),
        out="o",
        eps=(2 / 255,),
        arch=("1", "2"),
        target=("c", "m"),
        mode="b",
        rate=0.25,
        all=True,
        full=False,
        unroll=False,
    )
    # flags not given keep the dataclass defaults (argparse.SUPPRESS): one source of defaults
    d = config_from_args(Toy, p.parse_args(["x", "--out", "o"]))
    assert d == Toy(inputs=("x",), out="o")
    assert "hidden" not in vars(p.parse_args(["x", "--out", "o"]))  # no metadata: not a flag


def test_generated_help_shows_the_dataclass_defaults():
    text = _toy_parser().format_help()
    assert "radii (default: 3/255 8/255)" in text  # ε shown in the CLI's spelling
    assert "--target DATASET METRIC" in text and "target (default: cifar10 val_acc)" in text
    assert "rate (50% of it) (default: 0.5)" in text
    assert "--unroll, --no-unroll" in text and "unroll (default: True)" in text
    assert "everything\n" in text and "first improvement\n" in text  # switches show no default
    assert "an arch (repeatable)\n" in text  # an empty default is not shown
    assert "--out OUT" in text and "output\n" in text  # required: no default
    assert "{a,b}" in text


def test_generator_include_exclude_helps_and_defaults():
    p = _toy_parser(include=("inputs", "out", "rate"), helps={"rate": "another text"})
    text = p.format_help()
    assert "--mode" not in text and "another text (default: 0.5)" in text
    q = argparse.ArgumentParser()
    add_dataclass_flags(q, Toy, exclude=("mode",), defaults=Toy(inputs=("z",), out="o", rate=2.0))
    assert "--mode" not in q.format_help() and "(default: 2.0)" in q.format_help()
    a = q.parse_args(["z", "--out", "o"])
    assert config_from_args(Toy, a, Toy(inputs=("z",), out="o", rate=2.0)).rate == 2.0


def test_generator_keeps_parse_error_messages(capsys):
    with pytest.raises(SystemExit) as exc:
        _toy_parser().parse_args(["x", "--out", "o", "--eps", "8"])
    assert exc.value.code == 2
    assert "argument --eps: eps must be in [0, 1] pixel units, got '8' (did you mean 8/255?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _toy_parser().parse_args(["x", "--out", "o", "--rate", "fast"])
    assert "argument --rate: invalid float value: 'fast'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--rate must be >= 0, got -1\.0"):
        config_from_args(Toy, _toy_parser().parse_args(["x", "--out", "o", "--rate=-1"]))


def test_flag_metadata_helper_rejects_typos():
    assert flag("help text", parse=int) == {"help": "help text", "parse": int}
    with pytest.raises(ValueError, match=r"unknown flag metadata key\(s\) \['chioces'\]; allowed: flag, parse"):
        flag("x", chioces=(1, 2))
    with pytest.raises(ValueError, match="unknown flag action 'count'; allowed: store_true, store_false, append"):
        flag("x", action="count")
    with pytest.raises(ValueError, match="flag help must be a non-empty string"):
        flag("")


def test_library_configs_use_the_one_flag_helper():
    """ScoreConfig, TrainConfig, EvalConfig, EngineOptions and SearchConfig carry the metadata of
    robntk.core.config.flag (the old per-module ``_flag`` copies are gone)."""
    from robntk.analysis.search import SearchConfig
    from robntk.scoring import config as score_cfg
    from robntk.scoring.engine import EngineOptions
    from robntk.train import config as train_cfg
    from robntk.train.eval_config import EvalConfig

    assert score_cfg._flag is flag and train_cfg._flag is flag
    for cls in (score_cfg.ScoreConfig, train_cfg.TrainConfig, EvalConfig, EngineOptions, SearchConfig):
        documented = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
        assert documented, cls
        for f in documented:
            assert set(f.metadata) <= {
                "help",
                "flag",
                "parse",
                "choices",
                "metavar",
                "nargs",
                "action",
                "show_default",
            }, (cls, f.name)


# --------------------------------------------------------------------------- every command
def test_every_command_builds_its_parser_and_help():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    for name, sp in sub.choices.items():
        text = sp.format_help()
        assert "--data-dir" in text, name


def test_defaults_come_from_one_configuration():
    """score, reproduce and proxies share ScoreConfig's defaults (proxies: NASLib's batch of 64)."""
    from robntk.analysis.search import SearchConfig
    from robntk.commands import proxies, search
    from robntk.commands._common import JobOptions, engine_options, score_config
    from robntk.scoring.config import ScoreConfig
    from robntk.scoring.engine import EngineOptions

    s = build_parser().parse_args(["score", "--arch", "1", "--out", "o.csv"])
    r = build_parser().parse_args(["reproduce"])
    assert score_config(s) == score_config(r) == ScoreConfig()
    assert engine_options(r) == EngineOptions() and config_from_args(JobOptions, r) == JobOptions()
    assert "shard" not in vars(build_parser().parse_args(["reproduce", "--store", "x"]))
    x = build_parser().parse_args(["proxies", "--all", "--out", "p.csv"])
    assert score_config(x, proxies.DEFAULTS) == dataclasses.replace(ScoreConfig(), batch_size=64)
    assert proxies.DEFAULT_BATCH == 64
    q = build_parser().parse_args(["search"])
    assert config_from_args(SearchConfig, q) == SearchConfig()
    assert config_from_args(search.SearchOptions, q) == search.SearchOptions()
    f = build_parser().parse_args(["search", "--ls-first-improvement", "--seeds", "7"])
    assert config_from_args(SearchConfig, f) == SearchConfig(ls_full_nbhd=False, n_seeds=7)


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["score", "--arch", "1", "--out", "o.csv", "--eps", "8"], "did you mean 8/255?"),
        (["reproduce", "--eps", "3/255", "8"], "did you mean 8/255?"),
        (["train", "--arch", "1", "--out", "r", "--eps", "8"], "did you mean 8/255?"),
        (["train", "--arch", "1", "--out", "r", "--attack-step-size", "2"], "did you mean 2/255?"),
        (["evaluate", "--checkpoint", "r", "--out", "m.json", "--eps", "8"], "did you mean 8/255?"),
        (["evaluate", "--checkpoint", "r", "--out", "m.json", "--aa-eps", "4"], "did you mean 4/255?"),
    ],
)
def test_every_eps_flag_refuses_255ths(argv, hint, tmp_path, capsys):
    assert main(argv + ["--data-dir", str(tmp_path)]) == 2
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, msg",
    [
        (
            ["score", "--arch", "1", "--sample", "3", "--out", "o.csv"],
            "choose exactly one of --arch, --archs-file, --sample N, --all",
        ),
        (["score", "--out", "o.csv"], "choose exactly one of --arch, --archs-file, --sample N, --all"),
        (["score", "--sample", "0", "--out", "o.csv"], "--sample must be an integer >= 1, got 0"),
        (
            ["score", "--all", "--out", "o.csv", "--time-budget", "0"],
            "--time-budget must be a positive number of seconds, got 0.0",
        ),
        (["score", "--all", "--out", "o.csv", "--init-seeds", "1", "1"], "--init-seeds lists a seed twice: [1, 1]"),
        (
            ["score", "--all", "--out", "o.csv", "--attack-seeds", "-2"],
            "--attack-seeds must list integers >= 0, got [-2]",
        ),
        (["score", "--all", "--out", "o.csv", "--shard", "4/4"], "--shard K/N needs 0 <= K < N, got '4/4'"),
        (["score", "--all", "--out", "o.csv", "--batch-size", "1"], "batch_size must be an integer >= 2, got 1"),
        (["score", "--all", "--out", "o.txt"], "--out must end in .csv, .tsv, .parquet, .pq, got 'o.txt'"),
        (["reproduce", "--sample", "0"], "--sample must be an integer >= 1, got 0"),
        (["reproduce", "--n-boot", "-1"], "--n-boot must be an integer >= 0, got -1"),
        (["reproduce", "--time-budget", "-5"], "--time-budget must be a positive number of seconds, got -5.0"),
        (
            ["proxies", "--all", "--out", "p.csv", "--proxies", "synflow", "foo"],
            "unknown proxy name(s) ['foo']; allowed: params, flops, synflow",
        ),
        (
            ["proxies", "--all", "--out", "p.csv", "--minutes=-1"],
            "--minutes must be a number >= 0 (0: export what is stored), got -1.0",
        ),
        (["merge", "a", "--into", "m", "--rtol=-1"], "--rtol must be a finite number >= 0, got -1.0"),
        (["merge", "a", "--into", "m", "--rtol", "nan"], "--rtol must be a finite number >= 0, got nan"),
        (["correlate", "--scores", "s.csv", "--level", "1.5"], "--level must be in (0, 1), got 1.5"),
        (["correlate", "--scores", "s.csv", "--n-boot", "-1"], "--n-boot must be an integer >= 0, got -1"),
        (["search", "--threshold", "47.8"], "--threshold values must be accuracies in [0, 1], got 47.8"),
        (["search", "--budget", "0"], "budget must be an int ≥ 1, got 0"),
        (["search", "--dataset", "mnist"], "unknown dataset 'mnist'; allowed: cifar10, cifar100, ImageNet16-120"),
        (
            ["combine", "--scores", "s.csv", "--out", "t.csv", "--train-fraction", "1"],
            "--train-fraction must be in (0, 1), got 1.0",
        ),
        (
            ["combine", "--scores", "s.csv", "--out", "t.txt"],
            "--out must end in .csv, .tsv, .parquet, .pq, got 't.txt'",
        ),
        (
            ["evaluate", "--checkpoint", "r", "--out", "m.json", "--limit", "0"],
            "--limit must be an integer >= 1, got 0",
        ),
        (
            ["train", "--arch", "1", "--out", "r", "--stop-after-epochs", "0"],
            "--stop-after-epochs must be an integer >= 1, got 0",
        ),
        (["bound", "--widths", "a,b"], "--widths must be comma-separated integers, got 'a,b'"),
    ],
)
def test_bad_values_are_one_line_errors_before_any_work(argv, msg, tmp_path, capsys, monkeypatch):
    """Each bad value is a ValueError from the options' ``__post_init__`` (or the library config),
    reported as one line with exit 2 before any data is read (the data directory is empty) and
    before anything is written (the working directory stays empty)."""
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(argv + ["--data-dir", str(empty)]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"robntk {argv[0]}: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not list(empty.iterdir())


def test_report_rejects_non_positive_k_at_parse_time(capsys):
    assert main(["report", "--out-dir", "r", "--op-k", "0"]) == 2
    assert "argument --op-k: expected a positive integer, got '0'" in capsys.readouterr().err
    from robntk.commands.report import ReportOptions

    with pytest.raises(ValueError, match="--dpi must be a positive int, got 0"):
        ReportOptions(out_dir="r", dpi=0)
    with pytest.raises(ValueError, match="--search-k must be a positive int, got -3"):
        ReportOptions(out_dir="r", search_k=(1, -3))


# --------------------------------------------------------------------------- structure
def _command_modules() -> list[Path]:
    return sorted(p for p in COMMANDS_DIR.glob("*.py") if not p.name.startswith("_"))


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_no_command_imports_another():
    public = {f"robntk.commands.{p.stem}" for p in _command_modules()}
    assert "robntk.commands.score" in public and len(public) == len(COMMANDS)
    for path in _command_modules():
        bad = sorted(
            m for m in _imports(path) if m in public or m == "robntk.commands.common" or m == "robntk.commands.flags"
        )
        assert not bad, (path.name, bad)
    assert not (COMMANDS_DIR / "common.py").exists() and not (COMMANDS_DIR / "flags.py").exists()


def test_library_logic_lives_in_the_library():
    from robntk.scoring import draws
    from robntk.theory import check_override
    from robntk.theory import grid as experiment

    defined = {
        n.name
        for p in COMMANDS_DIR.glob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, (ast.FunctionDef, ast.ClassDef))
    }
    assert not defined & {"aggregate_draws", "check_override", "_check_value", "GEOMETRIC_PREFIXES"}
    assert draws.aggregate_draws.__module__ == "robntk.scoring.draws"
    assert check_override is experiment.check_override
    from robntk.analysis import report
    from robntk.core import registry

    assert report.NUM_CLASSES is registry.NUM_CLASSES


@pytest.mark.parametrize(
    "rel",
    sorted(
        [str(p.relative_to(REPO)) for p in COMMANDS_DIR.glob("*.py") if p.name != "robnets.py"]
        + ["robntk/analysis/report_writer.py", "robntk/theory/experiment.py"]
    ),
)
def test_one_writer_of_tables_and_json(rel):
    """Tables go through core.tables.write_table and JSON files through write_json: no direct
    to_csv / to_parquet / json.dump and no per-call float format."""
    text = (REPO / rel).read_text()
    for needle in (".to_csv(", ".to_parquet(", "json.dump(", "float_format"):
        assert needle not in text, (rel, needle)
