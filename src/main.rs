//! The `clb` binary: flags to configuration, configuration to running workers.

use clb::cli::{self, Command};
use clb::control::server::{ControlHandle, Event};
use clb::control::sigv4::load_credentials;
use clb::sys::signals;
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
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    // rustls warns on every handshake whose SNI is an IP address (common with clients
    // connecting by IP): a line per request. Only its errors are logged unless RUST_LOG
    // names it.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls")) {
        logger.filter_module("rustls", log::LevelFilter::Error);
    }
    logger.init();
    let credentials = match &config.runtime.api_credentials {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| load_credentials(&text))
        {
            Ok(credentials) => Some(credentials),
            Err(e) => {
                eprintln!("clb: --api-credentials '{}': {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    // Blocked before any thread starts, so only the signal thread below receives them.
    if let Err(e) = signals::block(&signals::HANDLED) {
        log::warn!("cannot block signals, SIGHUP/SIGTERM handling is off: {e}");
    }
    let running = match clb::runtime::start(&config, credentials) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("clb: {e}");
            return ExitCode::from(1);
        }
    };
    for lb in &running.load_balancers {
        for l in &lb.listeners {
            log::info!(
                "load balancer {}: listener {}:{} -> {}:{} on {}:{} ({} instances, {} workers)",
                lb.name,
                l.protocol.as_str(),
                l.port,
                l.instance_protocol.as_str(),
                l.instance_port,
                lb.address.unwrap_or(config.runtime.bind),
                l.port,
                lb.registered.len(),
                config.runtime.workers
            );
        }
    }
    match config.runtime.api {
        Some(addr) => {
            log::info!("control API on http://{addr} (aws elb --endpoint-url http://{addr})")
        }
        None => log::info!("control API off"),
    }
    spawn_signal_thread(running.control.clone(), running.access_log.clone());
    match running.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clb: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGHUP reloads certificate files; SIGTERM and SIGINT stop gracefully, and a second
/// one stops at once. The control thread does the work.
fn spawn_signal_thread(
    control: ControlHandle,
    access_log: Option<std::sync::mpsc::Sender<clb::access_log::Message>>,
) {
    let spawned = std::thread::Builder::new()
        .name("clb-signals".to_string())
        .spawn(move || {
            let mut stopping = false;
            loop {
                match signals::wait(&signals::HANDLED) {
                    Ok(signals::HUP) => {
                        log::info!("SIGHUP: reloading certificates");
                        control.send(Event::ReloadCertificates);
                    }
                    Ok(signals::USR1) => {
                        if let Some(log) = &access_log {
                            let _ = log.send(clb::access_log::Message::Reopen);
                        }
                    }
                    Ok(_) if stopping => {
                        log::warn!("second stop signal: exiting now");
                        std::process::exit(1);
                    }
                    Ok(_) => {
                        stopping = true;
                        control.send(Event::Shutdown);
                    }
                    Err(e) => {
                        log::error!("waiting for signals failed, they are ignored from now: {e}");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal thread, SIGHUP is ignored: {e}");
    }
}
