"""The judge of a judged run (shipped as source after wire.py; globals PAYLOAD, RESULT_FD, REQUESTS, RESPONSES).

It runs in its own process, under its own uid, forked by the bootstrap before any of the program's code ran and
holding the only copy of the tests, the nonce and the result pipe. The tests execute here, in a fresh namespace; the
names they take from the program (PAYLOAD["names"], resolved by _bind) are looked up in the program's process, and
every call to them is a request whose answer comes back as plain data (wire.py). So a comparison in the tests
compares values built by this interpreter's own types, with this interpreter's own `operator`, `math` and builtins,
which the program can neither reach nor patch.

The program learns nothing but its inputs, not even whether an earlier check passed: every `assert` of the tests is
rewritten (_Oblivious) to record a failure and go on, so the requests the program sees are the same whether its
answers are right or wrong, and the run ends the same way (the bootstrap stops the program as soon as this process
exits). Otherwise a program could tell a wrong answer from a right one by the requests that stop coming, and carry
that across runs. Only what the program itself does (it raises outside an assert, it dies) ends the tests early.
The verdict goes to RESULT_FD, a pipe only the host reads: b"F" + a reason of trusted text (exception type names
from the program are quoted and capped) as soon as the first check fails, or b"P" + nonce when the tests ran to
their end with no failure and the program never died.
"""

# ruff: noqa: F821 -- encode, decode, send_frame and recv_frame come from wire.py, shipped ahead of this file

import ast
import builtins
import contextlib
import importlib
import os
import sys

_BUILTIN_ERRORS = {
    k: v for k, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, Exception) and k != "Exception"
}


class ProgramDied(BaseException):  # BaseException: the tests' own `except Exception` must not swallow it
    pass


class Unsendable(BaseException):  # a value the tests pass that this format cannot carry: the row, not the program
    pass


class ProgramError(Exception):
    """The program raised an exception that is not a builtin one."""


def quoted(text, limit=60):
    """Program-chosen text, marked as such and capped, for reasons."""
    text = str(text)
    text = (text[:limit] + "...") if len(text) > limit else text
    return "«" + text.encode("ascii", "backslashreplace").decode() + "»"  # escaped: no newlines, no « » inside


class Remote:
    """An object that lives in the program's process; equal only to itself."""

    __slots__ = ("_id", "_type", "__weakref__")

    def __call__(self, *args, **kwargs):
        return CHANNEL.call(self, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return CHANNEL.ask(["attr", self._id, name])

    def __repr__(self):
        return "<program object " + quoted(self._type, 40) + ">"


class Channel:
    def __init__(self, requests, responses, limit):
        self.requests, self.responses, self.limit = requests, responses, limit
        self.remotes, self.dead, self.calls = {}, None, 0

    def remote(self, hid, type_name):
        if hid not in self.remotes:
            r = object.__new__(Remote)
            object.__setattr__(r, "_id", hid)
            object.__setattr__(r, "_type", type_name)
            self.remotes[hid] = r
        return self.remotes[hid]

    def _send_arg(self, value):
        def handle(obj):
            if type(obj) is Remote:
                return obj._id
            raise Unsendable(type(obj).__name__)

        if type(value) is Remote:
            return ["H", value._id, ""]
        return encode(value, handle)

    def receive(self):
        if self.dead:
            raise ProgramDied(self.dead)
        try:
            answer = recv_frame(self.responses, self.limit)
        except (ValueError, UnicodeDecodeError, RecursionError):
            answer = False
        except OSError:
            answer = None
        if answer is None:
            self.dead = "the program exited"
        elif answer is False or type(answer) is not list or not answer or type(answer[0]) is not str:
            self.dead = "the program sent malformed data"
        if self.dead:
            raise ProgramDied(self.dead)
        return answer

    def request(self, request):
        if self.dead:
            raise ProgramDied(self.dead)
        try:
            send_frame(self.requests, request)
        except OSError:
            self.dead = "the program exited"
            raise ProgramDied(self.dead) from None
        self.calls += 1
        return self.receive()

    def value(self, data):
        try:
            return decode(data, self.remote)
        except (ValueError, TypeError, RecursionError, OverflowError, ArithmeticError):
            self.dead = "the program sent malformed data"
            raise ProgramDied(self.dead) from None

    def ask(self, request):
        return self.result(self.request(request))

    def result(self, answer):
        if answer[0] == "raise" and len(answer) == 2 and type(answer[1]) is str:
            error = _BUILTIN_ERRORS.get(answer[1])
            if error is None:
                raise ProgramError(answer[1][:60])
            raise error("raised by the program")
        if answer[0] != "ok" or len(answer) < 2:
            self.dead = "the program sent malformed data"
            raise ProgramDied(self.dead)
        return self.value(answer[1])

    def call(self, remote, args, kwargs):
        sent_args = [self._send_arg(a) for a in args]
        sent_kwargs = {str(k): self._send_arg(v) for k, v in kwargs.items()}
        answer = self.request(["call", remote._id, sent_args, sent_kwargs])
        if answer[0] == "ok" and len(answer) == 3 and type(answer[2]) is list and len(answer[2]) == len(args):
            for arg, state in zip(args, answer[2], strict=True):
                if state is not None:
                    _write_back(arg, self.value(state))
        return self.result(answer)


class Undefined:
    """An entry point the program does not define: using it fails, as the name would in the program's module."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise NameError("the program does not define " + self.name)


def _write_back(arg, state):
    """In-place changes the program made to a mutable argument, applied to the tests' own object."""
    if type(arg) is not type(state):
        return
    if type(arg) in (list, bytearray):
        arg[:] = state
    elif type(arg) in (dict, set):
        arg.clear()
        arg.update(state)


def _bind(names, entry_points):
    """The tests' namespace: each name they use but do not define, from this interpreter or from the program."""
    namespace = {"__name__": "__tests__", "__builtins__": builtins}
    for name in names:
        if name in entry_points or not (hasattr(builtins, name) or name in sys.stdlib_module_names):
            answer = CHANNEL.request(["get", name])
            if answer[0] == "module" and len(answer) == 2 and answer[1] in sys.stdlib_module_names:
                _import(namespace, name, answer[1])
            elif answer[0] == "ok" and len(answer) == 2:
                namespace[name] = CHANNEL.value(answer[1])
            elif name in entry_points:  # never the builtin of the same name (MBPP 126 asks for `sum`)
                namespace[name] = Undefined(name)
        elif not hasattr(builtins, name):  # a standard module the tests use without importing it
            _import(namespace, name, name)
    return namespace


def _import(namespace, name, module):
    with contextlib.suppress(ImportError):
        namespace[name] = importlib.import_module(module)


def _tests_line(tb):
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "tests.py":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _failure(e):
    if isinstance(e, ProgramDied):
        return "wrong: " + str(e)
    if isinstance(e, Unsendable):
        return "error: the tests pass a " + type(e).__name__ + " the verifier cannot send to the program"
    line = _tests_line(e.__traceback__)
    where = "" if line is None else f" at tests line {line}"
    if isinstance(e, ProgramError):
        return "wrong: the program raised " + quoted(str(e)) + where
    return "wrong: " + type(e).__name__ + where


class _Oblivious(ast.NodeTransformer):
    """`assert TEST` -> record a failure when TEST is false or raises, and go on (see the module docstring)."""

    def visit_Assert(self, node):
        line = ast.Constant(node.lineno)
        failed = _call("__judge_failed__", line, ast.Constant(None))
        raised = _call("__judge_failed__", line, ast.Name("__judge_error__", ast.Load()))
        guarded = ast.Try(
            body=[ast.If(ast.UnaryOp(ast.Not(), node.test), [failed], [])],
            handlers=[
                ast.ExceptHandler(ast.Name("__judge_stop__", ast.Load()), None, [ast.Raise()]),
                ast.ExceptHandler(ast.Name("BaseException", ast.Load()), "__judge_error__", [raised]),
            ],
            orelse=[],
            finalbody=[],
        )
        return ast.fix_missing_locations(ast.copy_location(guarded, node))


def _call(name, *args):
    return ast.Expr(ast.Call(ast.Name(name, ast.Load()), list(args), []))


FAILURES = []  # reasons of the checks that failed, in order


def _record(line, error):
    reason = "wrong: AssertionError" if error is None else _failure(error).split(" at tests line ")[0]
    reason += " at tests line " + str(line)
    if not FAILURES:  # the host learns it at once; the program cannot read this pipe
        os.write(RESULT_FD, b"F" + reason.encode("utf-8")[:400])
    FAILURES.append(reason)


def _oblivious(tests):
    tree = _Oblivious().visit(ast.parse(tests, "tests.py"))
    return compile(tree, "tests.py", "exec", dont_inherit=True)


def _judge(payload):
    ready = CHANNEL.receive()
    if ready[0] == "load error":
        name = ready[1] if len(ready) > 1 else "?"
        return "wrong: the program raised " + quoted(name) + " while loading"
    if ready != ["ready"]:
        return "wrong: the program sent malformed data"
    try:
        namespace = _bind(payload["names"], payload["entry_points"])
        namespace.update(__judge_failed__=_record, __judge_stop__=(ProgramDied, Unsendable))
        exec(_oblivious(payload["tests"]), namespace)
    except BaseException as e:
        return FAILURES[0] if FAILURES else _failure(e)
    if CHANNEL.dead:  # died in a call whose exception the tests caught
        return FAILURES[0] if FAILURES else "wrong: " + CHANNEL.dead
    return FAILURES[0] if FAILURES else None


def _main():
    payload = PAYLOAD
    failure = _judge(payload)
    if failure is None:
        os.write(RESULT_FD, b"P" + payload["nonce"])
        os._exit(0)
    if not FAILURES:
        os.write(RESULT_FD, b"F" + failure.encode("utf-8")[:400])
    os._exit(4 if CHANNEL.dead else 3)  # 4: the program's own end stopped the tests (the bootstrap asks how)


CHANNEL = Channel(REQUESTS, RESPONSES, PAYLOAD["max_frame"])
_main()
