"""Resolve a model source and load it, turning every failure into one sentence."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import libs, memory
from .errors import (
    DeviceUnavailableError,
    EngineError,
    MissingFilesError,
    ModelNotFoundError,
    NotCachedOfflineError,
    OutOfMemoryError,
    QuantizationError,
    TemplateError,
)
from .progress import Progress
from .spec import ModelSpec, path_exists

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
_HUB_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.jinja",
    "*.tiktoken",
    "tokenizer*",
]


@dataclass
class ResolvedSource:
    folder: Path
    gguf_file: str | None = None
    hub_id: str | None = None
    revision: str | None = None


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    source: ResolvedSource
    device: str
    dtype: str
    footprint_bytes: int
    load_seconds: float
    estimate: memory.MemoryEstimate | None
    chat_template: str | None = None
    notices: list[str] = field(default_factory=list)
    weights_id: str | None = None
    """A cheap fingerprint of the weights files (see :mod:`.provenance`), once known."""
    _context_limit: int | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.display_name

    @property
    def context_limit(self) -> int | None:
        if self.model is None:  # set aside for a moment (LocalEngine.set_aside) or unloaded
            return self._context_limit
        cfg = self.model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self._context_limit = getattr(cfg, "max_position_embeddings", None)
        return self._context_limit

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that is not on disk is a path."""
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or "\\" in source
        or source.lower().endswith(".gguf")
    )


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")


def check_local_source(spec: ModelSpec) -> None:
    """Raise :class:`MissingFilesError` at once for a source on this machine that cannot
    load (no such file or folder, a folder without config or weights); nothing is read
    beyond a directory listing. A Hub id passes (it is looked up when loading)."""
    if spec.is_default:
        return
    source = spec.source
    path = Path(source).expanduser()
    exists = path_exists(source)  # False for a name the system refuses (too long)
    if spec.is_gguf:
        if not exists or not path.is_file():
            raise MissingFilesError(f"No such GGUF file: {source}.")
        return
    if exists and path.is_dir():
        if not (path / "config.json").is_file():
            raise MissingFilesError(
                f"{source} has no config.json, so it is not a transformers model folder."
            )
        if not any(any(path.glob(p)) for p in _WEIGHT_PATTERNS):
            raise MissingFilesError(
                f"{source} has a config.json but no weights (*.safetensors or *.bin)."
            )
        return
    if exists:
        raise MissingFilesError(f"{source} is a file but not a .gguf model.")
    if _looks_like_path(source):
        raise MissingFilesError(f"No such folder or file: {source}.")


def _is_hub_id(spec: ModelSpec) -> bool:
    """Whether ``spec`` names a model on the Hub: not the bundled one, nor a path."""
    return not (spec.is_default or _looks_like_path(spec.source) or path_exists(spec.source))


def check_source(spec: ModelSpec) -> None:
    """:func:`check_local_source`, and for a Hub id its syntax: raise at once, before
    anything is loaded, for a source that cannot name a model (``--compare`` checks its
    models so, before the reference is loaded)."""
    check_local_source(spec)
    if not _is_hub_id(spec):
        return
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(spec.source)
    except HFValidationError:
        raise _not_a_model(spec.source) from None


def _not_a_model(source: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"{source!r} is not a folder, a .gguf file or a valid Hugging Face Hub id."
    )


def on_this_machine(spec: ModelSpec) -> bool:
    """Whether ``spec`` loads without a download: the bundled model, a file or folder,
    or a Hub id whose snapshot is in the local cache. Nothing is asked of the network."""
    if not _is_hub_id(spec):
        return True
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(
            spec.source,
            revision=spec.revision,
            allow_patterns=["config.json"],
            local_files_only=True,
        )
    except Exception:
        return False
    return True


def resolve_source(
    spec: ModelSpec, progress: Progress | None = None, *, allow_download: bool = True
) -> ResolvedSource:
    """Find the files for ``spec.source`` on disk, downloading from the Hub if allowed
    (``allow_download``: the user asked for this model at this moment, not a file)."""
    from . import default_model

    report = progress or (lambda f, s: None)
    source = spec.source
    # a first-use conversion reports 0..1 of its own: map it below the load's stages
    convert_report = lambda fraction, stage: report(0.1 * fraction, stage)  # noqa: E731
    if spec.is_default:
        return ResolvedSource(
            default_model.ensure_converted(convert_report), hub_id=default_model.HUB_ID
        )

    check_local_source(spec)
    path = Path(source).expanduser()
    if spec.is_gguf:
        return ResolvedSource(default_model.convert_gguf(path, progress=convert_report))
    if path_exists(source) and path.is_dir():
        return ResolvedSource(path)
    return _resolve_hub(spec, report, allow_download)


def _resolve_hub(spec: ModelSpec, report: Progress, allow_download: bool = True) -> ResolvedSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from .progress import make_bar_class

    repo = spec.source
    patterns = _HUB_PATTERNS + (["*.py"] if spec.trust_remote_code else [])
    hint = (
        "download it where the Hub is reachable (`hf download "
        f"{repo}`) or pass a local folder or .gguf file with --model"
    )
    try:
        folder = snapshot_download(
            repo, revision=spec.revision, allow_patterns=patterns, local_files_only=True
        )
        return ResolvedSource(Path(folder), hub_id=repo, revision=spec.revision)
    except HFValidationError:
        raise _not_a_model(repo) from None
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if not allow_download:
        raise NotCachedOfflineError(
            f"{repo} is not on this machine, and chat-tui downloads a model that a file names "
            "only when you ask; load it yourself (ctrl+l, or --model) to download it."
        )
    if _offline():
        raise NotCachedOfflineError(
            f"{repo} is not in the local Hugging Face cache and offline mode is on; {hint}."
        )
    report(0.01, f"downloading {repo}")
    try:
        folder = snapshot_download(
            repo,
            revision=spec.revision,
            allow_patterns=patterns,
            tqdm_class=make_bar_class(report, (0.01, 0.5)),
        )
    except GatedRepoError:
        raise ModelNotFoundError(
            f"{repo} is gated: accept its licence on the Hub and log in with `hf auth login`."
        ) from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"{repo} has no revision {spec.revision!r}.") from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"No model {repo!r} on the Hugging Face Hub (or it is private and you are not "
            "logged in)."
        ) from None
    except Exception:
        raise NotCachedOfflineError(
            f"{repo} is not in the local Hugging Face cache and the Hub cannot be reached; {hint}."
        ) from None
    return ResolvedSource(Path(folder), hub_id=repo, revision=spec.revision)


def resolve_device(requested: str) -> str:
    torch = libs.torch()

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"{requested} was asked for but this machine has no CUDA device available to "
                f"torch {torch.__version__}; use --device cpu or auto."
            )
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"{requested} was asked for but only {torch.cuda.device_count()} CUDA "
                "device(s) exist."
            )
        return f"cuda:{index}"
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError(
                "mps was asked for but Apple's Metal backend is not available here; use "
                "--device cpu or auto."
            )
    return requested


def _config_dtype(config: Any) -> str:
    torch = libs.torch()

    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def resolve_dtype(spec: ModelSpec, config: Any, device: str) -> str:
    """``auto``: fp32 on CPU (bf16/fp16 matmuls are slow there), the checkpoint's own
    half precision on an accelerator."""
    if spec.dtype != "auto":
        return spec.dtype
    if device == "cpu":
        return "fp32"
    return _config_dtype(config) if _config_dtype(config) != "fp32" else "fp16"


def _torch_dtype(name: str) -> Any:
    torch = libs.torch()

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _quantization_config(spec: ModelSpec, device: str, dtype: str) -> Any:
    if spec.quantization == "none":
        return None
    label = spec.precision_label
    if device == "mps":
        raise QuantizationError(
            f"bitsandbytes {label} quantization does not run on mps; use --device cpu or "
            "drop the quantization."
        )
    try:
        libs.bitsandbytes()
        BitsAndBytesConfig = libs.transformers().BitsAndBytesConfig
    except Exception as exc:
        raise QuantizationError(
            f"{label} quantization needs a working bitsandbytes ({exc.__class__.__name__}); "
            "install it with `pip install bitsandbytes`."
        ) from None
    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = spec.bnb_4bit_compute_dtype
    if compute == "auto":
        compute = "fp32" if device == "cpu" else dtype
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=spec.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=_torch_dtype(compute),
    )


def _available_bytes(device: str) -> int:
    return memory.available_bytes(device)


MAX_TEMPLATE_BYTES = 1024 * 1024


def read_chat_template(path: str | None) -> str | None:
    """The text of a chat template file: a regular UTF-8 file of at most 1 MiB (a FIFO,
    a device or a huge file is refused at once, never read)."""
    from ..store.atomic import ReadRefused, read_bounded

    if not path:
        return None
    try:
        return read_bounded(Path(path).expanduser(), MAX_TEMPLATE_BYTES).decode("utf-8")
    except ReadRefused as exc:
        raise TemplateError(f"Cannot read chat template {path}: it {exc}.") from None
    except UnicodeDecodeError:
        raise TemplateError(f"Cannot read chat template {path}: it is not UTF-8 text.") from None
    except OSError as exc:
        raise TemplateError(f"Cannot read chat template {path}: {exc.strerror or exc}.") from None


def quiet_libraries() -> None:
    """transformers' own bars and warnings would scribble over a terminal UI; chat-tui
    reports progress through callbacks and errors as sentences instead."""
    hf_logging = libs.transformers().utils.logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load(
    spec: ModelSpec, progress: Progress | None = None, *, allow_download: bool = True
) -> LoadedModel:
    """Load ``spec``. Raises :class:`EngineError` with one clear sentence on failure.
    ``allow_download=False``: a Hub id that is not in the local cache is refused."""
    report = progress or (lambda f, s: None)
    started = time.perf_counter()
    template = read_chat_template(spec.chat_template_file)
    try:
        quiet_libraries()
        return _load(spec, report, started, template, allow_download)
    except EngineError:
        _after_failure()
        raise
    except Exception as exc:  # map the library's many failure modes to one sentence
        _after_failure()
        raise _explain(spec, exc) from exc


def _after_failure() -> None:
    """Whatever a failed load built (half-loaded weights, a quantizer's buffers) is
    garbage now; free it so the next load has the memory."""
    memory.release()


def _explain(spec: ModelSpec, exc: BaseException) -> EngineError:
    torch = sys.modules.get("torch")  # the failure may be torch's own import
    oom = (MemoryError,) + ((torch.OutOfMemoryError,) if torch is not None else ())

    name = spec.display_name
    if isinstance(exc, oom):
        return OutOfMemoryError(f"Ran out of memory while loading {name}; try a smaller precision.")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if "trust_remote_code" in str(exc):
        return EngineError(
            f"{name} ships its own code; load it with --trust-remote-code if you trust it."
        )
    if "bitsandbytes" in str(exc).lower() or "quantiz" in str(exc).lower():
        return QuantizationError(f"{spec.precision_label} is not possible for {name}: {text}")
    if isinstance(exc, (OSError, FileNotFoundError)):
        return MissingFilesError(f"Cannot load {name}: {text}")
    return EngineError(f"Cannot load {name}: {text}")


def _load(
    spec: ModelSpec,
    report: Progress,
    started: float,
    template: str | None,
    allow_download: bool = True,
) -> LoadedModel:
    report(0.0, f"resolving {spec.display_name}")
    transformers = libs.transformers()  # imported here, off the UI path
    auto_config, auto_model = transformers.AutoConfig, transformers.AutoModelForCausalLM

    from .progress import transformers_bars

    device = resolve_device(spec.device)
    source = resolve_source(spec, report, allow_download=allow_download)
    report(0.1, "reading config")
    with libs.lock:
        config = auto_config.from_pretrained(
            source.folder, revision=None, trust_remote_code=spec.trust_remote_code
        )
    dtype = resolve_dtype(spec, config, device)
    quant = _quantization_config(spec, device, dtype)

    estimate = memory.estimate(config, dtype, spec.quantization, spec.trust_remote_code)
    available = _available_bytes(device)
    if estimate.weight_bytes > available:
        raise OutOfMemoryError(
            f"{spec.display_name} needs about {memory.human_bytes(estimate.weight_bytes)} for its "
            f"weights in {spec.precision_label if spec.quantization != 'none' else dtype} but only "
            f"{memory.human_bytes(available)} is free on {device}; try a smaller precision "
            "(--dtype bf16, --load-in-8bit or --load-in-4bit) or a smaller model."
        )

    report(0.15, "loading tokenizer")
    with libs.lock:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            source.folder, trust_remote_code=spec.trust_remote_code
        )
    kwargs: dict[str, Any] = {
        "dtype": _torch_dtype(dtype),
        "trust_remote_code": spec.trust_remote_code,
    }
    if spec.attn_implementation != "auto":
        kwargs["attn_implementation"] = spec.attn_implementation
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device if device != "cpu" else "cpu"}
    elif device != "cpu":
        kwargs["device_map"] = {"": device}
    report(0.2, "loading weights")
    # The whole load holds the lock: the model's class is resolved (its module imported)
    # inside from_pretrained, as are the quantizer's pieces.
    with libs.lock, transformers_bars(report, (0.2, 0.95)):
        model = auto_model.from_pretrained(source.folder, **kwargs)
    model.eval()
    if quant is not None and device == "cpu":
        _own_weights(model)
    report(0.97, "ready")
    loaded = LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=device,
        dtype=dtype,
        footprint_bytes=memory.model_footprint(model),
        load_seconds=time.perf_counter() - started,
        estimate=estimate,
        chat_template=template,
    )
    report(1.0, f"loaded {spec.display_name} in {loaded.load_seconds:.1f} s")
    return loaded


def _own_weights(model: Any) -> None:
    """Copy a CPU-quantized model's unquantized weights (embeddings, norms, an untied
    LM head) out of the checkpoint's memory map.

    transformers loads safetensors through one memory map per file, and the weights it
    does not quantize stay views of it. Quantizing reads every page of the file, and
    those views then keep the whole mapping resident: a 4-bit SmolLM2 (159 MiB of
    weights) kept its 513 MiB fp32 file in RSS. Copies free the mapping; weights shared
    between modules (tied embeddings) stay shared."""
    torch = libs.torch()
    copies: dict[int, Any] = {}
    with torch.no_grad():
        for module in model.modules():
            for name, param in list(module._parameters.items()):
                # bitsandbytes' Params4bit/Int8Params are subclasses: their own memory
                if param is None or type(param) is not torch.nn.Parameter:
                    continue
                if param.device.type != "cpu":
                    continue
                if id(param) not in copies:
                    copies[id(param)] = torch.nn.Parameter(
                        param.detach().clone(), requires_grad=param.requires_grad
                    )
                module._parameters[name] = copies[id(param)]
            for name, buffer in list(module._buffers.items()):
                if buffer is not None and buffer.device.type == "cpu":
                    if id(buffer) not in copies:
                        copies[id(buffer)] = buffer.clone()
                    module._buffers[name] = copies[id(buffer)]


@dataclass
class EstimateReport:
    estimate: memory.MemoryEstimate
    dtype: str
    device: str
    available: int

    def describe(self, tokens: int = 4096, together: int = 4) -> str:
        """Whether the weights and one conversation of ``tokens`` fit, and whether
        ``together`` such conversations streaming at once (their caches in one batch)
        do too."""
        fits = "fits" if self.estimate.total_bytes(tokens) < self.available else "does NOT fit"
        batch = self.estimate.weight_bytes + together * self.estimate.kv_bytes(tokens)
        text = (
            f"{self.estimate.describe(tokens)}; {memory.human_bytes(self.available)} free on "
            f"{self.device}: {fits}"
        )
        if fits == "fits" and together > 1:
            verdict = "fit too" if batch < self.available else "do NOT fit (joins wait)"
            text += f"; {together} such conversations streaming at once {verdict}"
        return text


def estimate_for(spec: ModelSpec) -> EstimateReport:
    """The memory ``spec`` would need, from a config already on this machine (nothing is
    downloaded or converted). Raises :class:`EngineError` if no config is at hand.

    May wait for a model load in another thread (see :mod:`.libs`)."""
    from . import default_model

    if spec.is_default:
        folder = default_model.converted_dir()
    elif spec.is_gguf:
        folder = default_model.converted_dir(Path(spec.source).expanduser())
    elif path_exists(spec.source) and Path(spec.source).expanduser().is_dir():
        folder = Path(spec.source).expanduser()
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(
                snapshot_download(
                    spec.source,
                    revision=spec.revision,
                    allow_patterns=["config.json"],
                    local_files_only=True,
                )
            )
        except Exception:
            raise NotCachedOfflineError(
                f"No local config for {spec.source}; the estimate appears once it is downloaded."
            ) from None
    if not (folder / "config.json").is_file():
        raise MissingFilesError(
            f"No config for {spec.display_name} yet (it is converted on first load)."
        )
    auto_config = libs.transformers().AutoConfig
    with libs.lock:
        config = auto_config.from_pretrained(folder, trust_remote_code=spec.trust_remote_code)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec, config, device)
    estimate = memory.estimate(config, dtype, spec.quantization, spec.trust_remote_code)
    return EstimateReport(estimate, dtype, device, _available_bytes(device))
