"""The program's side of a judged run (shipped as source after wire.py and script.py; globals PROGRAM, REQUESTS,
RESPONSES).

Loads the program as the module `solution` (so an `if __name__ == "__main__":` block does not run), then answers
the judge's requests: look up a name, call an object, read an attribute. Everything here runs with the program's
privileges and after its code, so nothing here is trusted: the judge treats every answer as untrusted data.
"""

# ruff: noqa: F821 -- encode, decode, send_frame, recv_frame (wire.py) and load_program (script.py) are shipped
# ahead of this file

import os
import types

_objects = {}  # handle id -> object kept in this process
_ids = {}  # id(object) -> handle id, so one object keeps one handle


def _handle(obj):
    key = id(obj)
    if key not in _ids:
        _ids[key] = len(_objects)
        _objects[_ids[key]] = obj
    return _ids[key]


def _object(hid, type_name):
    return _objects[hid]


def _answer(request, module):
    kind = request[0]
    if kind == "get":
        if request[1] not in module.__dict__:
            return ["missing"]
        value = module.__dict__[request[1]]
        if isinstance(value, types.ModuleType):
            return ["module", value.__name__]
        return ["ok", encode(value, _handle)]
    if kind == "attr":
        return ["ok", encode(getattr(_objects[request[1]], request[2]), _handle)]
    if kind == "call":
        args = [decode(a, _object) for a in request[2]]
        kwargs = {k: decode(v, _object) for k, v in request[3].items()}
        result = _objects[request[1]](*args, **kwargs)
        mutable = (list, dict, set, bytearray)
        states = [encode(a, _handle) if type(a) in mutable else None for a in args]
        return ["ok", encode(result, _handle), states]
    return ["bad request"]


def _serve(program, requests, responses):
    try:
        module = load_program(program, "solution")
    except Exception as e:
        send_frame(responses, ["load error", type(e).__name__])
        raise
    send_frame(responses, ["ready"])
    while True:
        request = recv_frame(requests, 1 << 30)
        if request is None:
            os._exit(0)
        try:
            answer = _answer(request, module)
        except Exception as e:  # the judge re-raises it as the same builtin exception type where there is one
            answer = ["raise", type(e).__name__]
        send_frame(responses, answer)


_serve(PROGRAM, REQUESTS, RESPONSES)
