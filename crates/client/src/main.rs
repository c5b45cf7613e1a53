//! `certwright`: the ACME client and renewal agent command.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
