"""Judge backends that run the model in this process.

- ``transformers``: a Qwen2.5-VL-class checkpoint from a local folder
  (``judge_model=/path/to/folder``; the folder's processor and chat template
  are used; ``judge_device`` picks the torch device (default cpu),
  ``judge_dtype`` the weights' dtype, ``judge_lora`` a LoRA adapter folder
  merged at load, as EditScore's released adapters).
- ``llama_cpp``: a multimodal GGUF through llama-cpp-python's chat handlers
  (``judge_model=model.gguf``, ``judge_mmproj=mmproj.gguf``,
  ``judge_chat_handler=qwen25vl`` or another handler class name).

One model, one request at a time: calls are serialised by a lock (the judge
service may still send several; they queue here).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

import numpy as np

from editmetrics.judges.backends import Answer, JudgeError, content_parts


def _folder_revision(folder: str) -> str:
    """A cheap fingerprint of a checkpoint folder: config.json's hash plus the
    names and sizes of the weight files (hashing gigabytes of weights on every
    run would cost minutes)."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == "config.json":
            with open(path, "rb") as fh:
                digest.update(fh.read())
        elif name.endswith((".safetensors", ".bin", ".gguf")):
            digest.update(f"{name}:{os.path.getsize(path)}".encode())
    return digest.hexdigest()[:16]


class TransformersBackend:
    name = "transformers"

    def __init__(self, settings: dict):
        folder = settings.get("judge_model")
        if not folder or not os.path.isdir(os.path.expanduser(str(folder))):
            raise ValueError(f"judge backend 'transformers' needs judge_model=FOLDER of a Qwen2.5-VL checkpoint "
                             f"(got {folder!r})")
        self.folder = os.path.abspath(os.path.expanduser(str(folder)))
        self.device = str(settings.get("judge_device") or "cpu")
        self.dtype = str(settings.get("judge_dtype") or "auto")
        self.revision = _folder_revision(self.folder)
        lora = settings.get("judge_lora")  # e.g. EditScore's LoRA adapter folder (merged at load)
        self.lora = os.path.abspath(os.path.expanduser(str(lora))) if lora else None
        if self.lora and not os.path.isdir(self.lora):
            raise ValueError(f"judge_lora: adapter folder not found: {self.lora}")
        self._model = self._processor = None
        self._lock = threading.Lock()

    def identity(self) -> dict:
        out = {"backend": self.name, "model": os.path.basename(self.folder), "path": self.folder,
               "revision": self.revision}
        if self.lora:
            out.update(lora=self.lora, lora_revision=_folder_revision(self.lora))
            out["model"] += "+" + os.path.basename(self.lora)  # the cache key tells merged models apart
        return out

    def _load(self):
        if self._model is None:
            try:
                import torch
                from transformers import AutoModelForImageTextToText, AutoProcessor
            except ImportError as exc:
                raise JudgeError(f"the transformers backend needs torch and transformers: {exc}") from None
            dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
            self._processor = AutoProcessor.from_pretrained(self.folder)
            model = AutoModelForImageTextToText.from_pretrained(self.folder, dtype=dtype)
            if self.lora:
                try:
                    from peft import PeftModel
                except ImportError:
                    raise JudgeError("judge_lora needs peft: pip install peft") from None
                model = PeftModel.from_pretrained(model, self.lora).merge_and_unload()
            self._model = model.to(self.device).eval()
        return self._model, self._processor

    def prompt_inputs(self, text: str, images: list[np.ndarray], images_first: bool = False):
        """Tokenised chat turn: the text, then the images (VIEScore's order), or
        the images first (``judge_images_first``, GEdit-Bench's Qwen2.5-VL path)."""
        from editmetrics.data.images import to_pil

        _, processor = self._load()
        pics = [{"type": "image"} for _ in images]
        content = pics + [{"type": "text", "text": text}] if images_first else [{"type": "text", "text": text}] + pics
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                               tokenize=False)
        return processor(text=[prompt], images=[to_pil(im) for im in images] or None, return_tensors="pt")

    def complete(self, text: str, images: list[np.ndarray], decoding: dict) -> Answer:
        import torch

        with self._lock:
            model, processor = self._load()
            inputs = self.prompt_inputs(text, images, bool(decoding.get("images_first"))).to(self.device)
            temperature = float(decoding.get("temperature") or 0.0)
            kwargs = {"max_new_tokens": int(decoding.get("max_tokens") or 1400), "do_sample": temperature > 0}
            if temperature > 0:
                kwargs["temperature"] = temperature
                for name in ("top_p", "top_k"):
                    if decoding.get(name) is not None:
                        kwargs[name] = decoding[name]
                if decoding.get("seed") is not None:
                    torch.manual_seed(int(decoding["seed"]))
            with torch.inference_mode():
                out = model.generate(**inputs, **kwargs)
            new = out[0, inputs["input_ids"].shape[1]:]
            answer = processor.decode(new, skip_special_tokens=True)
            eos = model.generation_config.eos_token_id
            eos = set(eos if isinstance(eos, list) else [eos])
            finish = "stop" if len(new) and int(new[-1]) in eos else "length"
        return Answer(text=answer, finish_reason=finish, usage={"prompt_tokens": int(inputs["input_ids"].shape[1]),
                                                                "completion_tokens": int(len(new))})


class LlamaCppBackend:
    name = "llama_cpp"

    def __init__(self, settings: dict):
        path = settings.get("judge_model")
        mmproj = settings.get("judge_mmproj")
        if not path or not os.path.isfile(os.path.expanduser(str(path))):
            raise ValueError(f"judge backend 'llama_cpp' needs judge_model=FILE.gguf (got {path!r})")
        if not mmproj or not os.path.isfile(os.path.expanduser(str(mmproj))):
            raise ValueError(f"judge backend 'llama_cpp' needs judge_mmproj=FILE.gguf, the vision projector "
                             f"(got {mmproj!r})")
        self.path = os.path.abspath(os.path.expanduser(str(path)))
        self.mmproj = os.path.abspath(os.path.expanduser(str(mmproj)))
        self.handler_name = str(settings.get("judge_chat_handler") or "qwen25vl")
        self.n_ctx = int(settings.get("judge_n_ctx") or 8192)
        self.revision = _folder_revision_files([self.path, self.mmproj])
        self._llm = None
        self._lock = threading.Lock()

    def identity(self) -> dict:
        return {"backend": self.name, "model": os.path.basename(self.path), "mmproj": os.path.basename(self.mmproj),
                "chat_handler": self.handler_name, "revision": self.revision}

    def chat_handler(self):
        try:
            from llama_cpp import llama_chat_format
        except ImportError:
            raise ValueError("the llama_cpp backend needs llama-cpp-python: pip install 'editmetrics[llm]'") from None
        return handler_class(llama_chat_format, self.handler_name)(clip_model_path=self.mmproj, verbose=False)

    def _load(self):
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(model_path=self.path, chat_handler=self.chat_handler(), n_ctx=self.n_ctx,
                              seed=0, verbose=False)
        return self._llm

    @staticmethod
    def messages(text: str, images: list[np.ndarray], images_first: bool = False) -> list[dict]:
        return [{"role": "user", "content": content_parts(text, images, images_first)}]

    def complete(self, text: str, images: list[np.ndarray], decoding: dict) -> Answer:
        with self._lock:
            llm = self._load()
            kwargs = {"temperature": float(decoding.get("temperature") or 0.0),
                      "max_tokens": int(decoding.get("max_tokens") or 1400)}
            for name in ("seed", "top_p", "top_k"):
                if decoding.get(name) is not None:
                    kwargs[name] = decoding[name]
            out = llm.create_chat_completion(messages=self.messages(text, images, bool(decoding.get("images_first"))),
                                             **kwargs)
        choice = out["choices"][0]
        return Answer(text=choice["message"].get("content"), finish_reason=choice.get("finish_reason"),
                      usage=out.get("usage"))


# handler names accepted by judge_chat_handler -> llama_chat_format class names
HANDLERS = {"qwen25vl": "Qwen25VLChatHandler", "llava15": "Llava15ChatHandler", "llava16": "Llava16ChatHandler",
            "minicpmv26": "MiniCPMv26ChatHandler", "moondream": "MoondreamChatHandler",
            "gemma4": "Gemma4ChatHandler", "mtmd": "MTMDChatHandler"}


def handler_class(module, name: str):
    cls_name = HANDLERS.get(name, name)
    cls = getattr(module, cls_name, None)
    if cls is None:
        have = sorted(n for n in dir(module) if n.endswith("ChatHandler"))
        raise ValueError(f"llama-cpp-python has no chat handler {cls_name!r}; it has {have}")
    return cls


def _folder_revision_files(paths: list[str]) -> str:
    digest = hashlib.sha256(json.dumps([(os.path.basename(p), os.path.getsize(p)) for p in paths]).encode())
    return digest.hexdigest()[:16]
