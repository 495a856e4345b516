"""The ``blindbench study`` commands' configs; they live in :mod:`blindbench.commands.study` (light, for the CLI's
--help) and are imported from there."""

from __future__ import annotations

from blindbench.commands.study import PORT_MAX, StudyMakeConfig, StudyScoreConfig, StudyServeConfig, check_port

__all__ = ["PORT_MAX", "StudyMakeConfig", "StudyScoreConfig", "StudyServeConfig", "check_port"]
