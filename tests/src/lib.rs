//! Black-box tests live in `tests/`; this crate holds no library code.
