"""The engine: YAML workflow spec → validated → nipype ``Workflow`` → run by the chosen plugin."""
