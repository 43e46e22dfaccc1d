//! rlhf-data: see DESIGN.md
