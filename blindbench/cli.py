"""The ``blindbench`` command line: one frozen config dataclass per command; flags come from its fields.

Every user error is printed as one line (``blindbench: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from blindbench.compare import CompareConfig
from blindbench.demo import DemoConfig, run_demo
from blindbench.errors import BlindbenchError
from blindbench.evaluate import EvalConfig
from blindbench.export import ExportConfig
from blindbench.inpainting import InpaintConfig
from blindbench.options import option as _option
from blindbench.pairs import CorpusPairsConfig, run_corpus_pairs
from blindbench.plot import PlotConfig, run_plot
from blindbench.runtime import active_allocator
from blindbench.study.config import StudyMakeConfig, StudyScoreConfig, StudyServeConfig
from blindbench.tables import TablesConfig
from blindbench.zoo import ZooPublishConfig


def _check_workers(workers: int) -> None:
    if workers == 0 or workers < -1 or workers > 1024:
        raise BlindbenchError(f"--workers must be -1 (all cores) or in [1, 1024], got {workers}")


@dataclass(frozen=True)
class CorpusBuildConfig:
    """Build a corpus: the embedded ``photos`` one, or one from your own folders (FFHQ, Places2, ...)."""

    name: str = _option("photos", "corpus name (folder under <data>/corpora)")
    clean: str = _option("", "folder of clean images (recursive); omit for the embedded photos corpus")
    fill: str = _option("", "folder of fill images (recursive), a different source than --clean")
    mode: str = _option(
        "tiles",
        "tiles (multi-scale crops + texture filter) or center (short side to --crop)",
        choices=("tiles", "center"),
    )
    crop: int = _option(256, "crop side in pixels")
    test_every: int = _option(5, "every N-th source (sorted) is a test source; 1 = all test")
    val_every: int = _option(8, "of the other sources, every N-th is a validation source; 0 = no validation split")
    workers: int = _option(-1, "parallel workers (-1: all cores)")
    update_manifest: bool = _option(False, "rewrite manifests/photos.corpus.json instead of checking against it")

    def __post_init__(self) -> None:
        _check_workers(self.workers)


@dataclass(frozen=True)
class GenerateConfig:
    """Write a benchmark set's WebDataset shards and lock; an interrupted run resumes."""

    set: str = _option("photos-demo", "set name (manifests/<name>.toml) or a path to a .toml manifest")
    out: str = _option("", "output folder (default <data>/sets/<name>)")
    workers: int = _option(-1, "parallel workers (-1: all cores, or all of a cluster's); the bytes do not depend on it")
    backend: str = _option("loky", "joblib backend: loky, threading, multiprocessing, dask (pip install "
                           "'blindbench[dask]') or ray ('blindbench[ray]'); the bytes do not depend on it")
    scheduler: str = _option("", "--backend dask: the dask.distributed scheduler, e.g. tcp://host:8786 (default: "
                             "a local cluster of --workers processes)")
    address: str = _option("", "--backend ray: the ray cluster, e.g. auto or ray://host:10001 (default: "
                           "$RAY_ADDRESS, else a local ray)")
    overwrite: bool = _option(False, "regenerate shards made from another version of the manifest (else an error)")

    def __post_init__(self) -> None:
        from blindbench.shards import check_backend

        _check_workers(self.workers)
        if self.scheduler and self.backend != "dask":
            raise BlindbenchError(f"--scheduler is the dask scheduler: use it with --backend dask, not {self.backend}")
        if self.address and self.backend != "ray":
            raise BlindbenchError(f"--address is the ray cluster: use it with --backend ray, not {self.backend}")
        check_backend(self.backend)


@dataclass(frozen=True)
class VerifyConfig:
    """Check a set's shards against its lock (the committed one when there is one)."""

    set: str = _option("photos-demo", "set name or manifest path")
    out: str = _option("", "folder holding the shards (default <data>/sets/<name>)")
    lock: str = _option(
        "", "lock file to check against (default: committed manifests/<name>.lock.json, else the one beside the shards)"
    )


@dataclass(frozen=True)
class SheetConfig:
    """Save a contact sheet PNG of a set: one sample per pattern (input, M, M̃, N, target)."""

    set: str = _option("photos-demo", "set name or manifest path")
    out: str = _option("", "folder holding the shards (default <data>/sets/<name>)")
    png: str = _option("", "output PNG (default <shards folder>/<name>-contact-sheet.png)")
    per_pattern: int = _option(1, "samples shown per pattern")

    def __post_init__(self) -> None:
        if not 1 <= self.per_pattern <= 64:
            raise BlindbenchError(f"--per-pattern must be in [1, 64], got {self.per_pattern}")


@dataclass(frozen=True)
class ModelsConfig:
    """List the registered models: parameters, the paper's count, GMACs per image."""

    preset: str = _option("paper", "paper or tiny", choices=("paper", "tiny"))
    size: int = _option(256, "image side for the GMAC count (a multiple of 128, every model's size multiple)")

    def __post_init__(self) -> None:
        if self.size % 128 or not 128 <= self.size <= 4096:
            raise BlindbenchError(f"--size must be a multiple of 128 in [128, 4096], got {self.size}")


def add_config_arguments(parser: argparse.ArgumentParser, config: type, only_given: bool = False) -> None:
    """One ``--flag`` per dataclass field, typed and documented from the field.

    Field metadata may ask for ``positional=True`` (a ``tuple[str, ...]`` field takes one or more values) and a
    ``short`` alias such as ``-o``. With ``only_given``, flags the user did not give stay out of the namespace,
    so the values of a TOML file are not overwritten by defaults.
    """
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        kind = hints[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        is_tuple = typing.get_origin(kind) is tuple
        if f.metadata.get("positional"):
            nargs = "+" if is_tuple else None
            parser.add_argument(f.name, nargs=nargs, help=f.metadata.get("help", ""), metavar=f.name.upper())
            continue
        flags = ["--" + f.name.replace("_", "-")] + ([f.metadata["short"]] if "short" in f.metadata else [])
        default = argparse.SUPPRESS if only_given else f.default
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


def config_from_args(config: type, args: argparse.Namespace):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config)}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return config(**values)


def run_corpus_build(cfg: CorpusBuildConfig) -> None:
    from blindbench.corpus import CorpusConfig, build_corpus, build_embedded_corpus, folder_sources

    if cfg.clean or cfg.fill:
        if not (cfg.clean and cfg.fill):
            raise BlindbenchError("give both --clean and --fill folders (or neither, for the embedded corpus)")
        if cfg.name == "photos":
            raise BlindbenchError("--name photos is the embedded corpus: name your own corpus, e.g. --name ffhq")
        config = CorpusConfig(name=cfg.name, crop=cfg.crop, mode=cfg.mode, test_every=cfg.test_every,
                              val_every=cfg.val_every)
        manifest = build_corpus(folder_sources(cfg.clean, cfg.fill), config, workers=cfg.workers)
    else:
        manifest = build_embedded_corpus(update_manifest=cfg.update_manifest, workers=cfg.workers)
    print(_corpus_summary(manifest))


def _corpus_summary(manifest: dict) -> str:
    counts = ", ".join(f"{key} {info['count']}" for key, info in manifest["arrays"].items())
    sources = Counter((s["role"], s["split"]) for s in manifest["sources"])
    lines = [
        f"corpus {manifest['name']}: {len(manifest['sources'])} sources "
        f"({', '.join(f'{r}-{s} {n}' for (r, s), n in sorted(sources.items()))}); crops: {counts}"
    ]
    if manifest["problems"]:
        lines.append(f"  {len(manifest['problems'])} sources gave no crops: " + "; ".join(manifest["problems"][:5]))
    return "\n".join(lines)


def run_generate(cfg: GenerateConfig) -> None:
    from blindbench.sets import load_set
    from blindbench.shards import generate_set

    spec = load_set(cfg.set)
    report = generate_set(spec, cfg.out or None, workers=cfg.workers, backend=cfg.backend, overwrite=cfg.overwrite,
                          address=cfg.scheduler or cfg.address)
    total = sum(e["bytes"] for e in report.lock["shards"])
    print(
        f"set {spec.name}: {spec.count} samples in {spec.shard_count} shards ({total / 2**20:.1f} MiB) at "
        f"{report.out_dir}; {report.written} written, {report.kept} kept from an earlier run"
    )


def run_verify(cfg: VerifyConfig) -> None:
    from blindbench.sets import load_set
    from blindbench.shards import verify_set

    spec = load_set(cfg.set)
    report = verify_set(spec, cfg.out or None, Path(cfg.lock) if cfg.lock else None)
    if not report.ok:
        raise BlindbenchError(f"set {spec.name} does not match {report.lock_path}: " + "; ".join(report.problems))
    print(f"set {spec.name}: {report.checked} shards match {report.lock_path}")


def run_sheet(cfg: SheetConfig) -> Path:
    from blindbench.figures import contact_sheet
    from blindbench.imageio import decode_png
    from blindbench.loader import shard_urls
    from blindbench.paths import set_dir
    from blindbench.sets import load_set
    from blindbench.shards import iter_shard_samples

    spec = load_set(cfg.set)
    folder = Path(cfg.out) if cfg.out else set_dir(spec.name)
    wanted = dict.fromkeys(spec.patterns, cfg.per_pattern)
    rows = []
    for url in shard_urls(spec, folder):
        for raw in iter_shard_samples(url):
            pattern = json.loads(raw["json"])["pattern"]
            if wanted.get(pattern, 0) > 0:
                wanted[pattern] -= 1
                try:
                    rows.append(
                        {
                            "pattern": pattern,
                            "input": decode_png(raw["input.png"]),
                            "mask": decode_png(raw["mask.png"], grey=True),
                            "soft_mask": decode_png(raw["soft_mask.png"], grey=True),
                            "fill": decode_png(raw["fill.png"]),
                            "target": decode_png(raw["target.png"]),
                        }
                    )
                except (KeyError, ValueError) as exc:
                    raise BlindbenchError(f"bad sample {raw.get('__key__')} in {url}: {exc} (regenerate the set)"
                                          ) from None  # fmt: skip
        if not any(wanted.values()):
            break
    order = {name: i for i, name in enumerate(spec.patterns)}
    rows.sort(key=lambda row: order[row["pattern"]])
    png = Path(cfg.png) if cfg.png else folder / f"{spec.name}-contact-sheet.png"
    contact_sheet(rows, png, title=f"{spec.name}: one sample per corruption pattern")
    print(f"contact sheet: {png}")
    return png


def run_models(cfg: ModelsConfig) -> None:
    from blindbench.models import model_names, summarize

    print(f"| model | parameters | paper | deviation | GMAC @ {cfg.size}² | description |")
    print("|---|---:|---:|---:|---:|---|")
    for name in model_names():
        s = summarize(name, cfg.preset, cfg.size)
        paper = f"{s.paper_params / 1e6:.2f}M" if s.paper_params and cfg.preset == "paper" else "–"
        deviation = f"{100 * s.deviation:+.1f}%" if s.deviation is not None and cfg.preset == "paper" else "–"
        print(f"| {name} | {s.params:,} | {paper} | {deviation} | {s.gmacs:.2f} | {s.description} |")


def run_eval_command(cfg) -> None:
    from blindbench.evaluate import run_eval, summary_line

    print(summary_line(cfg, run_eval(cfg)))


def run_tables_command(cfg: TablesConfig) -> None:
    from blindbench.tables import run_tables

    for name, path in run_tables(cfg).items():
        print(f"{name}: {path}")


def run_compare_command(cfg: CompareConfig) -> None:
    from blindbench.compare import run_compare

    print(f"comparison figure: {run_compare(cfg)}")


def run_inpaint_command(cfg: InpaintConfig) -> None:
    from blindbench.inpainting import run_inpaint

    written = run_inpaint(cfg)
    print(f"inpainted {len(written)} image(s) into {cfg.out} (restored, .mask.png, .overlay.png)")


def run_export_command(cfg: ExportConfig) -> None:
    from blindbench.export import run_export

    run_export(cfg)


def run_zoo_publish_command(cfg: ZooPublishConfig) -> None:
    from blindbench.zoo import run_publish

    print(f"zoo entry: {run_publish(cfg)}")


def run_study_make_command(cfg: StudyMakeConfig) -> None:
    from blindbench.study import run_study_make

    run_study_make(cfg)


def run_study_serve_command(cfg: StudyServeConfig) -> None:
    from blindbench.study import run_study_serve

    run_study_serve(cfg)


def run_study_score_command(cfg: StudyScoreConfig) -> None:
    from blindbench.study import run_study_score

    run_study_score(cfg)


def _train_config_type() -> type:
    from blindbench.train import TrainConfig

    return TrainConfig


def run_train_command(args: argparse.Namespace) -> None:
    from blindbench.train import load_config, run_train

    overrides = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "config")}
    run_dir = run_train(load_config(args.config, overrides))
    print(f"run finished: {run_dir}")


COMMANDS: dict[tuple[str, ...], tuple[type, Callable]] = {
    ("corpus", "build"): (CorpusBuildConfig, run_corpus_build),
    ("corpus", "pairs"): (CorpusPairsConfig, run_corpus_pairs),
    ("generate",): (GenerateConfig, run_generate),
    ("verify",): (VerifyConfig, run_verify),
    ("sheet",): (SheetConfig, run_sheet),
    ("models",): (ModelsConfig, run_models),
    ("demo",): (DemoConfig, run_demo),
    ("eval",): (EvalConfig, run_eval_command),
    ("tables",): (TablesConfig, run_tables_command),
    ("compare",): (CompareConfig, run_compare_command),
    ("inpaint",): (InpaintConfig, run_inpaint_command),
    ("export",): (ExportConfig, run_export_command),
    ("zoo", "publish"): (ZooPublishConfig, run_zoo_publish_command),
    ("study", "make"): (StudyMakeConfig, run_study_make_command),
    ("study", "serve"): (StudyServeConfig, run_study_serve_command),
    ("study", "score"): (StudyScoreConfig, run_study_score_command),
    ("plot",): (PlotConfig, run_plot),
}


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
    parser = _Parser(
        prog="blindbench", description="Blind image inpainting toolkit (VCN and baselines)."
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, (config, _) in COMMANDS.items():
        doc = (config.__doc__ or "").strip().splitlines()[0]
        if len(words) == 1:
            target = sub.add_parser(words[0], help=doc, description=doc)
        else:
            if words[0] not in groups:
                group = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                                                        parser_class=_Parser)
            target = groups[words[0]].add_parser(words[1], help=doc, description=doc)
        add_config_arguments(target, config)
        target.set_defaults(_words=words)
    train_config = _train_config_type()
    doc = "Train a model: two-stage (separate, then joint) as the paper; flags override --config TOML."
    train = sub.add_parser("train", help=doc, description=doc)
    train.add_argument("--config", default=None, help="TOML file of train options (flat keys)")
    add_config_arguments(train, train_config, only_given=True)
    train.set_defaults(_words=("train",))
    return parser


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or torch's allocator failure (a RuntimeError on CPU, OutOfMemoryError on CUDA)."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args._words == ("train",):
            run_train_command(args)
        else:
            config_type, run = COMMANDS[args._words]
            run(config_from_args(config_type, args))
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
