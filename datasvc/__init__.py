"""datasvc: the HTTP service through which internal services read and write the users database."""
