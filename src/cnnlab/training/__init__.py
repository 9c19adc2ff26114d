"""Training: one function assembles a training from a config (``assemble``); the spine runs it
into a run directory (``spine.run_training``) or in memory (``spine.train_model``)."""
