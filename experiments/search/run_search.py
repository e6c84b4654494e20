"""Runs `robntk search` (robntk.commands.search) with the arguments given, for use before the
command is wired into robntk.cli: `python experiments/search/run_search.py <robntk search args>`."""

import argparse
import sys

from robntk.commands import search as cmd

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="robntk search")
    parser.add_argument("--data-dir", default=None)
    cmd.add_arguments(parser)
    sys.exit(cmd.run(parser.parse_args()))
