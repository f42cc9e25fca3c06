"""Testing tools that ship with the engine, for its own tests and benches and for anyone extending it.

- `FakeProvider` (engine.testing.fake): an in-process model with deterministic answers, configurable latency
  and faults (markers in the prompt), counting every call: drives the scheduler in milliseconds.
- engine.testing.servers: real HTTP servers on 127.0.0.1 speaking the OpenAI, Anthropic and Google wire formats
  exactly (`OpenAICompatServer`, `AnthropicCompatServer`, `GoogleCompatServer`), with fault injection,
  server-side rate limits and request counting; each also runs standalone (`python -m
  engine.testing.servers.openai_compat --port 8011`), as the benches start them. Their batch APIs
  (`OpenAIBatchServer`, `AnthropicBatchServer`, `GoogleBatchServer` in `*_batch.py`) add jobs, files and
  results with faults, counting every request submitted (transport = "batch", engine.batch).
- engine.testing.synthetic: run folders with known effects (the layout a run writes), for the analysis.
- engine.testing.ray_cluster: a real two-node Ray cluster on this machine (`local_cluster()`), for the `ray`
  tests and bench/scaleout.py.

As inspect_ai ships `mockllm` and httpx its `MockTransport`: tests of code built on the engine need the same
fakes the engine's own tests use. Nothing here is imported by the engine itself.
"""

from engine.testing.fake import FakeProvider

__all__ = ["FakeProvider"]
