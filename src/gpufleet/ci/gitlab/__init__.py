"""GitLab Runner's custom executor (docs.gitlab.com/runner/executors/custom), as
`gpufleet ci gitlab config|prepare|run|cleanup` (see docs/ci.md).

- `prepare` submits an *allocation*: a gpufleet job whose command is the agent
  (`gpufleet.ci.gitlab.agent`), which holds the job's GPUs until released and runs the stage
  scripts that `run` hands it through the allocation directory (`files.py`).
- `run <script> <stage>` copies the runner's script into that directory, streams its output into
  the CI log, and answers with BUILD_FAILURE_EXIT_CODE (the real code in BUILD_EXIT_CODE_FILE) or
  SYSTEM_FAILURE_EXIT_CODE.
- `cleanup` releases the allocation (the agent ends; if it does not, the job is cancelled).
"""
