"""Quality control of one subject: image-quality and processing-quality metrics (no nipype)."""
