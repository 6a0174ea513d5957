//! Auralis: a real-time generative audio streaming server with built-in telemetry.
//!
//! Data flow for one station (see `docs/` and the module docs):
//! [`synth`] (composer + renderer, on its own thread) -> [`pipeline::ring`] (lock-free SPSC) ->
//! [`pipeline::pacer`] (absolute 100 ms deadlines; [`codec`]: encode once per codec) ->
//! [`stream::hub`] (fan out) ->
//! [`stream::ws`] (one task pair per listener). [`telemetry`] records every stage; [`http`] serves
//! it all; [`server::run`] wires it together. On the listening side, [`listen`] plays a stream
//! through the sound card and [`load`] measures many listeners at once, both over TLS with
//! [`client_tls`].

pub mod client_tls;
pub mod clock;
pub mod codec;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod edge;
pub mod fuzz;
pub mod http;
pub mod labels;
pub mod listen;
pub mod load;
pub mod mount;
pub mod pipeline;
pub mod render;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod stream;
pub mod synth;
pub mod telemetry;
pub mod web;
