"""Pure functions on arrays, images and paths. Never imports nipype."""
