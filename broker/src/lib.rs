//! Placeholder: the broker is being written.
