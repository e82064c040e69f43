"""``data check``: layout and content checks of a dataset root, one problem per line."""
