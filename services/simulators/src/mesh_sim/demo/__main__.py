"""`python -m mesh_sim.demo`."""

import sys

from mesh_sim.demo import main

sys.exit(main())
