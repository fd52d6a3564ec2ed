//! Text files: lines in, lines out.

pub mod sink;
pub mod source;
