//! Wire types that clients speak to the gateway. Only the fields the gateway reads or changes
//! are typed; everything else rides along in a flattened map so unknown fields pass through.

pub mod anthropic;
pub mod openai;
pub mod responses;
