//! Loom models for quickslot live in `tests/`.
