"""The checker's guarantee families, one module each: a check reads the history (and where it must, the
database or a partner simulator) and adds counts and violations to the report."""
