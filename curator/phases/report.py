"""Phase `report`: the run's HTML report (curator.report's builder), on demand (`curator report`)."""

from __future__ import annotations

from curator.phases.base import PhaseState

NAME = "report"
REQUIRES = ("manifest",)
POPULATES = ("report",)


def run(state: PhaseState, output: str | None = None) -> str:
    """Write the report (default `<run>/report.html`); returns its URI."""
    from curator.report import write_report

    return write_report(state.rundir.uri, output, state.config.report,
                        max_pixels=state.config.stages.ingest.max_pixels)
