"""``python -m benchmarks``: bootstrap the suite's own dependencies, then run it."""

from benchmarks.run import main

raise SystemExit(main())
