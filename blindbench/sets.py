"""Benchmark-set definitions: ``manifests/<name>.toml`` read into a frozen `SetSpec`.

A set manifest names everything that decides its bytes: the corpus and how it is built, which crops are
clean and which fill, the count, size, recipes and seed. Example (``manifests/photos-demo.toml``)::

    name = "photos-demo"
    seed = 2020
    count = 48
    samples_per_shard = 16

    [corpus]
    name = "photos"          # the embedded corpus; user corpora give mode/clean/fill/test_every
    [clean]
    split = "test"
    [fill]
    split = "test"           # roles = ["clean", "fill"] pools both roles (as the training set does)

    [[recipes]]
    pattern = "real"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blindbench.corpus import ROLES, SPLITS, CorpusConfig
from blindbench.corruption import Recipe
from blindbench.errors import ConfigError, unknown
from blindbench.pairs import PAIR_PATTERN
from blindbench.paths import manifests_dir

_TOP_KEYS = {
    "name",
    "description",
    "seed",
    "count",
    "size",
    "samples_per_shard",
    "corpus",
    "clean",
    "fill",
    "recipes",
    "clean_order",
    "recipe_order",
    "kind",
}
KINDS = ("synthetic", "pairs")
_CORPUS_KEYS = {"name", "mode", "clean", "fill", "test_every", "val_every", "scales", "min_std",
                "min_laplacian"}


@dataclass(frozen=True)
class CorpusSpec:
    """How the set's corpus is made. ``clean``/``fill`` are folders (``$VAR`` expanded); empty for the embedded one."""

    name: str
    clean: str = ""
    fill: str = ""
    config: CorpusConfig = CorpusConfig()

    @property
    def embedded(self) -> bool:
        return not self.clean and not self.fill


@dataclass(frozen=True)
class SetSpec:
    """A benchmark or training set: what `blindbench generate` writes, sample by sample.

    Attributes:
        name: set name (shards are ``<name>-%06d.tar``).
        seed: set seed; sample ``i`` draws from a generator seeded by ``(seed, i)``.
        count: number of samples.
        size: image side (must equal the corpus crop).
        samples_per_shard: samples in each shard (the last may hold fewer).
        corpus: where clean and fill crops come from.
        clean_split / fill_split: which split of the corpus gives O and N.
        clean_roles / fill_roles: which corpus roles pool into O and into N (default: clean gives O, fill gives
            N). A training set may pool both roles on both sides; N then never comes from O's own photo.
        clean_order: ``permutation`` (sample i takes the i-th crop of a seeded permutation, cycling when
            ``count`` exceeds the crops) or ``random`` (each sample draws a crop, with replacement).
        recipes: corruption recipes.
        recipe_order: ``cycle`` (sample i uses recipe i mod n: equal counts per pattern, for benchmarks) or
            ``weighted`` (drawn by weight).
        kind: ``synthetic`` (O corrupted by the recipes) or ``pairs`` (real damaged/clean pairs of a corpus built
            by ``blindbench corpus pairs``, mask derived; the ``[clean]`` split picks the pairs, no recipes).
        sha256: hash of the manifest file's bytes (recorded in the lock).
    """

    name: str
    seed: int
    count: int
    size: int
    samples_per_shard: int
    corpus: CorpusSpec
    clean_split: str
    fill_split: str
    clean_order: str
    recipes: tuple[Recipe, ...]
    recipe_order: str = "weighted"
    clean_roles: tuple[str, ...] = ("clean",)
    fill_roles: tuple[str, ...] = ("fill",)
    kind: str = "synthetic"
    description: str = ""
    sha256: str = ""
    path: str = ""

    @property
    def patterns(self) -> tuple[str, ...]:
        """The pattern names its samples carry, in recipe order (a pairs set's samples are all ``paired``)."""
        return (PAIR_PATTERN,) if self.kind == "pairs" else tuple(r.name for r in self.recipes)

    @property
    def shard_count(self) -> int:
        return -(-self.count // self.samples_per_shard)

    def shard_range(self, shard: int) -> range:
        start = shard * self.samples_per_shard
        return range(start, min(start + self.samples_per_shard, self.count))

    def shard_name(self, shard: int) -> str:
        return f"{self.name}-{shard:06d}.tar"


def content_digest(spec: SetSpec) -> str:
    """sha256 of everything in ``spec`` that decides the shards' bytes (not the description, comments or path)."""
    fields = dataclasses.asdict(spec)
    for key in ("description", "sha256", "path"):
        fields.pop(key)
    if fields["kind"] == "synthetic":  # the default kind leaves the digests of sets made before kinds unchanged
        fields.pop("kind")
    for recipe in fields["recipes"]:  # likewise recipes that read no files
        if not recipe["files_sha256"]:
            recipe.pop("files_sha256")
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _expand(value: str) -> str:
    expanded = os.path.expandvars(value)
    if "$" in expanded:
        raise ConfigError(f"set the environment variable in {value!r} to the dataset folder")
    return expanded


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise unknown(f"key in {where}", key, allowed)


# Documented ranges of a manifest's numbers: far beyond any benchmark, and small enough that a typo fails at load
# instead of running out of memory or time (count = 10**12 once hung generate).
LIMITS = {"seed": 2**63 - 1, "count": 10_000_000, "size": 4096, "samples_per_shard": 100_000}


def _int(table: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"set manifest needs {key!r}")
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= LIMITS[key]:
        raise ConfigError(f"{key} must be an integer in [{minimum}, {LIMITS[key]}], got {value!r}")
    return value


def parse_set(data: Mapping[str, Any], sha256: str = "", path: str = "", expand_folders: bool = True) -> SetSpec:
    """Validate a parsed manifest; every unknown key or bad value is a one-line `ConfigError`."""
    _check_keys(data, _TOP_KEYS, "set manifest")
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ConfigError(f"set name must be 1-64 letters, digits, '-' or '_', got {name!r}")
    corpus_table = data.get("corpus", {})
    _check_keys(corpus_table, _CORPUS_KEYS, "[corpus]")
    if "name" not in corpus_table:
        raise ConfigError(f"set {name}: [corpus] needs a 'name'")
    config_keys = {k: v for k, v in corpus_table.items() if k in ("mode", "test_every", "val_every", "min_std",
                                                                          "min_laplacian")}
    if "scales" in corpus_table:
        scales = corpus_table["scales"]
        if not isinstance(scales, list):
            raise ConfigError(f"set {name}: [corpus] scales must be a list of short sides, got {scales!r}")
        config_keys["scales"] = tuple(scales)
    size = _int(data, "size", 256, 16)
    corpus = CorpusSpec(
        name=corpus_table["name"],
        clean=_expand(corpus_table.get("clean", "")) if expand_folders else corpus_table.get("clean", ""),
        fill=_expand(corpus_table.get("fill", "")) if expand_folders else corpus_table.get("fill", ""),
        config=CorpusConfig(name=corpus_table["name"], crop=size, **config_keys),
    )
    if bool(corpus.clean) != bool(corpus.fill):
        raise ConfigError(f"set {name}: [corpus] needs both 'clean' and 'fill' folders, or neither (embedded)")
    splits, roles = {}, {}
    for role in ("clean", "fill"):
        table = data.get(role, {})
        _check_keys(table, {"split", "roles"}, f"[{role}]")
        split = table.get("split", "test")
        if split not in SPLITS:
            raise unknown(f"{role} split", split, SPLITS)
        splits[role] = split
        pool = table.get("roles", [role])
        if (not isinstance(pool, list) or not pool or len(set(map(str, pool))) != len(pool)
                or not set(pool) <= set(ROLES)):
            raise ConfigError(f"set {name}: [{role}] roles must be a list of distinct roles out of "
                              f"{', '.join(ROLES)}, got {pool!r}")
        roles[role] = tuple(pool)
    kind = data.get("kind", "synthetic")
    if kind not in KINDS:
        raise unknown("set kind", kind, KINDS)
    recipes = data.get("recipes")
    if kind == "pairs":
        if recipes or "fill" in data:
            raise ConfigError(f"set {name}: a pairs set takes its damage from the pairs: no [[recipes]] or [fill]")
        if corpus.clean or corpus.fill or set(corpus_table) != {"name"}:
            raise ConfigError(f"set {name}: a pairs set names only its paired corpus: [corpus] name = ...")
        recipes = []
    elif not recipes:
        raise ConfigError(f"set {name}: at least one [[recipes]] entry is needed")
    clean_order = data.get("clean_order", "permutation")
    if clean_order not in ("permutation", "random"):
        raise unknown("clean_order", clean_order, ("permutation", "random"))
    recipe_order = data.get("recipe_order", "weighted")
    if recipe_order not in ("cycle", "weighted"):
        raise unknown("recipe_order", recipe_order, ("cycle", "weighted"))
    return SetSpec(
        name=name,
        seed=_int(data, "seed", None, 0),
        count=_int(data, "count", None, 1),
        size=size,
        samples_per_shard=_int(data, "samples_per_shard", 1000, 1),
        corpus=corpus,
        clean_split=splits["clean"],
        fill_split=splits["fill"],
        clean_roles=roles["clean"],
        fill_roles=roles["fill"],
        clean_order=clean_order,
        recipes=tuple(Recipe.from_dict(r) for r in recipes),
        recipe_order=recipe_order,
        kind=kind,
        description=str(data.get("description", "")),
        sha256=sha256,
        path=path,
    )


def load_set(name_or_path: str, expand_folders: bool = True) -> SetSpec:
    """Load ``manifests/<name>.toml`` (or a path to a .toml file)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = manifests_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = available_sets()
            raise unknown("set", name_or_path, known) if known else ConfigError(f"no set manifest {path}")
    if not path.is_file():
        raise ConfigError(f"set manifest not found: {path}")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"bad set manifest {path}: {exc}") from None
    return parse_set(data, hashlib.sha256(raw).hexdigest(), str(path), expand_folders)


def available_sets() -> list[str]:
    folder = manifests_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
