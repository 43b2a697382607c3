"""`python -m airq_dev.simulator --host ... --port ... --locations N --seed S`: see `runner` for every flag."""

import sys

from airq_dev.simulator.runner import main

sys.exit(main())
