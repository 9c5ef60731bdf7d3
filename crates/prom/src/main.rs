//! `prom`: the Prometheus server, its admin commands and its command-line client.

mod cli;
mod commands;
mod config;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc's thread-local free lists suit the gateway's many small, short-lived allocations
/// (headers, JSON envelopes, body chunks) better than glibc malloc, measured in docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
