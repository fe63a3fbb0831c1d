"""Command line: `python -m solution pack` and `python -m solution check`.

`pack` writes dist/ActiveCampaignBridge_<version>.zip and ..._managed.zip. `check` validates
those zips (or the ones given with --zip) and exits 1 when anything would break an import.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from solution.check import check_zip
from solution.layout import (
    DEFAULT_XSD_DIR,
    DIST_DIR,
    REPO_ROOT,
    SRC_DIR,
    VERSION_FILE,
    WEBRESOURCES_DIR,
    LayoutError,
    read_version,
    zip_file_name,
)
from solution.pack import pack


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solution", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    pack_cmd = commands.add_parser("pack", help="build the unmanaged and managed zips")
    pack_cmd.add_argument("--src", type=Path, default=SRC_DIR, help="unpacked solution source")
    pack_cmd.add_argument("--webresources", type=Path, default=WEBRESOURCES_DIR)
    pack_cmd.add_argument("--dist", type=Path, default=DIST_DIR, help="output folder")
    pack_cmd.add_argument("--version-file", type=Path, default=VERSION_FILE)
    check_cmd = commands.add_parser("check", help="validate solution zips")
    check_cmd.add_argument(
        "--zip", type=Path, action="append", dest="zips",
        help="zip to check (repeatable); default: both zips of VERSION in --dist",
    )  # fmt: skip
    check_cmd.add_argument("--dist", type=Path, default=DIST_DIR)
    check_cmd.add_argument("--version-file", type=Path, default=VERSION_FILE)
    check_cmd.add_argument(
        "--xsd-dir", type=Path, default=DEFAULT_XSD_DIR,
        help=f"Microsoft's solution XSDs (default {DEFAULT_XSD_DIR.relative_to(REPO_ROOT.parent)}"
        " beside the repository); schema checks are skipped when absent",
    )  # fmt: skip
    return parser


def _pack(args: argparse.Namespace) -> int:
    for path in pack(args.src, args.webresources, args.dist, args.version_file):
        print(f"wrote {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    zips = args.zips
    if not zips:
        version = read_version(args.version_file)
        zips = [args.dist / zip_file_name(version, managed) for managed in (False, True)]
    failed = False
    for path in zips:
        if not path.is_file():
            print(f"{path}: missing; run `python -m solution pack` first", file=sys.stderr)
            failed = True
            continue
        report = check_zip(path, args.xsd_dir)
        for note in report.notes:
            print(f"note: {note}")
        if report.ok:
            print(report.summary())
        else:
            failed = True
            for problem in report.problems:
                print(f"{path.name}: {problem}", file=sys.stderr)
            print(f"{path}: {len(report.problems)} problem(s)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _pack(args) if args.command == "pack" else _check(args)
    except LayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
