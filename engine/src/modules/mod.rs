//! What a game opts into: rooms with presence and history ([`rooms`]), and room chat and
//! whispers ([`chat`]). Each module keeps its state in the game's and has hooks the game calls
//! from its own.

pub mod chat;
pub mod rooms;
