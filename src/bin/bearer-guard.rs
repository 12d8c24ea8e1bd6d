//! `bearer-guard`: the operator CLI (see `bearer_guard::cli`).

fn main() -> std::process::ExitCode {
    bearer_guard::cli::main()
}
