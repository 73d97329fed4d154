"""Drive a learner's kernel through the hub, as the browser does: REST to start it, its websocket to run code.

``LearnerKernel(record, name)`` starts a kernel on the learner's running
server (through the hub's proxy, with the workshop service's token), and
``execute(code)`` sends an ``execute_request`` and collects what comes back
until both the ``execute_reply`` and the ``idle`` status for that request have
arrived. The kernel runs as the learner, so what it can and cannot touch is
what the learner can and cannot touch.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from ocilab.errors import ComponentUnavailableError
from ocilab.workshop import hub
from ocilab.workshop.record import Record

EXECUTE_TIMEOUT = 600.0


@dataclass
class Execution:
    """What one ``execute_request`` gave: the reply's status, streams, the result's text, the error if any."""

    status: str = ""
    stdout: str = ""
    stderr: str = ""
    result: str = ""
    error: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class LearnerKernel:
    """A kernel on ``name``'s server, started through the hub; use it as a context manager so it is shut down."""

    def __init__(self, record: Record, name: str, timeout: float = 120.0) -> None:
        import websocket

        self._base = f"{record.url.rstrip('/')}/user/{name}/api/kernels"
        self._headers = {"Authorization": f"token {hub.read_secret(record, hub.TOKEN)}"}
        answer = requests.post(self._base, json={"name": "python3"}, headers=self._headers, timeout=timeout)
        if answer.status_code != 201:
            raise ComponentUnavailableError(f"starting a kernel for {name}: {answer.status_code} {answer.text[:200]}")
        self.id = answer.json()["id"]
        self._session = uuid.uuid4().hex
        channels = f"{self._base.replace('http://', 'ws://', 1)}/{self.id}/channels?session_id={self._session}"
        self._socket = websocket.create_connection(channels, header=self._headers, timeout=timeout)

    def execute(self, code: str, timeout: float = EXECUTE_TIMEOUT) -> Execution:
        """Run ``code``; return when its ``execute_reply`` and its ``idle`` status have both arrived."""
        message_id = uuid.uuid4().hex
        header = {"msg_id": message_id, "username": "ocilab-workshop", "session": self._session,
                  "msg_type": "execute_request", "version": "5.3", "date": datetime.now(UTC).isoformat()}  # fmt: skip
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        request = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
        self._socket.send(json.dumps(request))
        execution, replied, idle = Execution(), False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            self._socket.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self._socket.recv())
            except Exception as error:  # noqa: BLE001 - websocket-client's timeout and close errors alike
                raise ComponentUnavailableError(f"kernel {self.id}: no answer to {code[:60]!r}: {error}") from None
            if message.get("parent_header", {}).get("msg_id") != message_id:
                continue
            kind, body = message["msg_type"], message["content"]
            if kind == "execute_reply":
                replied, execution.status = True, body["status"]
            elif kind == "status":
                idle = body["execution_state"] == "idle"
            elif kind == "stream":
                setattr(execution, body["name"], getattr(execution, body["name"]) + body["text"])
            elif kind in ("execute_result", "display_data"):
                execution.outputs.append(body["data"])
                if kind == "execute_result":
                    execution.result = body["data"].get("text/plain", "")
            elif kind == "error":
                execution.error = f"{body['ename']}: {body['evalue']}"
        return execution

    def close(self) -> None:
        """Close the websocket and shut the kernel down; a server already gone took its kernels with it."""
        self._socket.close()
        try:
            requests.delete(f"{self._base}/{self.id}", headers=self._headers, timeout=60)
        except requests.RequestException:
            pass

    def __enter__(self) -> LearnerKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
