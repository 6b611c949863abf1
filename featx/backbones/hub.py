"""Pretrained weights for `--weights auto`: the hub's own cache first, then one short-lived download, else one
error line that says where the file belongs.

Two hubs, each with its own cache layout, which featx reads and fills the hub's own way (so a cache filled by
torchvision, timm or `featx weights pull` on any machine is used as it is):

- torchvision's checkpoints (and timm models published only as a URL): `torch.hub.get_dir()/checkpoints/<file>`
  (`$TORCH_HOME/hub/checkpoints`), downloaded with `torch.hub.download_url_to_file`, whose check compares the
  file's sha256 with the hex digits the file name carries (`r3d_18-b3b3357e.pth`).
- Hugging Face repos (timm's, and the transformers video models of featx.backbones.hf_video):
  `$HF_HOME/hub/models--<org>--<name>/snapshots/<revision>/<file>`, looked up and downloaded file by file by
  huggingface_hub itself (`try_to_load_from_cache`, `hf_hub_download`): model.safetensors for timm; config.json,
  the processor config and the weights for transformers, in that order, so that a repo featx cannot use fails
  before its weights are fetched.

Offline means: `HF_HUB_OFFLINE=1` (no network attempt at all, for both hubs), or the hub's host does not accept
a connection within CONNECT_TIMEOUT seconds (one try, no retries). Environment: `FEATX_TORCHVISION_URL` replaces
`https://download.pytorch.org` in torchvision's URLs (a mirror, or a test's local server); `HF_ENDPOINT`,
`HF_HOME` / `HF_HUB_CACHE` and `TORCH_HOME` are the hubs' own and are read at each call.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from featx.errors import FeatxError, exception_line

TORCHVISION_BASE = "https://download.pytorch.org"
TORCHVISION_URL_ENV = "FEATX_TORCHVISION_URL"
CONNECT_TIMEOUT = 1.5  # seconds for the one connection attempt that decides "online"
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a hub repo, in its order
HF_CONFIG = ("config.json",)  # a transformers repo's model config
# A transformers repo's processor config, in the order transformers' AutoVideoProcessor reads them (v5 nests the
# processors of processor_config.json under their kind)
HF_PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json", "processor_config.json")
# torch.hub's rule: the hex digits after the last "-" of a checkpoint's name start its sha256
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class Checkpoint:
    """A weights file found or fetched, and how the store records where it came from."""

    path: Path
    source: str  # "torchvision:<file name>", "url:<file name>" or "hf:<repo>@<revision>"


def torchvision_weights(spec: str):
    """torchvision's weights enum member named `spec`, e.g. "R3D_18_Weights.KINETICS400_V1" (video models),
    "GoogLeNet_Weights.IMAGENET1K_V1" (image models), "Raft_Small_Weights.C_T_V2" (optical flow): its url, meta and
    transforms are read from it at run time."""
    import torchvision.models as tvm
    import torchvision.models.optical_flow as tvf
    import torchvision.models.video as tvv

    enum, member = spec.split(".")
    module = next(m for m in (tvv, tvf, tvm) if hasattr(m, enum))
    return getattr(getattr(module, enum), member)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set (now, or when huggingface_hub was imported)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether the host of `url` (or the proxy the environment names for it) accepts a TCP connection within
    `timeout` seconds. Run in a thread, so that a DNS lookup that hangs cannot hold the caller longer."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    answer: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.2)
    return bool(answer and answer[0])


def torch_checkpoints_dir() -> Path:
    """torch.hub's checkpoint folder (`$TORCH_HOME/hub/checkpoints`, or what torch.hub.set_dir chose)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, from the environment now (the library reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    import huggingface_hub.constants

    return Path(huggingface_hub.constants.HF_HUB_CACHE)


def hf_endpoint() -> str:
    import huggingface_hub.constants

    return (os.environ.get("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT).rstrip("/")


def mirrored(url: str) -> str:
    """`url` with https://download.pytorch.org replaced by $FEATX_TORCHVISION_URL, when that is set."""
    base = os.environ.get(TORCHVISION_URL_ENV, "").rstrip("/")
    return base + url[len(TORCHVISION_BASE):] if base and url.startswith(TORCHVISION_BASE) else url


def url_file_path(url: str) -> Path:
    """Where torch.hub keeps the file of `url`."""
    return torch_checkpoints_dir() / Path(urllib.parse.urlsplit(url).path).name


def _say(line: str) -> None:
    """One line on stderr before a download starts (as torch.hub says it), so a slow run says why."""
    print(line, file=sys.stderr, flush=True)


def _offline_error(name: str, where: str, why: str, instead: str = "--weights PATH or --random-init") -> FeatxError:
    return FeatxError(f"{name}: no pretrained weights at {where} and {why}; run `featx weights pull {name}` on a "
                      f"connected machine and copy the file there (or pass {instead})")


def _why_offline(url: str) -> str | None:
    """None when a download may be tried, else why not (HF_HUB_OFFLINE, or the host did not answer)."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set (no download tried)"
    if not reachable(url):
        host = urllib.parse.urlsplit(url).netloc
        return f"{host} is unreachable (offline? no answer within {CONNECT_TIMEOUT:g} s)"
    return None


def url_checkpoint(name: str, url: str, kind: str = "torchvision", download: bool = True,
                   instead: str = "--weights PATH or --random-init", verify: bool = False) -> Checkpoint:
    """The file of `url` in torch.hub's cache, downloaded (progress bar, sha256 checked against the name's hash
    prefix) when missing and `download`. Raises one FeatxError line when it is not there and cannot be."""
    path = url_file_path(url)
    source = f"{kind}:{path.name}"
    if path.is_file():
        if verify:  # `featx weights pull`: a cached file is checked against the hash its name carries
            _check_hash_in_name(name, path)
        return Checkpoint(path, source)
    why = "it is not downloaded (featx weights pull)" if not download else _why_offline(mirrored(url))
    if why:
        raise _offline_error(name, str(path), why, instead)
    import torch.hub

    found = HASH_IN_NAME.search(path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    _say(f"{name}: downloading {mirrored(url)} to {path}")
    try:
        torch.hub.download_url_to_file(mirrored(url), str(path), hash_prefix=found.group(1) if found else None,
                                       progress=True)
    except RuntimeError as exc:  # torch.hub's "invalid hash value": the temporary file is already deleted
        raise FeatxError(f"{name}: the download of {path.name} is corrupt ({exception_line(exc)}); nothing was kept, "
                         f"try `featx weights pull {name}` again") from None
    except OSError as exc:  # URLError, HTTPError, a full disk
        raise FeatxError(f"{name}: could not download {mirrored(url)} ({exception_line(exc)})") from None
    return Checkpoint(path, source)


def hf_layout(repo_id: str, filename: str = HF_FILES[0]) -> str:
    """The cache path a hub file has, with its revision left as <revision> (for messages)."""
    folder = "models--" + repo_id.replace("/", "--")
    return f"{hf_cache_dir() / folder}/snapshots/<revision>/{filename} (and {folder}/refs/main)"


def hf_cached(repo_id: str, filenames: tuple[str, ...] = HF_FILES, revision: str = "main") -> Checkpoint | None:
    """The file of `repo_id` in the Hugging Face cache (the first of `filenames` there), found by huggingface_hub
    without any network access; None when none is there."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_cache_dir()), revision=revision)
        if isinstance(found, str):  # not the _CACHED_NO_EXIST sentinel, not None
            path = Path(found)
            return Checkpoint(path, f"hf:{repo_id}@{path.parent.name}")  # snapshots/<revision>/<file>
    return None


def hf_checkpoint(name: str, repo_id: str, filenames: tuple[str, ...] = HF_FILES, download: bool = True,
                  announce: bool = True) -> Checkpoint:
    """A Hugging Face hub file of `repo_id`: cached, else downloaded by hf_hub_download (which checks it), else
    one FeatxError line. `announce`: say so on stderr before downloading (not for a small config file)."""
    found = hf_cached(repo_id, filenames)
    if found is not None:
        return found
    endpoint = hf_endpoint()
    why = "it is not downloaded (featx weights pull)" if not download else _why_offline(endpoint)
    if why:
        raise _offline_error(name, hf_layout(repo_id, filenames[0]), why)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    if announce:
        _say(f"{name}: downloading {' or '.join(filenames)} of {repo_id} from {endpoint} into {hf_cache_dir()}")
    for filename in filenames:
        try:
            hf_hub_download(repo_id, filename, cache_dir=str(hf_cache_dir()), endpoint=endpoint, etag_timeout=5)
        except LocalEntryNotFoundError:  # the host answered the connection check but not the request
            raise _offline_error(name, hf_layout(repo_id, filename), f"{endpoint} did not answer") from None
        except EntryNotFoundError:  # the repo has no such file: the next name (timm's, a processor file's)
            continue
        except Exception as exc:  # httpx, repository and integrity errors: one line saying which
            raise FeatxError(f"{name}: could not download {filename} of {repo_id} from {endpoint} "
                             f"({exception_line(exc)})") from None
        return hf_cached(repo_id, (filename,))
    raise FeatxError(f"{name}: {repo_id} holds none of {', '.join(filenames)}; pass --weights PATH")


def timm_weights_location(name: str) -> tuple[str, str | tuple[str, ...]]:
    """Where timm publishes `name`'s weights: ("hf", (repo, file names)) or ("url", url). Raises one FeatxError
    line when timm knows of none."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    repo = cfg.hf_hub_id if cfg is not None else None
    if repo:
        if repo.endswith("/"):  # an organisation only: timm appends the model's full name
            repo += f"{name.split('.')[0]}.{cfg.tag}" if cfg.tag else name
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILES
        return "hf", (repo, files)
    if cfg is not None and cfg.url:
        return "url", cfg.url
    raise FeatxError(f"{name}: timm publishes no pretrained weights for it; pass --weights PATH or --random-init")


def timm_checkpoint(name: str, download: bool = True) -> Checkpoint:
    """timm model `name`'s pretrained weights file (the HF cache or torch.hub's), fetched when missing."""
    kind, where = timm_weights_location(name)
    if kind == "hf":
        repo, files = where
        return hf_checkpoint(name, repo, files, download)
    return url_checkpoint(name, where, "url", download)


def timm_cached(name: str) -> Checkpoint | None:
    """timm model `name`'s weights file if it is cached, else None (no network)."""
    kind, where = timm_weights_location(name)
    if kind == "hf":
        return hf_cached(*where)
    path = url_file_path(where)
    return Checkpoint(path, f"url:{path.name}") if path.is_file() else None



def hf_snapshot(name: str, repo_id: str, needed: tuple[str, ...], optional: tuple[str, ...] = (),
                revision: str = "main", download: bool = True) -> Path:
    """The snapshot folder of `repo_id` at `revision` (a branch or a commit) in the Hugging Face cache, holding
    the weights (one of HF_FILES) and every file of `needed`: found without network access, else downloaded
    file by file by hf_hub_download (with the `optional` files the repo has: tokenizer files differ by model),
    else one FeatxError line naming the cache path. For repos in transformers' format (featx.backbones.image_text)."""
    weights = hf_cached(repo_id, HF_FILES, revision)
    if weights is not None and all(hf_cached(repo_id, (f,), revision) for f in needed):
        return weights.path.parent
    endpoint = hf_endpoint()
    why = "it is not downloaded (featx weights pull)" if not download else _why_offline(endpoint)
    if why:
        raise _offline_error(name, hf_layout(repo_id), why, "--weights FOLDER, one that save_pretrained wrote")
    _say(f"{name}: downloading {repo_id} ({revision}) from {endpoint} into {hf_cache_dir()}")
    for filename in (*needed, *optional):
        if not _hf_download(name, repo_id, filename, revision) and filename in needed:
            raise FeatxError(f"{name}: {repo_id} has no {filename}; is it a model in transformers' format?")
    if weights is None and not any(_hf_download(name, repo_id, f, revision) for f in HF_FILES):
        raise FeatxError(f"{name}: {repo_id} holds none of {', '.join(HF_FILES)}; pass --weights FOLDER")
    return hf_cached(repo_id, HF_FILES, revision).path.parent


def _hf_download(name: str, repo_id: str, filename: str, revision: str) -> bool:
    """hf_hub_download of one file into the cache; False when the repo has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        hf_hub_download(repo_id, filename, revision=revision, cache_dir=str(hf_cache_dir()), endpoint=hf_endpoint(),
                        etag_timeout=5)
    except EntryNotFoundError:
        return False
    except Exception as exc:  # httpx, repository and integrity errors: one line saying which
        raise FeatxError(f"{name}: could not download {filename} of {repo_id} from {hf_endpoint()} "
                         f"({exception_line(exc)})") from None
    return True


def check_repo_id(name: str, repo: str) -> str:
    """`repo` when huggingface_hub accepts it as a repo id, else one error line naming the backbone."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise FeatxError(f"--backbone {name}: {repo!r} is not a Hugging Face repo id ({exception_line(exc)})") from None
    return repo


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object (a config): one error line naming it otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FeatxError(f"{path}: not a readable JSON file ({exception_line(exc)})") from None
    if not isinstance(data, dict):
        raise FeatxError(f"{path}: holds a JSON {type(data).__name__}, not the object a config is")
    return data


def _check_hash_in_name(name: str, path: Path) -> None:
    from featx.digests import file_sha256

    found = HASH_IN_NAME.search(path.name)
    if found and not file_sha256(path).startswith(found.group(1)):
        raise FeatxError(f"{name}: the cached {path} is damaged (its sha256 does not start with {found.group(1)}); "
                         f"delete it and run `featx weights pull {name}` again")
