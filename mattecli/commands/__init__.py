"""One module per ``mattecli`` command; ``mattecli/cli.py`` registers them."""
