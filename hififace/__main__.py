import sys

from hififace.cli import main

sys.exit(main())
