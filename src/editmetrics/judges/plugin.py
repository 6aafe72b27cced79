"""Built-in plugin: the judge metrics and the ``meta-eval`` command."""

from __future__ import annotations

from editmetrics.plugins.hookspecs import hookimpl


@hookimpl
def register_metrics(register):
    from editmetrics.judges.editreward import EditReward
    from editmetrics.judges.viescore import EditScore, VIEScore

    register(VIEScore)
    register(EditScore)
    register(EditReward)


@hookimpl
def register_commands(cli):
    from editmetrics.analysis.metaeval.command import add_command

    add_command(cli)


@hookimpl
def register_settings(register):
    from editmetrics.engine.settings import Setting

    # affects_scores: what decides the judged value (recorded in provenance);
    # transport settings decide only whether a request ends as null, never the value.
    for args in [
        ("judge_backend", "str", "openai", "judge backend: openai, transformers or llama_cpp", True),
        ("judge_model", "str", None, "judge model: the served name (openai) or a local folder/GGUF", True),
        ("judge_url", "str", None, "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1", False),
        ("judge_api_key", "str", None, "bearer token for judge_url (never recorded)", False),
        ("judge_passes", "int", 1, "answers sampled per prompt and averaged (spread reported)", True),
        ("judge_temperature", "float", 0.0, "judge sampling temperature", True),
        ("judge_max_tokens", "int", 1400, "most tokens a judge answer may take", True),
        ("judge_seed", "int", None, "sampling seed; pass i sends seed + i", True),
        ("judge_images_first", "bool", False, "put the images before the text in judge prompts", True),
        ("judge_concurrency", "int", 4, "judge requests in flight at once", False),
        ("judge_timeout", "float", 120.0, "seconds before a judge request counts as failed", False),
        ("judge_max_retries", "int", 3, "retries for HTTP 408/429/5xx and timeouts", False),
        ("judge_backoff", "float", 1.0, "first retry delay in seconds (doubling, at most 60)", False),
        ("judge_cache_dir", "path", None, "folder of cached judge answers (a rerun sends no request)", False),
        ("judge_device", "str", "cpu", "device of an in-process judge (transformers)", False),
        ("judge_dtype", "str", "auto", "dtype of an in-process judge (transformers)", True),
        ("judge_lora", "path", None, "LoRA folder merged into the transformers judge (needs peft)", True),
        ("judge_mmproj", "path", None, "multimodal projector GGUF of a llama_cpp judge", True),
        ("judge_chat_handler", "str", "qwen25vl", "llama-cpp-python chat handler of a llama_cpp judge", True),
        ("judge_n_ctx", "int", 8192, "context length of a llama_cpp judge", False),
        ("editreward_base", "path", None, "EditReward base model folder (Qwen2.5-VL)", True),
        ("editreward_checkpoint", "path", None, "EditReward reward-head checkpoint", True),
        ("editreward_device", "str", None, "device of EditReward (default: the run's --device)", False),
        ("editreward_dtype", "str", "float32", "dtype of EditReward", True),
        ("editreward_pixels", "int", 200704, "pixels per image after Qwen's smart_resize", True),
    ]:
        register(Setting(*args))
