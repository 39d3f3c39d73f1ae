"""Long-running jobs: drain (events -> SLA state), write-back, sweeper, reconciler, and the runtime that
composes them (plugin/jobs/runtime.py)."""
