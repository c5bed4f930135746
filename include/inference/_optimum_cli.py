"""``optimum-cli export openvino`` without the ``optimum-cli`` front end.

``optimum-cli`` imports the command registration modules of every optimum plugin it finds,
and one stale plugin breaks it for all commands. This runs optimum-intel's own export
command class (``OVExportCommand``, the code behind ``optimum-cli export openvino``) with
the same arguments, and nothing else::

    python -m include.inference._optimum_cli --model DIR --task text-generation-with-past OUT
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``optimum-cli export openvino`` arguments and run the export."""
    try:
        from optimum.commands.export.openvino import OVExportCommand
    except ImportError as err:
        print(
            f"optimum-intel cannot export here ({err}); it needs optimum-intel>=2.2 with a matching "
            "transformers (see include/inference/export_llm.py)",
            file=sys.stderr,
        )
        return 2
    parser = argparse.ArgumentParser(prog="optimum-cli export")
    OVExportCommand(parser.add_subparsers())
    args = parser.parse_args(["openvino", *(sys.argv[1:] if argv is None else argv)])
    args.func(args).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
