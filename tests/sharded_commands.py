"""Run `hififace` commands one after another in this process, for `accelerate launch` in
tests/test_sharding.py (one launch, one start-up, for several commands).

    accelerate launch ... tests/sharded_commands.py CODES.json '["swap", ...]' '["evaluate", ...]'

Every process runs every command (each takes its share inside); the main process writes the exit
codes to CODES.json. Exits with 0 so that the test reads the codes, not the launcher's status.
"""

import json
import os
import sys

from hififace.cli import main
from hififace.sharding import shut_down

codes = [main(json.loads(argv)) for argv in sys.argv[2:]]
if os.environ.get("RANK", "0") == "0":
    with open(sys.argv[1], "w") as f:
        json.dump({"codes": codes, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}, f)
shut_down()  # gloo torn down before exit, as `python -m hififace` does
