//! Link identity: Snowflake-style ids and the short codes made from them.
//!
//! This module does no I/O. The worker-id lease that feeds [`IdGenerator`] lives in
//! `storage::worker_lease`; the generator only needs to be told which worker id it holds.

mod codec;
mod snowflake;

pub use codec::{CODE_LEN, CodeCodec, CodeKey, has_generated_shape};
pub use snowflake::{EPOCH_UNIX_MS, IdGenerator, MAX_WORKER_ID, WorkerId, compose_id, split_id};
