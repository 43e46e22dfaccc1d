//! Shared helpers of the rlhf binaries.
