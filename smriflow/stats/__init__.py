"""Group-level analysis: nilearn-style public functions (no nipype)."""
