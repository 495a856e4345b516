"""``blindbench corpus build`` and ``corpus pairs``: their configs, and the runs (heavy imports inside)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from blindbench.errors import BlindbenchError
from blindbench.options import check_workers, option, progress_option, workers_option


@dataclass(frozen=True)
class CorpusBuildConfig:
    """Build a corpus: the embedded ``photos`` one, or one from your own folders (FFHQ, Places2, ...)."""

    name: str = option("photos", "corpus name (folder under <data>/corpora)")
    clean: str = option("", "folder of clean images (recursive); omit for the embedded photos corpus")
    fill: str = option("", "folder of fill images (recursive), a different source than --clean")
    mode: str = option(
        "tiles",
        "tiles (multi-scale crops + texture filter) or center (short side to --crop)",
        choices=("tiles", "center"),
    )
    crop: int = option(256, "crop side in pixels")
    test_every: int = option(5, "every N-th source (sorted) is a test source; 1 = all test")
    val_every: int = option(8, "of the other sources, every N-th is a validation source; 0 = no validation split")
    workers: int = workers_option()
    update_manifest: bool = option(False, "rewrite manifests/photos.corpus.json instead of checking against it")
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        check_workers(self.workers)


@dataclass(frozen=True)
class CorpusPairsConfig:
    """Build a corpus of real (damaged, clean) photo pairs matched by file name; the mask is derived."""

    name: str = option("", "corpus name (folder under <data>/corpora), e.g. raindrop")
    input: str = option("", "folder of damaged photos I")
    target: str = option("", "folder of their clean photos O, same file names (any image suffix)")
    crop: int = option(256, "crop side in pixels (the set's size)")
    mode: str = option("center", "center (one crop per pair) or tiles (a grid at several scales)",
                       choices=("center", "tiles"))
    threshold: int = option(20, "mask: a pixel is damaged where max over channels of |I - O| exceeds this")
    opening: int = option(3, "mask: side of the square opening that removes specks (1: none)")
    test_every: int = option(5, "every n-th pair (by name) is a test pair")
    val_every: int = option(0, "of the rest, every n-th is a validation pair (0: none)")
    workers: int = workers_option()
    progress: bool = progress_option()

    def __post_init__(self) -> None:
        check_workers(self.workers)


def run_corpus_build(cfg: CorpusBuildConfig) -> None:
    from blindbench.corpus import CorpusConfig, build_corpus, build_embedded_corpus, folder_sources

    if cfg.clean or cfg.fill:
        if not (cfg.clean and cfg.fill):
            raise BlindbenchError("give both --clean and --fill folders (or neither, for the embedded corpus)")
        if cfg.name == "photos":
            raise BlindbenchError("--name photos is the embedded corpus: name your own corpus, e.g. --name ffhq")
        config = CorpusConfig(name=cfg.name, crop=cfg.crop, mode=cfg.mode, test_every=cfg.test_every,
                              val_every=cfg.val_every)
        manifest = build_corpus(folder_sources(cfg.clean, cfg.fill), config, workers=cfg.workers, progress=cfg.progress)
    else:
        manifest = build_embedded_corpus(update_manifest=cfg.update_manifest, workers=cfg.workers,
                                         progress=cfg.progress)
    print(corpus_summary(manifest))


def corpus_summary(manifest: dict[str, Any]) -> str:
    """A corpus manifest in a line or two: sources per role and split, crops per array, sources without crops."""
    counts = ", ".join(f"{key} {info['count']}" for key, info in manifest["arrays"].items())
    sources = Counter((s["role"], s["split"]) for s in manifest["sources"])
    lines = [
        f"corpus {manifest['name']}: {len(manifest['sources'])} sources "
        f"({', '.join(f'{r}-{s} {n}' for (r, s), n in sorted(sources.items()))}); crops: {counts}"
    ]
    if manifest["problems"]:
        lines.append(f"  {len(manifest['problems'])} sources gave no crops: " + "; ".join(manifest["problems"][:5]))
    return "\n".join(lines)


def run_corpus_pairs(cfg: CorpusPairsConfig) -> None:
    from blindbench.pairs import run_corpus_pairs as run

    run(cfg)
