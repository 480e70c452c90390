//! Where the vault reads the time for lifecycle decisions (deletion dates). Tests move
//! it forward instead of waiting for weeks.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock moved forward by a number of seconds read from a file at every
/// call; a missing, empty or unreadable file means no offset. For tests of scheduled
/// deletion (`lifecycle.clock_offset_file`); a production configuration leaves it out.
#[derive(Debug)]
pub(crate) struct OffsetFileClock {
    path: PathBuf,
}

impl OffsetFileClock {
    /// A clock that reads its offset from `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl Clock for OffsetFileClock {
    fn now(&self) -> SystemTime {
        let offset = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        SystemTime::now() + Duration::from_secs(offset)
    }
}
