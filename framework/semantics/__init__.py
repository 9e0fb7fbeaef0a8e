"""Pure decisions of the semantics in SPEC section 3: no I/O, no runtime, no backends."""
