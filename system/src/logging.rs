//! raft-rs logs through slog; this drain forwards its records to `tracing`, so that a node has
//! one log stream with the node id and group on every line.

use slog::{Drain, KV, Level, OwnedKVList, Record, Serializer};
use std::fmt::{self, Write};

/// A slog drain that emits tracing events.
pub struct TracingDrain;

struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        let kv = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{kv}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            Level::Info => tracing::info!(target: "raft", "{msg}{kv}"),
            Level::Debug => tracing::debug!(target: "raft", "{msg}{kv}"),
            Level::Trace => tracing::trace!(target: "raft", "{msg}{kv}"),
        }
        Ok(())
    }
}

/// The logger handed to raft-rs for one group.
pub fn raft_logger(node: u64, group: u32) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("node" => node, "group" => group))
}
