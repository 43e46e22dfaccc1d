//! The stage binaries (`src/bin`) and the examples of rlhf. Their library code (the pipeline,
//! run directories, configs, plots, FLOP counts) lives in the `rlhf-pipeline` crate and is
//! re-exported here, so that binaries, examples and tests name it as `rlhf_examples::...`.

pub use rlhf_pipeline::*;
