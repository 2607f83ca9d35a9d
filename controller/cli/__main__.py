"""`python -m controller.cli` is `labctl`."""

from controller.cli import main

main()
