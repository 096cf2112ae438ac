"""Test and benchmark support that ships with curator: not used by the pipeline at run time.

Nothing under ``curator/`` outside this package imports it (tests/unit/test_layout.py
checks); tests, benchmarks and samples/make_samples.py do. It holds

- storage emulators (moto S3, gcp-storage-emulator, Azurite) and a fault-injecting HTTP proxy;
- videos whose frames carry their own index (so a model server can say exactly which frames it
  got) and a small local OpenAI-compatible chat-completions server that reads them;
- tiny random-weight models and run manifests with given embeddings;
- synthetic videos with exact ground truth (``synth``: shots with known cuts; ``synth_filters``:
  the labelled clip set of the filter tests; ``synth_hostile``: the hostile-input corpus).
"""
