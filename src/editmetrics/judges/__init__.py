"""VLM judges (VIEScore) behind interchangeable backends, and meta-evaluation.

- ``prompts``: versioned prompt files and their hashes;
- ``parse``: strict parsing of a judge's JSON answer (no guessing);
- ``backends``: ``openai`` (any OpenAI-compatible chat endpoint), ...;
- ``service``: the run's judge service: cached, concurrent, retried requests;
- ``viescore``: the ``viescore`` metric (SC, PQ, O);
- ``plugin``: registration (a built-in plugin).

See docs/judges.md.
"""
