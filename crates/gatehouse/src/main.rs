//! The `gatehouse` binary: parse the command line and hand over to the library.
//!
//! The binary allocates with mimalloc rather than the system allocator: glibc's malloc serialises
//! threads on its arena locks when memory allocated on one tokio worker is freed on another, which
//! a work-stealing runtime does all the time, and on the API's busiest path that contention cost
//! about a third of the throughput (`bench/README.md`). The library leaves the choice to its
//! users.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
