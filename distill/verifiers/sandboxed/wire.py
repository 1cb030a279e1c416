"""The plain-data wire format between the judge and the program under test (both run it; see judge.py).

Shipped as source into the sandbox (no imports from the project). Values travel as JSON where every container is an
array tagged by its first element, so the judge rebuilds them from its own builtin types: nothing the program sends
can carry behaviour (no `__eq__`, no subclass, no callable) into the judge. Objects that are not plain data stay in
the program's process and travel as handles ["H", id, type name]; the judge compares a handle only by identity.

Frames: a 4-byte big-endian length, then UTF-8 JSON.
"""

import json
import os
import struct

_BIG = 1 << 53  # ints past this travel as hex: JSON readers cap decimal digits (Python: 4,300)
MAX_ITEMS = 1_000_000  # items materialized from one iterator the program returns
_FRAME = struct.Struct(">I")


def send_frame(fd, obj):
    data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    data = _FRAME.pack(len(data)) + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def recv_frame(fd, limit):
    """The next frame's JSON value; None at end of stream. Raises ValueError past `limit` bytes or on bad JSON."""
    head = _read_exact(fd, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    if size > limit:
        raise ValueError(f"frame of {size} bytes is over the limit of {limit}")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def encode(value, handle):
    """A JSON-able form of `value`; `handle(obj)` returns the id of an object that is not plain data."""
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if -_BIG < value < _BIG else ["i", hex(value)]
    if t is float:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return encode(int(value), handle)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, tuple):  # namedtuples too
        return ["T", *[encode(v, handle) for v in value]]
    if isinstance(value, list):
        return ["L", *[encode(v, handle) for v in value]]
    if isinstance(value, dict):  # Counter, OrderedDict, defaultdict
        out = ["D"]
        for k, v in value.items():
            out += [encode(k, handle), encode(v, handle)]
        return out
    if isinstance(value, (set, frozenset)):
        return ["Z" if isinstance(value, frozenset) else "S", *[encode(v, handle) for v in value]]
    if isinstance(value, (bytes, bytearray)):
        return ["Y" if isinstance(value, bytearray) else "B", bytes(value).hex()]
    if isinstance(value, complex):
        return ["C", value.real, value.imag]
    if isinstance(value, range):
        return ["R", value.start, value.stop, value.step]
    name = t.__module__ + "." + t.__qualname__
    if name == "fractions.Fraction":
        return ["Q", encode(value.numerator, handle), encode(value.denominator, handle)]
    if name == "decimal.Decimal":
        return ["N", str(value)]
    if hasattr(value, "__next__") and hasattr(value, "__iter__"):  # generators, map, zip, iterators
        items = []
        for item in value:
            if len(items) >= MAX_ITEMS:
                raise ValueError(f"an iterator of more than {MAX_ITEMS} items")
            items.append(encode(item, handle))
        return ["I", *items]
    return ["H", handle(value), t.__qualname__[:80]]


def decode(data, handle, depth=0):
    """The value `data` encodes, built from builtin types only; `handle(id, type_name)` rebuilds a handle.

    Raises ValueError (or TypeError for unhashable keys) on anything that is not exactly this format.
    """
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not list or not data or type(data[0]) is not str or depth > 1000:
        raise ValueError("not a value of the wire format")
    tag, items = data[0], data[1:]
    if tag in ("L", "T", "S", "Z", "I"):
        values = [decode(v, handle, depth + 1) for v in items]
        return {"L": list, "T": tuple, "S": set, "Z": frozenset, "I": iter}[tag](values)
    if tag == "D":
        if len(items) % 2:
            raise ValueError("a dict with an odd number of items")
        return {
            decode(items[i], handle, depth + 1): decode(items[i + 1], handle, depth + 1)
            for i in range(0, len(items), 2)
        }
    if tag in ("B", "Y") and len(items) == 1 and type(items[0]) is str:
        return (bytes if tag == "B" else bytearray).fromhex(items[0])
    if tag == "i" and len(items) == 1 and type(items[0]) is str:
        return int(items[0], 16)
    if tag == "C" and len(items) == 2 and all(type(v) in (int, float) for v in items):
        return complex(items[0], items[1])
    if tag == "R" and len(items) == 3 and all(type(v) is int for v in items):
        return range(*items)
    if tag == "Q" and len(items) == 2:
        import fractions

        return fractions.Fraction(
            _integer(decode(items[0], handle, depth + 1)), _integer(decode(items[1], handle, depth + 1))
        )
    if tag == "N" and len(items) == 1 and type(items[0]) is str:
        import decimal

        return decimal.Decimal(items[0])
    if tag == "H" and len(items) == 2 and type(items[0]) is int and type(items[1]) is str:
        return handle(items[0], items[1])
    raise ValueError(f"unknown wire tag {tag[:20]!r}")


def _integer(value):
    if type(value) is not int:
        raise ValueError("a fraction of non-integers")
    return value
