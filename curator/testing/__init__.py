"""Test and benchmark helpers that ship with curator: storage emulators and a
fault-injecting HTTP proxy, a local multi-node Ray cluster, videos whose frames carry
their own index (so a model server can say exactly which frames it got) and a small local
OpenAI-compatible chat-completions server that reads them.

Used by the project's tests and benchmarks; nothing here is imported by the pipeline.
"""
