//! `certwright-ca`: the CA's command. The commands live in `cli/` (one module per area,
//! as the client's `certwright` has them), in the binary: they are the operator's edge
//! (argument parsing, printing, exit codes) over the library's `app`, `store` and `ra`.

/// mimalloc instead of glibc's allocator: a request allocates and frees many small
/// buffers on whichever tokio worker runs it (docs/performance.md has the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
