fn main() -> std::process::ExitCode {
    kmatrix::cli::main()
}
