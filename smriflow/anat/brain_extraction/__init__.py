"""Brain extraction methods: the template-based default (:mod:`.template`) and deepbet (:mod:`.deepbet`)."""
