"""Running the command line in-process with its output captured, for the CLI tests."""

from __future__ import annotations

import contextlib
import io

from holiwidget.cli import main


def run_cli(argv: list[object]) -> tuple[int, str, str]:
    """``main(argv)`` in-process, with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
