//! The `clb` binary: flags to configuration, configuration to running workers.

use clb::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("clb: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let running = match clb::runtime::start(&config) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("clb: {e}");
            return ExitCode::from(1);
        }
    };
    let lb = &config.load_balancer;
    for view in &running.topology.listeners {
        let l = &view.listener;
        log::info!(
            "load balancer {}: listener {}:{} -> {}:{} on {}:{} ({} instances, {} workers)",
            lb.name,
            l.protocol.as_str(),
            l.port,
            l.instance_protocol.as_str(),
            l.instance_port,
            config.runtime.bind,
            l.port,
            view.backends.len(),
            config.runtime.workers
        );
    }
    match running.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clb: {e}");
            ExitCode::from(1)
        }
    }
}
