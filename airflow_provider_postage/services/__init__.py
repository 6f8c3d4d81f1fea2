"""One module per postage service, each registering a :class:`~.base.PostageService`."""
