"""Test and benchmark helpers that ship with curator (nothing here is imported by the
pipeline): videos whose frames carry their own index (so a model server can say exactly
which frames it got), a small local OpenAI-compatible chat-completions server that reads
them, tiny random-weight models, storage emulators started on free ports
(:mod:`~curator.testing.emulators`, pytest fixtures in :mod:`~curator.testing.fixtures`)
and a fault-injecting HTTP proxy (:mod:`~curator.testing.proxy`)."""
