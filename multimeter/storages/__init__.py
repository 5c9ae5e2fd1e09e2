"""Where results go: the :class:`~multimeter.storages.base.Storage` family."""
