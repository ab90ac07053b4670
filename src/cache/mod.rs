//! Client-side state: security dir checks, chunk reference counts and statistics.

pub mod security;
pub mod stats;

pub use security::{CacheConfigInfo, SecurityManager};
