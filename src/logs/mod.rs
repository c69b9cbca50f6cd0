//! Log capture.
