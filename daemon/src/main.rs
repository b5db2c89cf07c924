fn main() -> std::process::ExitCode {
    evolora_daemon::cli::main()
}
