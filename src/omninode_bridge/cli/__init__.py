"""The ``toolreg`` command line: a thin shell over the services."""
