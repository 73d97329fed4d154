"""``ocilab workshop up|status|reset|down``: a JupyterHub for a room of learners (run as root)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ocilab.present.text import print_json, table

EXIT_OK = 0


def register(commands: Any) -> None:
    """Add ``workshop`` and its four actions to the CLI's subparsers."""
    from ocilab.present.registry_commands import port

    workshop = commands.add_parser("workshop", help="a JupyterHub on this machine for a room of learners (as root)")
    actions = workshop.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="create the learners, set up the hub and start it")
    up.add_argument("--learners", type=int, required=True, metavar="N", help="how many learners (users PREFIX1..N)")
    up.add_argument("--password", metavar="P", help="the shared password (default: a new random one, printed)")
    up.add_argument("--port", type=port, default=8000, metavar="P", help="the port learners connect to (8000)")
    up.add_argument("--ip", default="0.0.0.0", help="the address the hub listens on (0.0.0.0: every interface)")
    up.add_argument("--prefix", default="learner", help="learners' user names are PREFIX1..PREFIXN (learner)")
    up.add_argument("--notebooks", type=Path, metavar="DIR", help="the lessons to copy (default: the kit's)")
    _options(up)
    up.set_defaults(handler=_up)

    status = actions.add_parser("status", help="learners, their servers, registries and ports")
    _options(status)
    status.set_defaults(handler=_status)

    reset = actions.add_parser("reset", help="every learner back to the start of the lessons (their work is lost)")
    reset.add_argument("--notebooks", type=Path, metavar="DIR", help="the lessons to copy (default: the kit's)")
    _options(reset)
    reset.set_defaults(handler=_reset)

    down = actions.add_parser("down", help="stop the hub, the learners' servers, registries and processes")
    down.add_argument("--purge", action="store_true", help="also delete the learner accounts and homes it created")
    _options(down)
    down.set_defaults(handler=_down)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, metavar="DIR", help="the workshop's directory (/opt/ocilab-workshop)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _root(args: argparse.Namespace) -> Path:
    from ocilab.workshop import default_root

    return Path(args.root) if args.root is not None else default_root()


def _up(args: argparse.Namespace) -> int:
    from ocilab.workshop import up

    record, password = up(
        args.learners, _root(args), args.password, args.port, args.ip, args.prefix, args.notebooks
    )  # fmt: skip
    names = [learner.name for learner in record.learners]
    if args.json:
        print_json({"url": record.url, "password": password, "learners": names, "root": record.root})
        return EXIT_OK
    print(f"url       {record.url}  (on every interface)" if record.ip == "0.0.0.0" else f"url       {record.url}")
    print(f"password  {password}")
    print(f"learners  {', '.join(names)}")
    print(f"hub log   {record.hub_dir / 'jupyterhub.log'}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from ocilab.workshop import status

    document = status(_root(args))
    if args.json:
        print_json(document)
        return EXIT_OK
    hub = document["hub"]
    print(f"url  {document['url']}  hub {'running (pid ' + str(hub['pid']) + ')' if hub['running'] else 'stopped'}")
    rows = [
        [
            learner["name"],
            learner["server"],
            str(learner["processes"]),
            " ".join(registry["url"] for registry in learner["registries"]) or "-",
            " ".join(map(str, learner["ports"])) or "-",
        ]
        for learner in document["learners"]
    ]
    print(table(["LEARNER", "SERVER", "PROCESSES", "REGISTRIES", "PORTS"], rows))
    return EXIT_OK


def _reset(args: argparse.Namespace) -> int:
    from ocilab.workshop import reset

    record = reset(_root(args), args.notebooks)
    names = [learner.name for learner in record.learners]
    if args.json:
        print_json({"reset": names})
    else:
        print(f"reset {len(names)} learners: servers stopped, homes back at the start of the lessons")
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from ocilab.workshop import down

    record = down(_root(args), purge=args.purge)
    if args.json:
        print_json({"stopped": True, "purged": args.purge, "root": record.root})
    elif args.purge:
        print(f"stopped the workshop in {record.root} and removed its learners, their homes and what it installed")
    else:
        print(f"stopped the workshop in {record.root}; `--purge` also removes the learners and their homes")
    return EXIT_OK
