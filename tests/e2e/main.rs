//! End-to-end tests: the real `dashpush` binary as a child process, the built-in origin as a
//! second one, real clients (`curl`, `nghttp`, `h2load`).

mod fleet;
mod harness;
mod hostile;
mod live;
mod operator;
mod origin_side;
mod proxy;
mod push;
mod stock;
mod ws;
