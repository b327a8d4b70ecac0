"""`qms-panel image build`: build the agent image from image/Dockerfile, with progress on stderr."""

from __future__ import annotations

import sys
from pathlib import Path

from core import image
from core.errors import UsageError
from core.settings import check_http_url
from tui.cli_common import print_json

NAME = "image"
HELP = "build the agent image (image/Dockerfile)"
USES_SETTINGS = False


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help=f"build the agent image (tag {image.DEFAULT_TAG!r} by default)",
                           description="Build the agent image through the Docker engine, with host networking "
                                       "so apt and npm reach their mirrors. CA certificates in image/certs/*.crt "
                                       "and --ca-cert files are trusted during the build and in the image.")
    build.add_argument("--base-image", metavar="IMAGE", default=image.DEFAULT_BASE_IMAGE,
                       help=f"Debian bookworm base image (default: {image.DEFAULT_BASE_IMAGE})")
    build.add_argument("--tag", metavar="TAG", default=image.DEFAULT_TAG,
                       help=f"tag of the built image (default: {image.DEFAULT_TAG})")
    build.add_argument("--mcp-url", metavar="URL", default=image.DEFAULT_MCP_URL,
                       help=f"MCP URL baked into /.mcp.json (default: {image.DEFAULT_MCP_URL})")
    build.add_argument("--ca-cert", metavar="FILE", dest="ca_certs", action="append", type=Path, default=[],
                       help="extra CA certificate or bundle (PEM) to trust; repeatable")
    build.add_argument("--json", action="store_true", help="print the result as JSON (progress stays on stderr)")


def run(args) -> int:
    try:
        check_http_url(args.mcp_url)
    except ValueError as exc:
        raise UsageError(f"--mcp-url: {exc}") from None
    built = image.build_image(tag=args.tag, base_image=args.base_image, mcp_url=args.mcp_url,
                              ca_files=args.ca_certs, on_progress=_progress)
    if args.json:
        print_json(built)
    else:
        print(f"built {built.tag} ({built.image_id[:19]}, {built.size_bytes / 1e6:.0f} MB) in {built.seconds:.0f} s"
              f" on {built.base_image}; /.mcp.json -> {built.mcp_url}")
    return 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
