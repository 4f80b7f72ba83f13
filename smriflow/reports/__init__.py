"""Assembly of reportlets into per-subject and group HTML reports (imports only ``smriflow.utils``)."""
