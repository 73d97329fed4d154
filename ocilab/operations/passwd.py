"""An image config's ``User`` resolved through the image's own ``/etc/passwd`` and ``/etc/group``, read as data.

The files come from the unpacked rootfs, never from the host and never
through NSS: a container's users are the image's. The rules are the
image-spec's (conversion.md, ``Config.User``): numeric values are copied
verbatim; names are looked up (a name that is not there is an error); the
supplementary groups (``additionalGids``) are those that list the user by
name, and only when the user was named and no group was given.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocilab.errors import NotFoundError


@dataclass(frozen=True)
class ProcessUser:
    """``process.user`` of a runtime config."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            document["additionalGids"] = list(self.additional_gids)
        return document


@dataclass(frozen=True)
class _Record:
    name: str
    number: int  # uid in passwd, gid in group
    gid: int  # passwd: primary gid; group: the same as number
    members: tuple[str, ...]


def resolve_user(spec: str, passwd: bytes | None, group: bytes | None, where: str) -> ProcessUser:
    """``USER``, ``USER:GROUP``, ``UID`` or ``UID:GID`` (in any mix) as uid, gid and additional gids.

    ``passwd`` and ``group`` are the files' contents (None when the image has
    none). An empty ``spec`` is root (0:0). NotFoundError naming ``where`` and
    the name when a user or group name is not in the image.
    """
    user_text, colon, group_text = spec.partition(":")
    if not user_text and not colon:
        return ProcessUser(0, 0)
    users = _records(passwd, passwd=True)
    if user_text.isdigit():
        uid = int(user_text)
        entry = next((record for record in users if record.number == uid), None)
    else:
        entry = next((record for record in users if record.name == user_text), None)
        if entry is None:
            raise NotFoundError(
                f"{where}: User {spec!r}: there is no user {user_text!r} in the image's /etc/passwd"
                + ("" if passwd is not None else " (the image has no /etc/passwd)")
            )
        uid = entry.number
    if colon:
        return ProcessUser(uid, _group_id(group_text, group, spec, where))
    gid = entry.gid if entry is not None else 0
    if user_text.isdigit() or entry is None:
        return ProcessUser(uid, gid)
    extra = tuple(
        record.number
        for record in _records(group, passwd=False)
        if entry.name in record.members and record.number != gid
    )
    return ProcessUser(uid, gid, tuple(dict.fromkeys(extra)))


def _group_id(text: str, group: bytes | None, spec: str, where: str) -> int:
    if text.isdigit():
        return int(text)
    for record in _records(group, passwd=False):
        if record.name == text:
            return record.number
    raise NotFoundError(
        f"{where}: User {spec!r}: there is no group {text!r} in the image's /etc/group"
        + ("" if group is not None else " (the image has no /etc/group)")
    )


def _records(content: bytes | None, passwd: bool) -> list[_Record]:
    """The well-formed lines of a passwd (``name:x:uid:gid:...``) or group (``name:x:gid:a,b``) file.

    Malformed lines are skipped, as the C library skips them.
    """
    records = []
    for line in (content or b"").decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if line.startswith("#") or len(fields) < (7 if passwd else 4) or not fields[0] or not fields[2].isdigit():
            continue
        if passwd:
            if not fields[3].isdigit():
                continue
            records.append(_Record(fields[0], int(fields[2]), int(fields[3]), ()))
        else:
            members = tuple(name for name in fields[3].split(",") if name)
            records.append(_Record(fields[0], int(fields[2]), int(fields[2]), members))
    return records
