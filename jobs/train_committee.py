"""Ray job entry point: train and score the committee on the cluster this job runs in.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train_committee.py --preset seed --output /shared/runs

Takes the same options as ``committee run`` (see ``--help``). Under ``ray job submit`` Ray
sets RAY_ADDRESS, so the job joins that cluster; run directly, it starts a local Ray.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from committee.app.cli import (  # noqa: E402
    OneLineParser,
    add_run_arguments,
    as_process,
    run_command,
)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = OneLineParser(
        prog="train_committee.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # defaults are RunOptions' (committee.app.options)
    )
    add_run_arguments(parser)
    if argv is None:  # this process is the job's driver: signals handled as committee's
        return as_process(lambda: run_command(parser.parse_args(None)))
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
