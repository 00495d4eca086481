fn main() -> std::process::ExitCode {
    payhook::cli::main()
}
