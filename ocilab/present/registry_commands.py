"""The ``ocilab registry`` commands: ``up``, ``down``, ``status``, ``ls`` and ``gc`` for the kit's own registry.

Each works on one data directory (``--data``, default: the user's own, see
``registry_server.default_data_dir``); the registry ``up`` starts outlives the
command, and the others find it through the record in that directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocilab.errors import ComponentUnavailableError, InvalidInputError
from ocilab.model import mediatype as mt
from ocilab.present.text import human_size, print_json, table

EXIT_OK = 0
if TYPE_CHECKING:
    from ocilab.operations.registry_server import RegistryServer
    from ocilab.operations.registry_storage import Blob

DIGEST_WIDTH = 19  # "sha256:" and 12 hex digits, as the layer tables show them


def register(commands: Any) -> None:
    """Add ``registry`` and its five actions to the CLI's subparsers."""
    registry = commands.add_parser("registry", help="the kit's own local registry: start, stop, look inside, GC")
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start the registry in the background (returns when it answers)")
    up.add_argument("--port", type=port, metavar="P", help="port on 127.0.0.1 (default: a free one)")
    up.add_argument(
        "--auth", metavar="USER:PASSWORD", help="demand this login (bcrypt htpasswd); visible in `ps` while it runs"
    )
    up.add_argument("--tls", action="store_true", help="serve HTTPS with a self-signed certificate made here")
    _options(up)
    up.set_defaults(handler=_up)

    down = actions.add_parser("down", help="stop the registry")
    _options(down)
    down.set_defaults(handler=_down)

    status = actions.add_parser("status", help="is it running, where, and how much it stores")
    _options(status)
    status.set_defaults(handler=_status)

    ls = actions.add_parser("ls", help="repositories, tags and blobs as stored on disk")
    _options(ls)
    ls.set_defaults(handler=_ls)

    gc = actions.add_parser("gc", help="remove blobs no manifest references (stops the registry meanwhile)")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument("--delete-untagged", action="store_true", help="also delete manifests no tag points at")
    _options(gc)
    gc.set_defaults(handler=_gc)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, metavar="DIR", help="the registry's data directory (default: yours)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def port(text: str) -> int:
    """A TCP port number, 1-65535 (argparse names this function in its error)."""
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError(text)
    return number


def _data(args: argparse.Namespace) -> Path:
    from ocilab.operations.registry_server import default_data_dir

    return (args.data if args.data is not None else default_data_dir()).expanduser().resolve()


def _up(args: argparse.Namespace) -> int:
    from ocilab.operations.registry_server import RegistryServer, self_signed_certificate, write_htpasswd

    data = _data(args)
    server = RegistryServer.find(data)
    already = server is not None
    if server is None:
        htpasswd = None
        if args.auth is not None:
            user, colon, password = args.auth.partition(":")
            if not colon:
                raise InvalidInputError(f"--auth {user!r}: give USER:PASSWORD, with a ':' between them")
            htpasswd = write_htpasswd(data / "htpasswd", user, password)
        tls = self_signed_certificate(data / "tls") if args.tls else None
        try:
            server = RegistryServer(data, port=args.port, htpasswd=htpasswd, tls=tls).start(detach=True)
        except ComponentUnavailableError:
            server = RegistryServer.find(data)  # another `up` won the race: that one is ours too
            if server is None:
                raise
            already = True
    answers = server.answers()
    if args.json:
        print_json({**server.to_json(), "already_running": already, "answers": answers})
        return EXIT_OK
    if already:
        print(f"a registry is already running for {data} (pid {server.pid}); left as it is")
        if not answers:
            print(f"it does not answer GET /v2/ yet; its log is {server.log_path}")
    _describe(server)
    return EXIT_OK


def _describe(server: RegistryServer) -> None:
    """The facts a learner needs to use a running registry."""
    facts = [
        ("url", f"{server.url}  (pid {server.pid})"),
        ("push to", f"docker://{server.host}/REPOSITORY:TAG"),
        ("data", str(server.data_dir)),
    ]
    if server.tls is not None:
        certificate = server.tls[0]
        facts.append(("CA", f"{certificate}  (skopeo: --cert-dir {certificate.parent})"))
    elif server.host.startswith("127.0.0.1"):
        facts.append(("plain HTTP", "skopeo needs --tls-verify=false for it"))
    if server.htpasswd is not None:
        facts.append(("login", f"users in {server.htpasswd}"))
    facts.append(("stop with", f"ocilab registry down --data {server.data_dir}"))
    for key, value in facts:
        print(f"{key:<11} {value}")


def _down(args: argparse.Namespace) -> int:
    from ocilab.operations.registry_server import RegistryServer

    data = _data(args)
    server = RegistryServer.find(data)
    pid = server.pid if server is not None else None
    if server is not None:
        server.stop()
    if args.json:
        print_json({"stopped": server is not None, "pid": pid, "data_dir": str(data)})
    elif server is None:
        print(f"no registry is running for {data}")
    else:
        print(f"stopped the registry for {data} (pid {pid})")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from ocilab.operations.registry_server import RegistryServer
    from ocilab.operations.registry_storage import storage_map

    data = _data(args)
    server = RegistryServer.find(data)
    storage = storage_map(data) if data.is_dir() else None
    document: dict[str, Any] = {
        "running": server is not None,
        "answers": server is not None and server.answers(),
        "pid": None,
        "url": None,
        "host": None,
        "data_dir": str(data),
        "repositories": len(storage.repositories) if storage else 0,
        "blobs": len(storage.blobs) if storage else 0,
        "bytes": storage.bytes if storage else 0,
    }
    if server is not None:
        document.update(pid=server.pid, url=server.url, host=server.host)
    if args.json:
        print_json(document)
        return EXIT_OK
    if server is None:
        print(f"registry    not running  (start it with: ocilab registry up --data {data})")
        print(f"data        {data}")
    else:
        state = "answers GET /v2/" if document["answers"] else f"does NOT answer GET /v2/; see {server.log_path}"
        print(f"registry    running  ({state})")
        _describe(server)
    stored = f"{document['blobs']} blobs, {human_size(document['bytes'])} in {document['repositories']} repositories"
    print(f"stored      {stored}")
    return EXIT_OK


def _ls(args: argparse.Namespace) -> int:
    from ocilab.operations.registry_storage import storage_map

    storage = storage_map(_data(args))
    if args.json:
        print_json(storage.to_json())
        return EXIT_OK
    totals = storage.totals()
    print(
        f"{storage.data_dir}: {totals['blobs']} blobs, {human_size(totals['bytes'])} on disk"
        f" ({human_size(totals['repository_bytes_sum'])} if every repository kept its own copies)\n"
    )
    if not storage.blobs and not storage.repositories:
        print("nothing has been pushed to this registry yet")
        return EXIT_OK
    per_repository = storage.repository_bytes()
    print(table(["repository", "tags", "manifests", "only here", "shared"], [
        (r.name, len(r.tags), len(r.manifests), human_size(per_repository[r.name][0]),
         human_size(per_repository[r.name][1]))
        for r in storage.repositories
    ], max_width=80))  # fmt: skip
    print()
    tags = [(r.name, tag, digest[:DIGEST_WIDTH]) for r in storage.repositories for tag, digest in r.tags.items()]
    print(table(["repository", "tag", "manifest"], tags, max_width=80))
    print()
    print(table(["blob", "size", "type", "linked by", "state"], [
        (b.digest[:DIGEST_WIDTH], human_size(b.size), _type(b), ", ".join(b.repositories) or "-", _state(b))
        for b in storage.blobs
    ], max_width=60))  # fmt: skip
    if storage.dangling:
        count = len(storage.dangling)
        links = "1 link points at a blob that is" if count == 1 else f"{count} links point at blobs that are"
        print(f"\n{links} gone: the collector removes blobs, not the links a repository keeps to them")
    return EXIT_OK


def _type(blob: Blob) -> str:
    """The blob's short media type, as a manifest names it; '?' when no manifest does."""
    return mt.short_name(blob.media_type) if blob.media_type else "?"


def _state(blob: Blob) -> str:
    """What the collector would do with a blob, in a learner's words."""
    if not blob.referenced:
        return "unreferenced: gc removes it"
    if not blob.tagged:
        return "untagged: gc --delete-untagged removes it"
    return "shared, in use" if blob.shared else "in use"


def _gc(args: argparse.Namespace) -> int:
    from ocilab.operations.registry_storage import collect_garbage

    data = _data(args)
    collection = collect_garbage(data, dry_run=args.dry_run, delete_untagged=args.delete_untagged)
    if args.json:
        print_json({"data_dir": str(data), **collection.to_json()})
        return EXIT_OK
    verb = "would remove" if collection.dry_run else "removed"
    before, after = collection.before, collection.after
    print(f"before       {len(before.blobs)} blobs, {human_size(before.bytes)}")
    if not collection.dry_run:
        print(f"after        {len(after.blobs)} blobs, {human_size(after.bytes)}")
    print(f"{verb:<12} {len(collection.removed)} blobs, {human_size(collection.removed_bytes)}")
    if collection.restarted:
        print("registry     stopped while the collector ran, and started again")
    if collection.removed:
        print()
        print(table(["blob", "size", "type", "linked by"], [
            (b.digest, human_size(b.size), _type(b), ", ".join(b.repositories) or "-") for b in collection.removed
        ], max_width=80))  # fmt: skip
    return EXIT_OK
