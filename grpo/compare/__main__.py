"""`python -m grpo.compare`: see grpo.compare."""

from grpo.compare.run import main

raise SystemExit(main())
