"""Every command's config dataclass, in light modules: nothing here imports torch, pandas or OpenCV at import.

``blindbench.cli`` builds each command's flags (and ``--help``) from these dataclasses; a command's run function
imports the heavy module that does the work only when it runs. Modules that do the work import their config from
here (``blindbench.evaluate`` takes :class:`~blindbench.commands.eval.EvalConfig` from ``commands.eval``).
"""
