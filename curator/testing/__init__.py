"""Test and benchmark helpers that ship with curator: videos whose frames carry their own
index (so a model server can say exactly which frames it got) and a small local
OpenAI-compatible chat-completions server that reads them."""
