import sys

from pipeline.cli import main
from pipeline.core.interrupt import exit_within

code = main()
exit_within(code)  # the interpreter's exit hooks (Prefect's among them) get a deadline
sys.exit(code)
