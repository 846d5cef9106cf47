fn main() -> std::process::ExitCode {
    api_server::cli::main()
}
