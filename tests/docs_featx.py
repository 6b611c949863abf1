"""A fork server that runs the docs' examples for tests/test_docs.py without importing torch for each command.

Every `featx` process spends about 7 s of CPU importing torch, timm and torchvision before it does anything;
the docs' examples themselves take about a second each on their tiny videos, so the dozens of `featx` lines in
the docs would cost several minutes on 2 cores. The server (`python tests/docs_featx.py SOCKET`) imports the CLI and the modules its
commands import, once. The `featx` on the examples' PATH is then a shim (`shim_source`) that sends its
arguments, working directory, environment and stdin/stdout/stderr over a Unix socket; the server forks, the
child takes them over and calls the entry point the installed console script calls (`cli:app`, see
pyproject.toml), and the shim exits with the child's exit status. So each command line runs as written, in a
process of its own, started from a pristine copy of an interpreter that has only imported modules.
The docs' python blocks go the same way (`shim_source(python, "python")`: the script runs as __main__, as
`python SCRIPT` would).
FEATX_DOCS_REAL=1 makes tests/test_docs.py run the installed console script and this interpreter instead
(slower, same results).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import runpy
import signal
import socket
import struct
import sys
import traceback

# What the commands import lazily: imported here once, so that a forked command finds them loaded. Optional or
# missing ones are skipped (a command imports them itself). Not cv2 (the two-stream example imports it): its
# import starts a thread, and optical flow in a forked copy of it is untested.
PRELOAD = [
    "cli", "torch", "timm", "torchvision", "torchvision.models.video", "av", "pandas", "pyarrow.parquet",
    "pyarrow.dataset", "sklearn.metrics", "matplotlib.pyplot", "safetensors.torch", "duckdb", "h5py",
    "featx.pipeline", "featx.api", "featx.backbones", "featx.synth", "featx.store", "featx.store.check", "featx.export",
    "featx.importer", "featx.recipes", "seqmodels.classify", "seqmodels.adaptive", "seqmodels.detection.run",
]
HEADER = struct.Struct("!Q")  # the length of the JSON request that follows


def shim_source(python: str, program: str = "featx") -> str:
    """An executable that runs `program` (featx, or python for a script) in the server: the `featx` put first
    on the examples' PATH, and what runs the python blocks."""
    return f"""#!{python} -S
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["FEATX_DOCS_SERVER"])
request = {{"program": {program!r}, "args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
request = json.dumps(request).encode()
socket.send_fds(s, [struct.pack("!Q", len(request))], [0, 1, 2])
s.sendall(request)
status = b""
while chunk := s.recv(64):
    status += chunk
sys.exit(int(status) if status else 1)
"""


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds = b"", []
    while len(head) < HEADER.size:
        data, new_fds, _, _ = socket.recv_fds(conn, HEADER.size - len(head), 3)
        if not data:
            raise ConnectionError("the shim hung up")
        head, fds = head + data, fds + list(new_fds)
    (size,) = HEADER.unpack(head)
    body = b""
    while len(body) < size:
        data = conn.recv(size - len(body))
        if not data:
            raise ConnectionError("the shim hung up")
        body += data
    return json.loads(body), fds


def _run_command(conn: socket.socket) -> None:
    """In a forked child: become the shim's process (stdio, cwd, environment), run the command, send back its
    exit status (a child that dies without sending one reads as status 1 in the shim). Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request, fds = _receive(conn)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            if request["program"] == "python":
                sys.argv = request["args"]
                sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
                runpy.run_path(sys.argv[0], run_name="__main__")
            else:
                from cli import app

                sys.argv = ["featx", *request["args"]]
                app(args=request["args"], prog_name="featx")
            code = 0
        except SystemExit as e:  # what the console script's sys.exit(app()) turns into an exit status
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(str(code).encode())
        finally:
            os._exit(code)


def _reap(signum, frame) -> None:
    """Wait for finished commands, so that their CPU time counts as the server's (and pytest's) children's."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def serve(path: str) -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.freeze()  # the collector never walks the preloaded objects, so forks share their memory pages longer
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    signal.signal(signal.SIGCHLD, _reap)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            _run_command(conn)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
