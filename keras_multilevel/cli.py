"""The ``keras-multilevel`` command line: long jobs behind one entry point.

Sub-commands are registered by the module that owns them; each registrar
adds its parser and sets ``func`` to the function that runs it.
"""

import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-multilevel",
        description="Multilevel training for Keras: demo, benchmarks, PDE datasets.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from keras_multilevel import demo
    from keras_multilevel_datasets import cli as datasets_cli

    demo.register_cli(commands)
    datasets_cli.register(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
