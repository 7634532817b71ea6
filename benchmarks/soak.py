"""The scale-out soak from the command line: two servers and two workers behind nginx on a
fresh PostgreSQL database and Redis, a mixed load with limits and budgets, a worker and a
server killed with SIGKILL mid-run and restarted, then the invariants as a table (exit status
1 if one fails). The harness itself is tests/system/soak_harness.py, whose short run is part
of `make test` (tests/system/test_soak_short.py).

    .venv/bin/python benchmarks/soak.py --duration 300
    .venv/bin/python benchmarks/soak.py --duration 120 --root /tmp/soak   # keep the logs

Needs what `make test` needs: PostgreSQL on 127.0.0.1:5432 (user postgres), Redis on
127.0.0.1:6379 (database 9 by default, emptied; `--redis-db`), Debian's nginx.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "system")]  # the harness, its helpers

from soak_harness import Report, main, run  # noqa: E402

__all__ = ["Report", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
