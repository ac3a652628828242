//! What the chat world's tests and benches share.

pub mod room;
