"""The ``blindbench`` command line: a parser built from each command's frozen config dataclass, and a dispatch table.

Every command takes ``--config FILE.toml`` (flat keys named as its fields, e.g. ``per_pattern = 2``); the flags
given on the command line override the file, and the file overrides the defaults. The configs live in light
modules (:mod:`blindbench.commands`, ``export``, ``plot``, ``demo``), so ``blindbench --help`` and
``blindbench CMD --help`` import neither torch nor pandas nor OpenCV: a command's run function imports what it
needs when it runs.

Every user error is printed as one line (``blindbench: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from blindbench.allocator import active_allocator
from blindbench.commands.compare import CompareConfig, run_compare
from blindbench.commands.corpus import CorpusBuildConfig, CorpusPairsConfig, run_corpus_build, run_corpus_pairs
from blindbench.commands.eval import EvalConfig, run_eval
from blindbench.commands.inpaint import InpaintConfig, run_inpaint
from blindbench.commands.models import ModelsConfig, run_models
from blindbench.commands.sets import GenerateConfig, SheetConfig, VerifyConfig, run_generate, run_sheet, run_verify
from blindbench.commands.study import (
    StudyMakeConfig,
    StudyScoreConfig,
    StudyServeConfig,
    run_study_make,
    run_study_score,
    run_study_serve,
)
from blindbench.commands.tables import TablesConfig, run_tables
from blindbench.commands.train import TrainConfig, run_train
from blindbench.commands.zoo import ExportWeightsConfig, ZooPublishConfig, run_export_weights, run_zoo_publish
from blindbench.demo import DemoConfig, run_demo
from blindbench.errors import BlindbenchError, TrainingStopped
from blindbench.export import ExportConfig, run_export
from blindbench.options import read_config_file
from blindbench.plot import PlotConfig, run_plot

# command words -> (config dataclass, run function taking the resolved config)
COMMANDS: dict[tuple[str, ...], tuple[type, Callable[[Any], Any]]] = {
    ("corpus", "build"): (CorpusBuildConfig, run_corpus_build),
    ("corpus", "pairs"): (CorpusPairsConfig, run_corpus_pairs),
    ("generate",): (GenerateConfig, run_generate),
    ("verify",): (VerifyConfig, run_verify),
    ("sheet",): (SheetConfig, run_sheet),
    ("models",): (ModelsConfig, run_models),
    ("demo",): (DemoConfig, run_demo),
    ("eval",): (EvalConfig, run_eval),
    ("tables",): (TablesConfig, run_tables),
    ("compare",): (CompareConfig, run_compare),
    ("inpaint",): (InpaintConfig, run_inpaint),
    ("export",): (ExportConfig, run_export),
    ("export-weights",): (ExportWeightsConfig, run_export_weights),
    ("zoo", "publish"): (ZooPublishConfig, run_zoo_publish),
    ("study", "make"): (StudyMakeConfig, run_study_make),
    ("study", "serve"): (StudyServeConfig, run_study_serve),
    ("study", "score"): (StudyScoreConfig, run_study_score),
    ("plot",): (PlotConfig, run_plot),
}
# `train` resolves its own config (train.load_config: a resumed run starts from the checkpoint's settings).
TRAIN = ("train",)
TRAIN_HELP = "Train a model: two-stage (separate, then joint) as the paper; flags override --config TOML."


def add_config_arguments(parser: argparse.ArgumentParser, config: type, only_given: bool = False) -> None:
    """One ``--flag`` per dataclass field, typed and documented from the field.

    Field metadata may ask for ``positional=True`` (a ``tuple[str, ...]`` field takes one or more values) and a
    ``short`` alias such as ``-o``. With ``only_given``, flags the user did not give stay out of the namespace,
    so the values of a TOML file are not overwritten by defaults (and a positional may then come from the file).
    """
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        kind = hints[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        is_tuple = typing.get_origin(kind) is tuple
        default = argparse.SUPPRESS if only_given else f.default
        if f.metadata.get("positional"):
            nargs = ("*" if is_tuple else "?") if only_given else ("+" if is_tuple else None)
            parser.add_argument(f.name, nargs=nargs, help=f.metadata.get("help", ""), metavar=f.name.upper(),
                                **({"default": default} if only_given else {}))  # fmt: skip
            continue
        flags = ["--" + f.name.replace("_", "-")] + ([f.metadata["short"]] if "short" in f.metadata else [])
        if kind is bool:
            action = argparse.BooleanOptionalAction
            parser.add_argument(*flags, dest=f.name, action=action, default=default, help=help_text)
        elif is_tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(*flags, dest=f.name, type=item, nargs="+", default=default, help=help_text)
        else:
            kind = kind if kind in (int, float, str) else str
            choices = f.metadata.get("choices")
            parser.add_argument(*flags, dest=f.name, type=kind, default=default, help=help_text, choices=choices)


def given_values(config: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``config`` present on the namespace (lists as tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config) if hasattr(args, f.name)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def config_from_args(config: type, args: argparse.Namespace, command: str = "") -> Any:
    """The resolved config: defaults, then the ``--config`` file (when the namespace names one), then the flags."""
    path = getattr(args, "config", None)
    values = read_config_file(path, config, command or "blindbench") if path else {}
    return config(**{**values, **given_values(config, args)})


def version_text() -> str:
    """blindbench's version and what it runs on: the first line to paste into a bug report."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"blindbench {installed('blindbench')} (python {sys.version.split()[0]}, torch {installed('torch')}, "
            f"numba {installed('numba')}, allocator {active_allocator()})")  # fmt: skip


class _VersionAction(argparse.Action):
    """``--version``, computed only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: typing.Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,  # no attribute on the namespace
                         help="print the version and what it runs on, then exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *args: typing.Any) -> None:
        print(version_text())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``blindbench CMD: error: ...``, exit 2), like every other error here."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0] if message else 'bad arguments'} "
                     f"(see {self.prog} --help)\n")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="blindbench", description="Blind image inpainting toolkit (VCN and baselines).")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, config in [*((w, c) for w, (c, _) in COMMANDS.items()), (TRAIN, TrainConfig)]:
        doc = TRAIN_HELP if words == TRAIN else (config.__doc__ or "").strip().splitlines()[0]
        if len(words) == 1:
            target = sub.add_parser(words[0], help=doc, description=doc)
        else:
            if words[0] not in groups:
                group = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                                                        parser_class=_Parser)
            target = groups[words[0]].add_parser(words[1], help=doc, description=doc)
        target.add_argument("--config", default=None, metavar="TOML",
                            help=f"TOML file of {' '.join(words)} options (flat keys named as the flags, with _ for "
                                 f"-); the flags given override it")  # fmt: skip
        add_config_arguments(target, config, only_given=True)
        target.set_defaults(_words=words)
    return parser


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or torch's allocator failure (a RuntimeError on CPU, OutOfMemoryError on CUDA)."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    words = args._words
    try:
        if words == TRAIN:
            run_train(args.config, given_values(TrainConfig, args))
        else:
            config_type, run = COMMANDS[words]
            run(config_from_args(config_type, args, " ".join(words)))
    except TrainingStopped as exc:  # asked to stop, and it did, resumably: not an error, not a success either
        print(f"blindbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except BlindbenchError as exc:
        print(f"blindbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `blindbench tables ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a path we were given cannot be written or read (a folder, no space, no rights)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"blindbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise  # any other RuntimeError is a bug: keep its traceback
        print("blindbench: error: out of memory (a smaller --batch, --tile or input image needs less)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blindbench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
