"""Client checks; each runs in the clients' virtualenv as a script and prints one line on success."""
