//! The `dashpush` binary: CLI entry point.

mod cli;

use std::process::ExitCode;

/// jemalloc, not the system allocator: the buffers a connection frees when it falls idle (an
/// HTTP/2 connection parked again drops about 26 KiB of h2's) go back to the system, where
/// glibc's allocator keeps them resident among the live connections' allocations; and a push
/// costs less CPU (docs/benchmarks.md: memory per connection, live fan-out). Its options (a
/// background thread that returns freed pages about a second after their last use) are built
/// in from `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::run()
}
