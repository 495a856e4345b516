"""``python -m blindbench``: the same command line as ``blindbench``."""

from blindbench.runtime import main

raise SystemExit(main())
