//! Importing models trained elsewhere: a pickle reader that executes no code ([`pickle`]), the
//! NeuralTalk checkpoint mapping ([`neuraltalk`]) and NeuralTalk's reference outputs
//! ([`reference`]), against which an import is checked.

pub mod neuraltalk;
pub mod pickle;
pub mod reference;
