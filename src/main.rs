fn main() -> std::process::ExitCode {
    sequencer::cli::main()
}
