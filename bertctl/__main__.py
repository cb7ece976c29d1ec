"""`python -m bertctl` runs the command line."""

from bertctl.cli import main

main()
