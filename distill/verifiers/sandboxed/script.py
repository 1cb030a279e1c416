"""Loads the program's source as a module (shipped as source; globals PROGRAM, and whatever a driver adds).

Shared by the two drivers: run as the `__main__` script (MAIN_DRIVER: io mode and plain runs), or as the module
`solution` whose names the judge asks for (candidate.py). The source is also written to the cwd so that the
interpreter's own traceback printing (cheap, unlike importing traceback/linecache) can show the failing lines.
"""

import os
import sys
import types


def load_program(program, name):
    path = os.path.join(os.getcwd(), "solution.py")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
    except OSError:
        pass
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    exec(compile(program, path, "exec", dont_inherit=True), module.__dict__)
    return module
