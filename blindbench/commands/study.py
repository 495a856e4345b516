"""``blindbench study make``, ``serve`` and ``score``: their configs (one frozen dataclass per command), and the
runs (imported inside, from :mod:`blindbench.study`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blindbench.errors import ConfigError
from blindbench.options import option as _option
from blindbench.options import progress_option

PORT_MAX = 65535


def check_port(port: int) -> int:
    """``port`` when it is a TCP port number, 0 to 65535 (0: any free port); else a one-line ConfigError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= PORT_MAX:
        raise ConfigError(f"--port must be an integer from 0 to {PORT_MAX} (0: any free port), got {port!r}")
    return port


def _study_folder() -> Any:
    """The positional ``STUDY`` of serve and score: a folder written by ``study make``."""
    return _option("", "study folder (from `blindbench study make`)", positional=True)


@dataclass(frozen=True)
class StudyMakeConfig:
    """Draw blind A/B questionnaires (sheets) from saved eval outputs; the answer key goes to a separate file."""

    runs: str = _option("", "folder of eval runs, searched recursively (each with samples.csv and images/<key>.png)")
    method: str = _option("vcn", "the method every question shows (one side)")
    against: str = _option("ca,gmc,pc,gc", "comma-separated opponents (the other side)")
    sets: str = _option("", "comma-separated test sets (default: every set where all opponents have images)")
    sheets: int = _option(12, "number of sheets (one per participant by default)")
    pairs: int = _option(40, "questions per sheet")
    participants: int = _option(0, "participant ids to issue, dealt round-robin over sheets (0: one per sheet)")
    seed: int = _option(0, "seed for sample choice, sides and question order")
    show_input: bool = _option(True, "show the damaged input above each pair when the eval saved inputs/<key>.png")
    html: bool = _option(False, "also write printable HTML sheets (print/sheet-NN.html)")
    out: str = _option("", "new study folder (default <data>/studies/<method>)")
    progress: bool = progress_option()


@dataclass(frozen=True)
class StudyServeConfig:
    """Serve a study as a local web page: one pair at a time, answers stored in <study>/answers.sqlite."""

    study: str = _study_folder()
    host: str = _option("127.0.0.1", "address to bind; anything but 127.0.0.1 exposes the page to the network")
    port: int = _option(8765, "TCP port, 0 to 65535 (0: any free port)")

    def __post_init__(self) -> None:
        check_port(self.port)


@dataclass(frozen=True)
class StudyScoreConfig:
    # The first docstring line is argparse help (%-formatted), so no bare percent sign: "95 percent" (a "%%"
    # would show doubled in the command's own description, which argparse prints unformatted).
    """Score a study: answers + key → Table 2 (share preferring the method, Wilson 95 percent CI, exact binomial p)."""

    study: str = _study_folder()
    answers: str = _option("", "CSV from another survey tool (sheet,question,choice); default: the served answers")
    out: str = _option("", "output CSV (default <study>/table2.csv)")


def run_study_make(cfg: StudyMakeConfig) -> None:
    from blindbench.study import run_study_make

    run_study_make(cfg)


def run_study_serve(cfg: StudyServeConfig) -> None:
    from blindbench.study import run_study_serve

    run_study_serve(cfg)


def run_study_score(cfg: StudyScoreConfig) -> None:
    from blindbench.study import run_study_score

    run_study_score(cfg)
