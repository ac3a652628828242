//! What a game opts into: rooms with presence and history ([`rooms::RoomsModule`]), and room
//! chat and whispers ([`chat::ChatModule`]). Each keeps its state in the game's and registers
//! its handlers and hooks through [`crate::world::Setup`], the API a game's own modules use.

pub mod chat;
pub mod rooms;
