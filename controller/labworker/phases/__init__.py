"""Everything one LabWorker phase needs, in one module per group of phases.

What a phase asks the provider (its observe step), what it decides from the answer (its
decision handler) and how long it may take (its timeout) change together, so they live
together: `pending`, `provisioning`, `starting`, `serving` (Ready, Active, Draining),
`stopping` (Stopping, Stopped), `terminating` and `failed`. `table.py` lists them per Phase;
`decide` (step c) and `observe` (step b) both dispatch through that one table, so a phase
cannot be half-registered. The legal moves stay in `controller/labworker/phase.py`
(docs/architecture.md, Phases), which every handler's move is checked against.

This file imports nothing, so that `draft` and `observed` (the shared building blocks) load
without loading every phase.
"""
