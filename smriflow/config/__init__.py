"""Configuration files: the workflow YAML schema, the execution configs, and the YAML loader they share."""
