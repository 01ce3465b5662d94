//! Click counting: tallied in memory on the redirect path, written to Postgres in batches.
//!
//! The redirect path only ever touches [`ClickRecorder::record`]: a short critical section on
//! one of several sharded std mutexes (never held across an `.await`). The flusher task owns
//! every database write, and its queue of unwritten batches is bounded.

mod bots;
mod flusher;
mod recorder;

pub use bots::{click_kind, is_bot};
pub use flusher::{FlushSettings, run_flusher};
pub use recorder::{ClickKind, ClickRecorder};
