//! The `mailtape` binary: everything lives in the library; this maps the result to an exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(mailtape::cli::main())
}
