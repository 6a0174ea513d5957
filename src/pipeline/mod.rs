//! From samples to paced chunks: the synthesis thread renders into a lock-free ring ([`ring`],
//! [`synthesis`]); the [`pacer`] pops one chunk per absolute deadline.

pub mod backfill;
pub mod gpu_engine;
pub mod pacer;
pub mod ring;
pub mod synthesis;
