//! Placeholder: the SDK is being written.
