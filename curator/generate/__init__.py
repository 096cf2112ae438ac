"""`curator generate`: fill coverage gaps with generated footage, curated like real footage and
tagged with its provenance (docs/generate.md).

Modules: ``prompts`` (cells of targets, prompts from the place taxonomy, ids and seeds),
``upsample`` (an optional text LLM rewrite), ``generators`` (command, batch command, HTTP
endpoint; output validation), ``ledger`` (the durable record that makes reruns idempotent and
holds the budget), ``loop`` (rounds of generate -> curate -> recount).
"""

from __future__ import annotations

from curator.generate.generators import CommandGenerator, EndpointGenerator, Generator, Job, Outcome, validate_video
from curator.generate.ledger import Ledger, LedgerState
from curator.generate.loop import Loop, Options, Result, run
from curator.generate.prompts import Prompt, cells_of, make_prompt, prompts_for

__all__ = ["CommandGenerator", "EndpointGenerator", "Generator", "Job", "Ledger", "LedgerState", "Loop", "Options",
           "Outcome", "Prompt", "Result", "cells_of", "make_prompt", "prompts_for", "run", "validate_video"]
