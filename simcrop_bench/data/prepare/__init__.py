"""``data prepare``: convert a downloaded (official) layout into the one tasks read."""
