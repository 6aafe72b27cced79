"""Meta-evaluation: how well a metric agrees with human judgements, each
human-judgement set scored by its own published protocol (docs/judges.md)."""
