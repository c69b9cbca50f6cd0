//! Per-process supervision.
