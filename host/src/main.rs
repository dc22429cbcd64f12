fn main() -> std::process::ExitCode {
    leadgate::cli::main()
}
