import sys

from hififace.cli import main
from hififace.sharding import shut_down

code = main()
shut_down()  # under `accelerate launch -m hififace ...`: every process leaves together
sys.exit(code)
