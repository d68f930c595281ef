"""The functional core: invoice validation rules over plain data, no I/O."""
