"""The documentation's examples run as written: README.md and every docs/*.md page.

An example is a fenced block tagged ```bash or ```python. Each page's examples run in order, in one fresh
temporary folder per page, so a page's first blocks make the data (tiny synthetic videos, a store) its later
blocks use, exactly as a reader typing them would: bash blocks with `bash -e -o pipefail`, python blocks as
`python SCRIPT`, with this interpreter's bin/ (the installed `featx`, `python`) first on PATH. A block passes
when it exits 0.

Blocks that are not run:
- the README's first block, the two install lines: CI runs the second (`.ci/run`), and the first makes a fresh
  venv, installs torch and runs `featx demo` (minutes). It is recognised by its content, and
  `test_the_readme_test_command_is_what_ci_runs` keeps it equal to `.ci/run`.
- a block right after a line `<!-- not run: REASON -->`, which says why: a CUDA GPU, a Ray cluster with a
  shared file system, an S3 bucket, a downloaded checkpoint or data set, the full demo (tests/test_cli.py runs
  it small). Everything else is made small enough to run here instead.
- ```text / ```json blocks: output and file layouts, not commands.
A block tagged otherwise (sh, shell, console, py, or no tag) fails `test_every_code_block_says_what_it_is`, so
an example cannot miss the run by accident.

Time: a real `featx` process spends about 7 s of CPU importing torch, timm and torchvision, far more than the
tiny examples themselves, so `featx` on the examples' PATH is a shim that runs each command line in a fork of
a server that imported them once, and the python blocks run there too (tests/docs_featx.py says how;
`test_the_shim_runs_featx_as_installed` compares shim and console script). FEATX_DOCS_REAL=1 runs the
installed console script and this interpreter instead. The pages run side by side, two at a time, one torch
thread per process (the machine has 2 cores); each test waits for its own page. About a minute in all on 2
cores, so the tests that run examples are marked slow (`pytest -m "not slow"` leaves them out).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs_featx import shim_source

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_TAGS = {"bash", "python"}
DATA_TAGS = {"text", "json"}
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
README_INSTALL = "pip install -e . && featx demo"  # the first README block holds this line
BLOCK_TIMEOUT_S = 600  # per block; generous because the 2 cores are shared with other work
PARALLEL_PAGES = 2


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    tag: str
    code: str
    not_run: str | None  # the reason given in a `<!-- not run: ... -->` line right before the block

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (fences may be indented, as inside list items)."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, tag, start = len(opening.group(1)), opening.group(2), i
        body, i = [], i + 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{start + 1}: code block never closed")
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(before)
        blocks.append(Block(page, start + 1, tag, "\n".join(body) + "\n", marker.group(1) if marker else None))
        i += 1
    return blocks


def is_readme_install(block: Block) -> bool:
    return block.page.name == "README.md" and README_INSTALL in block.code


def examples(page: Path) -> list[Block]:
    """The blocks of `page` that run, in order."""
    return [b for b in parse_blocks(page) if b.tag in RUN_TAGS and b.not_run is None and not is_readme_install(b)]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- the pages' structure: fast checks --------------------------------------------------------------------


def test_every_code_block_says_what_it_is():
    for page in PAGES:
        for block in parse_blocks(page):
            assert block.tag in RUN_TAGS | DATA_TAGS, (
                f"{block.where}: a code block tagged {block.tag!r}: tag examples bash or python (they are run), "
                "output and listings text"
            )
            if block.not_run is not None:
                assert block.tag in RUN_TAGS, f"{block.where}: a `not run` marker before a {block.tag} block"


def test_the_readme_starts_with_the_two_commands_and_not_run_markers_name_a_reason():
    readme = parse_blocks(ROOT / "README.md")
    assert readme and is_readme_install(readme[0]), "the README's first block must stay the two install commands"
    assert [b for b in readme if is_readme_install(b)] == readme[:1]
    for page in PAGES:
        text = page.read_text()
        for marker in re.findall(r"<!--\s*not run.*?-->", text, flags=re.S):
            assert NOT_RUN.match(marker), f"{page_id(page)}: {marker!r} must read <!-- not run: REASON -->"


def test_the_readme_test_command_is_what_ci_runs():
    install, test = parse_blocks(ROOT / "README.md")[0].code.splitlines()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert test == ci, "the README's second command is what .ci/run runs: change both together"
    assert install.endswith(README_INSTALL)


def test_every_page_is_in_the_readme_contents():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"README.md's Documentation list does not link docs/{page.name}"


def test_the_layout_page_names_every_module_and_only_modules():
    text = (ROOT / "docs" / "layout.md").read_text()
    named = set(re.findall(r"^((?:featx|seqmodels)/\S+\.py|cli\.py)\s", text, flags=re.M))
    modules = {p.relative_to(ROOT).as_posix() for p in [ROOT / "cli.py", *(ROOT / "featx").rglob("*.py"),
                                                        *(ROOT / "seqmodels").rglob("*.py")]}
    assert named - modules == set(), "docs/layout.md names modules that do not exist"
    assert modules - named == set(), "docs/layout.md leaves modules out"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve():
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page_id(page)}: link to {target}: {file} does not exist"
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+\s+(.*)$", file.read_text(), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page_id(page)}: no heading for #{anchor} in {path}"


# -- the examples: run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    block: Block
    returncode: int | str
    output: str


EXAMPLE_ENV = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def example_env(featx_bin: Path | None, server: Path | None) -> dict[str, str]:
    """This interpreter's bin/ (featx, python) first on PATH, and the shim before it when there is one."""
    env = {**os.environ, **EXAMPLE_ENV}
    path = [str(Path(sys.executable).parent), env.get("PATH", "")]
    if featx_bin is not None:
        path.insert(0, str(featx_bin))
        env["FEATX_DOCS_SERVER"] = str(server)
    env["PATH"] = os.pathsep.join(path)
    return env


@pytest.fixture(scope="module")
def featx_server(tmp_path_factory):
    """(folder holding the shims `featx` and `python-example`, server socket), or (None, None) with
    FEATX_DOCS_REAL=1."""
    if os.environ.get("FEATX_DOCS_REAL") == "1":
        yield None, None
        return
    folder = tmp_path_factory.mktemp("featx-server")
    if len(str(folder)) > 80:  # a Unix socket's path has at most 107 bytes
        folder = Path(tempfile.mkdtemp(prefix="featx-docs-", dir="/tmp"))
    socket_path, shim = folder / "featx.sock", folder / "bin" / "featx"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "docs_featx.py"), str(socket_path)], cwd=ROOT,
        env={**os.environ, **EXAMPLE_ENV}, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready", "tests/docs_featx.py did not start"
        shim.parent.mkdir()
        for name, program in ((shim, "featx"), (shim.parent / "python-example", "python")):
            name.write_text(shim_source(sys.executable, program))
            name.chmod(0o755)
        yield shim.parent, socket_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and any command still running, all in its session
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_shim_runs_featx_as_installed(featx_server, tmp_path):
    """The shim passes arguments, cwd, output and exit status through: same results as the console script."""
    if featx_server[0] is None:
        pytest.skip("FEATX_DOCS_REAL=1: no shim")
    shimmed, real = example_env(*featx_server), example_env(None, None)
    (tmp_path / "here").mkdir()
    for args in (["--version"], ["info", "here"], ["info", "missing"], ["synth", "v", "--videos", "1", "--seconds", "1",
                                                                         "--size", "32", "--kind", "nope"]):
        results = [subprocess.run(["featx", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
                   for env in (shimmed, real)]
        assert [(r.returncode, r.stdout, r.stderr) for r in results][0] == (
            results[1].returncode, results[1].stdout, results[1].stderr), args
    assert results[0].returncode == 1 and results[0].stderr.startswith("error:")


@dataclass
class PageRun:
    failure: Failure | None = None
    seconds: list[tuple[Block, float]] | None = None  # each block's wall time, for -s / a slow page


def run_page(page: Path, folder: Path, env: dict[str, str]) -> PageRun:
    """Run the page's examples in order in `folder`, up to the first failure."""
    result = PageRun(seconds=[])
    for n, block in enumerate(examples(page)):
        script = folder / f".example-{n}.{'sh' if block.tag == 'bash' else 'py'}"
        script.write_text(block.code)
        python = "python-example" if "FEATX_DOCS_SERVER" in env else sys.executable  # the shim is on env's PATH
        command = ["bash", "-e", "-o", "pipefail", str(script)] if block.tag == "bash" else [python, str(script)]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            result.failure = Failure(block, f"timeout after {BLOCK_TIMEOUT_S} s", str(e.stdout or "") + str(e.stderr or ""))
            return result
        result.seconds.append((block, time.perf_counter() - start))
        if done.returncode != 0:
            result.failure = Failure(block, done.returncode, done.stdout + done.stderr)
            return result
    return result


HEAVY = re.compile(r"featx (?:extract|train-head)|--adaptive|import torch")  # to start the longest pages first


@pytest.fixture(scope="module")
def page_results(request, tmp_path_factory, featx_server) -> dict[str, Future]:
    """Start the selected pages side by side, the longest first; each test waits for its own page."""
    selected = [item.callspec.params["page"] for item in request.session.items
                if item.originalname == "test_page_examples_run" and hasattr(item, "callspec")]
    selected.sort(key=lambda p: -sum(len(HEAVY.findall(b.code)) for b in examples(p)))
    pool = ThreadPoolExecutor(max_workers=PARALLEL_PAGES)
    env = example_env(*featx_server)
    futures = {page_id(p): pool.submit(run_page, p, tmp_path_factory.mktemp(p.stem), env) for p in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=page_id)
def test_page_examples_run(page, page_results):
    result = page_results[page_id(page)].result()
    print("".join(f"{block.where}: {seconds:.1f} s\n" for block, seconds in result.seconds))  # shown with -s
    failure = result.failure
    if failure is not None:
        tail = failure.output[-4000:]
        pytest.fail(f"{failure.block.where}: the {failure.block.tag} example exited {failure.returncode}\n"
                    f"--- example ---\n{failure.block.code}--- output (tail) ---\n{tail}")


def test_the_package_version_is_the_one_pyproject_declares():
    import tomllib

    import featx

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert featx.__version__ == declared


def test_the_readme_fits_two_screens():
    """What it is, the two commands, a tour, links and the dependency table: details live in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 100
