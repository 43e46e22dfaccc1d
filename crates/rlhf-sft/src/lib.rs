//! rlhf-sft: built in a later issue (see ../shared/DESIGN.md). The crate exists so the workspace has its final shape.
