from hififace.cli import run

run()
