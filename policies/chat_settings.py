"""`ChatSettings`: how a model's prompts are formatted and its replies parsed, recorded in
the model directory so eval, train and serve use what the model was trained with.

    settings = ChatSettings(prefill='{"', tool_format="auto")
    settings.save("runs/sft1/model")                 # writes runs/sft1/model/chat.json
    ChatSettings.for_model("runs/sft1/model")        # read back; the project default elsewhere
    ChatSettings.for_model("smollm2", prefill="")    # an explicit value wins over the record

Fields (each one an argument of `ChatCodec` / `LLMPolicy`):

- ``prefill``: the assistant text every reply is forced to start with (fed as prompt
  tokens; prepended to the reply before parsing).
- ``tool_format``: ``auto`` | ``native`` | ``compact`` | ``json`` | ``none`` (how tools are
  shown to the model; see `ecomrlve.policies.codec`).
- ``lenient``: accept a reply that starts with a JSON object and then goes on.
- ``chat_template_sha256``: sha256 of the tokenizer's chat template the model was trained
  with. The template itself is the tokenizer's, saved in the same directory; the digest
  lets a reader notice a directory whose tokenizer was swapped (`check_template`).

``chat.json`` is written by ``ecomrlve sft`` and by every ``ecomrlve train`` checkpoint
(and the warm start). A directory without it but with an ``sft.json`` one level up (the
layout of ``ecomrlve sft`` before ``chat.json`` existed) gives that file's prefill. Any other
model (an alias such as ``smollm2``, a Hugging Face id, a plain directory) gets the project
default, `DEFAULT`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

__all__ = ["ChatSettings", "DEFAULT", "CHAT_FILE", "TOOL_FORMATS", "template_sha256"]

CHAT_FILE = "chat.json"
TOOL_FORMATS = ("auto", "native", "compact", "json", "none")


def template_sha256(tokenizer) -> str | None:
    """sha256 of `tokenizer`'s chat template (None when it has none)."""
    t = getattr(tokenizer, "chat_template", None)
    if t is None:
        return None
    text = t if isinstance(t, str) else json.dumps(t, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChatSettings:
    prefill: str = '{"'
    tool_format: str = "auto"
    lenient: bool = False
    chat_template_sha256: str | None = None

    def __post_init__(self):
        if not isinstance(self.prefill, str):
            raise ValueError(f"prefill must be a string, got {self.prefill!r}")
        if self.tool_format not in TOOL_FORMATS:
            raise ValueError(f"tool_format must be one of {', '.join(TOOL_FORMATS)}, got {self.tool_format!r}")
        if not isinstance(self.lenient, bool):
            raise ValueError(f"lenient must be true or false, got {self.lenient!r}")

    # ---- construction
    def override(self, prefill: str | None = None, tool_format: str | None = None,
                 lenient: bool | None = None) -> "ChatSettings":
        """These settings with every argument that is not None put in."""
        given = {k: v for k, v in (("prefill", prefill), ("tool_format", tool_format), ("lenient", lenient))
                 if v is not None}
        return replace(self, **given) if given else self

    @classmethod
    def from_dict(cls, d: dict, where: str = "chat settings") -> "ChatSettings":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**d)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, model_dir) -> "ChatSettings | None":
        """The settings recorded in `model_dir` (``chat.json``, else the prefill of a sibling
        ``../sft.json``), or None when it records none."""
        d = Path(model_dir)
        if not d.is_dir():
            return None
        f = d / CHAT_FILE
        if f.is_file():
            return cls.from_dict(json.loads(f.read_text()), str(f))
        old = d.parent / "sft.json"
        if old.is_file():
            rec = json.loads(old.read_text())
            if isinstance(rec.get("prefill"), str):
                return cls(prefill=rec["prefill"])
        return None

    @classmethod
    def for_model(cls, model: str | None, prefill: str | None = None, tool_format: str | None = None,
                  lenient: bool | None = None) -> "ChatSettings":
        """The settings for `model` (a name or directory): its recorded ones, else `DEFAULT`;
        arguments that are not None override them."""
        recorded = cls.load(Path(model).expanduser()) if model else None
        return (recorded or DEFAULT).override(prefill, tool_format, lenient)

    # ---- use
    def with_template(self, tokenizer) -> "ChatSettings":
        """These settings stamped with `tokenizer`'s chat template digest."""
        return replace(self, chat_template_sha256=template_sha256(tokenizer))

    def check_template(self, tokenizer) -> None:
        """Raise ValueError when these settings were recorded with another chat template
        than `tokenizer`'s (a directory without a recorded digest passes)."""
        if self.chat_template_sha256 and self.chat_template_sha256 != template_sha256(tokenizer):
            raise ValueError("chat_template_sha256: the tokenizer's chat template is not the one this model "
                             "was trained with")

    def codec(self, tokenizer):
        """A `ChatCodec` for `tokenizer` with these settings (`check_template` first)."""
        from .codec import ChatCodec

        self.check_template(tokenizer)

        return ChatCodec(tokenizer, tool_format=self.tool_format, prefill=self.prefill, lenient=self.lenient)

    def save(self, model_dir, tokenizer=None) -> Path:
        """Write ``model_dir/chat.json`` (stamped with `tokenizer`'s template when given)."""
        s = self.with_template(tokenizer) if tokenizer is not None else self
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / CHAT_FILE).write_text(json.dumps(asdict(s), indent=2, sort_keys=True) + "\n")
        return d / CHAT_FILE


DEFAULT = ChatSettings()
