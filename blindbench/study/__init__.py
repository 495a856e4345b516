"""The user study (issue #6): blind A/B sheets from eval outputs, a local page to answer them, Table 2.

``make`` (:mod:`.sheets`) → ``serve`` (:mod:`.server`, answers in SQLite) or any survey tool → ``score``
(:mod:`.score`). The steps are linked only by the files in the study folder.
"""

from __future__ import annotations

from blindbench.study.answers import (
    AnswerStore,
    Checked,
    check_answer_store,
    check_answers_csv,
    read_answer_store,
    read_answers_csv,
)
from blindbench.study.config import StudyMakeConfig, StudyScoreConfig, StudyServeConfig
from blindbench.study.score import (
    binomial_p_two_sided,
    run_study_score,
    score_study,
    table2_markdown,
    table2_rows,
    wilson_interval,
    write_table2_csv,
)
from blindbench.study.server import StudyServer, run_study_serve
from blindbench.study.sheets import load_key, load_study, make_study, run_study_make

__all__ = [
    "AnswerStore",
    "Checked",
    "StudyMakeConfig",
    "StudyScoreConfig",
    "StudyServeConfig",
    "StudyServer",
    "binomial_p_two_sided",
    "check_answer_store",
    "check_answers_csv",
    "load_key",
    "load_study",
    "make_study",
    "read_answer_store",
    "read_answers_csv",
    "run_study_make",
    "run_study_score",
    "run_study_serve",
    "score_study",
    "table2_markdown",
    "table2_rows",
    "wilson_interval",
    "write_table2_csv",
]
